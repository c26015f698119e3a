"""The gradient work of the `darts` strategy, run in a Ray worker (`Work` of cosearch.strategies.base).

NB201 cells relaxed (Liu et al. 2019, as NAS-Bench-201's DARTS baseline: one set of logits per
edge, shared by every cell): each edge's output is the softmax-weighted sum of every op on the
supernet's shared weights (`none` contributes zero). First order: a weight step on a training
batch, then a logit step on a validation batch. The DARTS space's relaxation (two cell kinds, two
inputs kept per node) is `_darts_cells_torch`; `search` runs either.

The latency term needs each op's latency (`price`, run once per run before the searches): 38
random cells without `none` are priced by the job's own cost path (the deployed ONNX file,
measured or predicted exactly as candidates are), and a least-squares fit gives the all-skip
cell's price and each (edge, op)'s effect on it (`none` costing what skip does); the DARTS space
fits its table the same way (`_darts_cells_torch`). The relaxed cell's expected latency is the
all-skip cell's plus the softmax-weighted sum of these effects.

The argmax of a relaxed cell does not keep its expected latency (the softmax spreads weight the
argmax drops), so with a target the cell is derived under it (`derive`): the most probable cell
whose estimated latency lies in the band just under the target.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cosearch.compressors.activations import fake_quantize_on_own_range
from cosearch.core.candidate import Candidate
from cosearch.core.errors import CosearchError
from cosearch.search_spaces._nb201_torch import NB201Supernet, SuperCell
from cosearch.search_spaces.nb201 import EDGES, NUM_NODES, OPS, edge_name, format_arch_str

REFERENCE_OP = "skip_connect"  # every node of the reference cell is live, so every edge's op runs
TARGET_BAND = 0.1  # a derived cell's estimate lands in [(1 - band) T, T] where one can
CORRECTIONS = 3  # derived cells priced by the job's cost path and the table rescaled, at most this often


def mixed_cell(cell: SuperCell, x: torch.Tensor, weights: torch.Tensor, sampled: bool = False) -> torch.Tensor:
    """The relaxed cell: each edge the `weights`-weighted sum of its ops; `sampled` weights are
    one-hot (GDAS), so only the chosen op of each edge runs."""
    nodes = [x]
    for j in range(1, NUM_NODES):
        total = 0.0
        for i in range(j):
            ops, w = getattr(cell, edge_name(i, j)), weights[EDGES.index((i, j))]
            for k, op in enumerate(OPS):
                if op != "none" and not (sampled and w[k].item() == 0.0):
                    total = total + w[k] * ops[op](nodes[i])
        nodes.append(total if isinstance(total, torch.Tensor) else x * 0.0)
    return nodes[-1]


def slot_of(name: str) -> str:
    """The layer slot of a supernet conv: a cell edge's op name dropped (`stage0.0.e0_1.nor_conv_3x3.conv`
    is slot `stage0.0.e0_1.conv`); everything outside cells is named as in the standalone network."""
    parts = name.split(".")
    return ".".join(parts[:3] + parts[4:]) if parts[0].startswith("stage") and len(parts) > 4 else name


def edge_op_of(name: str) -> tuple[int, int] | None:
    """(edge index, op index) of a cell conv, None outside cells."""
    parts = name.split(".")
    if parts[0].startswith("stage") and len(parts) > 4:
        i, j = (int(n) for n in parts[2][1:].split("_"))
        return EDGES.index((i, j)), OPS.index(parts[3])
    return None


class MixedBits(nn.Module):
    """A `weight` parametrization: the softmax-weighted sum of the weight fake-quantized at each
    bit width (EdMIPS, Cai and Vasconcelos 2020); 32 bits is the float weight."""

    def __init__(self, logits: nn.ParameterDict, key: str, bits: list[int]) -> None:
        super().__init__()
        from cosearch.compressors.quantize import PerChannelSymmetricFakeQuant

        self._logits = [logits]  # a reference, not a submodule: the logits are the model's
        self.key = key
        self.quantizers = nn.ModuleList([nn.Identity() if b >= 32 else PerChannelSymmetricFakeQuant(b) for b in bits])

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        p = F.softmax(self._logits[0][self.key], dim=-1)
        return sum(p[k] * q(weight) for k, q in enumerate(self.quantizers))


class MixedInputBits:
    """A forward pre-hook: a layer's input as the softmax-weighted sum of it quantized at each
    activation width (EdMIPS); 32 bits is the float input."""

    def __init__(self, logits: nn.ParameterDict, key: str, bits: list[int]) -> None:
        self.logits, self.key, self.bits = logits, key, bits

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        x, p = args[0], F.softmax(self.logits[self.key], dim=-1)
        return (
            sum(p[k] * (x if b >= 32 else fake_quantize_on_own_range(x, b)) for k, b in enumerate(self.bits)),
            *args[1:],
        )


class RelaxedNB201(nn.Module):
    """The NB201 supernet with every cell computing the relaxed cell; `tau` set: the cell sampled
    by Gumbel-softmax at that temperature on every forward (GDAS), else softmax-mixed (DARTS)."""

    def __init__(
        self, supernet: NB201Supernet, weight_options: list[int] | None = None, input_options: list[int] | None = None
    ) -> None:
        super().__init__()
        self.net = supernet
        self.logits = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPS)))
        self.tau: float | None = None
        self.bits = list(weight_options or [])
        self.bit_logits = nn.ParameterDict()  # per layer slot, over `bits`: shared by the ops of an edge
        if self.bits:
            from torch.nn.utils import parametrize

            for name, module in list(supernet.named_modules()):
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    key = slot_of(name).replace(".", "__")
                    if key not in self.bit_logits:
                        self.bit_logits[key] = nn.Parameter(torch.zeros(len(self.bits)))
                    parametrize.register_parametrization(module, "weight", MixedBits(self.bit_logits, key, self.bits))
        self.input_bits = list(input_options or [])
        self.input_bit_logits = nn.ParameterDict()  # per layer slot, over `input_bits`
        if self.input_bits:
            for name, module in supernet.named_modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    key = slot_of(name).replace(".", "__")
                    if key not in self.input_bit_logits:
                        self.input_bit_logits[key] = nn.Parameter(torch.zeros(len(self.input_bits)))
                    module.register_forward_pre_hook(MixedInputBits(self.input_bit_logits, key, self.input_bits))

    def architecture(self) -> list[nn.Parameter]:
        return [self.logits, *self.bit_logits.values(), *self.input_bit_logits.values()]

    def weights(self) -> list[nn.Parameter]:
        arch = ("bit_logits.", "input_bit_logits.")
        return [p for name, p in self.named_parameters() if name != "logits" and not name.startswith(arch)]

    def expected_bits(self, inputs: bool = False) -> dict[str, torch.Tensor]:
        """Each slot's expected weight (or input) bits under the current logits."""
        options, logits = (self.input_bits, self.input_bit_logits) if inputs else (self.bits, self.bit_logits)
        bits = torch.tensor(options, dtype=torch.float32, device=self.logits.device)
        return {key.replace("__", "."): (F.softmax(v, dim=-1) * bits).sum() for key, v in logits.items()}

    def chosen_bits(self, inputs: bool = False) -> dict[str, int]:
        options, logits = (self.input_bits, self.input_bit_logits) if inputs else (self.bits, self.bit_logits)
        return {key.replace("__", "."): options[int(v.argmax())] for key, v in logits.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        sampled = self.tau is not None and self.training
        if sampled:
            w = F.gumbel_softmax(self.logits, tau=self.tau, hard=True, dim=-1)  # straight-through one-hot
        else:
            w = F.softmax(self.logits, dim=-1)
        x = net.stem(x)
        for stage in (net.stage0, net.reduce1, net.stage1, net.reduce2, net.stage2):
            if isinstance(stage, nn.Sequential):
                for cell in stage:
                    x = mixed_cell(cell, x, w, sampled)
            else:
                x = stage(x)
        return net.classifier(net.head(x))


def derive(
    logits: np.ndarray, base: float = 0.0, effect: np.ndarray | None = None, target: float | None = None
) -> list[int]:
    """The op per edge (indices into OPS) a search derives, `none` aside (as DARTS derives: a relaxed
    cell mixes its ops, and `none`, the cheapest, wins the latency term's pull computing nothing).

    Without a `target`: the strongest op per edge. With one: of every such cell (4^6 on NB201), the
    most probable (sum of log-softmax) whose estimate `base + sum(effect)` lies in
    [(1 - TARGET_BAND) T, T]; none there: the most probable under T; none under T: the cheapest.
    """
    logits = np.asarray(logits, dtype=np.float64)
    allowed = [k for k in range(len(OPS)) if OPS[k] != "none"]
    if target is None or effect is None:
        return [allowed[int(np.argmax(row[allowed]))] for row in logits]
    log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    cells = np.array(list(itertools.product(allowed, repeat=len(logits))))  # (cells, edges)
    edges = np.arange(len(logits))
    score = log_p[edges, cells].sum(axis=1)
    estimate = base + np.asarray(effect)[edges, cells].sum(axis=1)
    for fits in (estimate >= (1 - TARGET_BAND) * target) & (estimate <= target), estimate <= target:
        if fits.any():
            return cells[np.flatnonzero(fits)[np.argmax(score[fits])]].tolist()
    return cells[np.argmin(estimate)].tolist()


def cost_of(evaluator: Any, ops: dict, metric: str, data: Any) -> float:
    """`metric` of the float network with cell `ops`, by the job's own cost path."""
    return arch_cost(evaluator, {"cell": format_arch_str(ops)}, metric, data)


def arch_cost(evaluator: Any, arch: dict, metric: str, data: Any) -> float:
    """`metric` of the float network `arch`, by the job's own cost path (the deployed ONNX file,
    predicted and measured exactly as a candidate's costs are)."""
    costs = evaluator.costs(Candidate(dict(arch)), data)
    if metric not in costs:
        raise CosearchError(f"strategy darts: the job's evaluator gives no {metric}; it gives {sorted(costs)}")
    return float(costs[metric])


# The NB201 table's unknowns: the all-skip cell's price and, per edge, an effect for each op a derived
# cell can hold but skip (the reference; `none` is never derived and counts as skip, computing nothing).
PRICED_OPS = tuple(k for k, op in enumerate(OPS) if op not in ("none", REFERENCE_OP))
COST_SAMPLES = 2 * (1 + len(EDGES) * len(PRICED_OPS))  # twice the unknowns: 38 random cells


def fit_table(design: Any, prices: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Least squares `prices ~ design @ coef` (`design`'s first column the intercept) and how well it
    predicts a price it did not see: leave-one-out residuals without refitting, e_i / (1 - h_ii)."""
    design, prices = np.asarray(design, dtype=np.float64), np.asarray(prices, dtype=np.float64)
    coef, *_ = np.linalg.lstsq(design, prices, rcond=None)
    leverage = np.einsum("ij,ji->i", design, np.linalg.pinv(design))
    loo = np.abs(prices - design @ coef) / np.clip(1.0 - leverage, 1e-9, None) / np.abs(prices)
    return coef, {
        "architectures": len(prices),
        "priced_range": [float(prices.min()), float(prices.max())],
        "loo_relative_error_median": float(np.median(loo)),
        "loo_relative_error_max": float(np.max(loo)),
    }


def op_costs(
    evaluator: Any, metric: str, data: Any, rng: np.random.Generator, samples: int = COST_SAMPLES
) -> tuple[float, np.ndarray, dict[str, Any]]:
    """The all-skip cell's `metric` and each (edge, op)'s effect (0 for skip and `none`), fitted by least
    squares to `samples` random cells without `none` (cells as derivations make them), each priced by
    the job's own cost path; and the fit's leave-one-out error. (One-edge differences from the all-skip
    cell, used before, rest on one measurement of that cell: at 0.06 ms one slow measurement of it
    made every effect wrong, down to a derived cell estimated at -0.05 ms.)"""
    allowed = [k for k in range(len(OPS)) if OPS[k] != "none"]
    cells = [[allowed[i] for i in rng.integers(len(allowed), size=len(EDGES))] for _ in range(samples)]
    prices = [cost_of(evaluator, {edge: OPS[k] for edge, k in zip(EDGES, cell)}, metric, data) for cell in cells]
    free = [(e, k) for e in range(len(EDGES)) for k in PRICED_OPS]
    coef, fit = fit_table([[1.0] + [float(cell[e] == k) for e, k in free] for cell in cells], prices)
    effect = np.zeros((len(EDGES), len(OPS)))
    for (e, k), value in zip(free, coef[1:]):
        effect[e, k] = value
    return float(coef[0]), effect, fit


def _relaxable(evaluator: Any) -> bool:
    """Whether the job's space is the DARTS space (else NB201); refuses any other, or an evaluator that does not train."""
    if not hasattr(evaluator, "data") or evaluator.space.registry_name not in ("nb201", "darts"):
        raise CosearchError("strategy darts needs the nb201 or darts search space and an evaluator that trains (train)")
    return evaluator.space.registry_name == "darts"


def price(evaluator: Any, metric: str, seed: int) -> dict[str, Any]:
    """The space's cost table for `metric`, by the job's own cost path: the reference cell's price and
    each op's effect, fitted by least squares to random cells (NB201) or genotypes (the DARTS space),
    with its leave-one-out error as `fit`. Work of its own, run once for every target's search and
    while nothing else runs, so measured prices do not share the CPU."""
    from cosearch.strategies import _darts_cells_torch as darts_cells

    start = time.perf_counter()
    data, rng = evaluator.data.load(), np.random.default_rng([seed, 1])
    if _relaxable(evaluator):
        base, effect, fit = darts_cells.op_costs(evaluator, metric, data, arch_cost, rng)
    else:
        base, effect, fit = op_costs(evaluator, metric, data, rng)
    return {
        "metric": metric,
        "reference": base,
        "effect": np.asarray(effect).tolist(),
        "fit": fit,
        "seconds": time.perf_counter() - start,
    }


def layer_sizes(model: RelaxedNB201, input_shape) -> dict[str, tuple[int, int]]:
    """(MACs, weights) of every conv / linear of the supernet at batch 1, by module name."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, module in model.net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):

            def record(m, inputs, output, name=name):
                weights = m.weight.numel()
                positions = output.shape[-1] * output.shape[-2] if isinstance(m, nn.Conv2d) else 1
                sizes[name] = (int(weights * positions), int(weights))

            hooks.append(module.register_forward_hook(record))
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape, device=model.logits.device))
    model.train(was)
    for hook in hooks:
        hook.remove()
    return sizes


def expected_bit_cost(model: RelaxedNB201, sizes: dict, metric: str, input_bits: int) -> torch.Tensor:
    """Expected BitOps (MACs x weight bits x input bits) or size in KiB (weights x weight bits)
    of the relaxed network: a cell conv counts with its op's probability (EdMIPS's cost); input
    bits are the relaxed ones where they are searched, else `input_bits`."""
    p = F.softmax(model.logits, dim=-1)
    bits, inputs = model.expected_bits(), model.expected_bits(inputs=True)
    total = 0.0
    for name, (macs, weights) in sizes.items():
        where = edge_op_of(name)
        active = 1.0 if where is None else p[where]
        b, slot = bits[slot_of(name)], slot_of(name)
        a = inputs.get(slot, input_bits)
        total = total + active * (macs * b * a if metric == "bitops" else weights * b / 8 / 1024)
    return total


def search(
    evaluator: Any,
    epochs: int,
    loss: str,
    latency_weight: float,
    collapse_guard: str,
    beta_weight: float,
    arch_learning_rate: float,
    seed: int,
    order: int = 1,
    metric: str | None = None,
    target: float | None = None,
    weight_options: list[int] | None = None,
    bits_metric: str | None = None,
    bits_target: float | None = None,
    bits_weight: float = 0.0,
    input_bits: int = 32,
    input_options: list[int] | None = None,
    derivation: str = "budget",
    cost_table: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One DARTS search; returns the derived cell and how it went (JSON-able). The relaxed widths
    (`weight_options`, `input_options`) are of the genes that set them (`precision_genes`), and the
    chosen ones come back under those genes' names. `cost_table`: `price`'s output for `metric`
    (priced here when not given)."""
    from cosearch.compressors import precision_genes
    from cosearch.evaluators.train import describe_device, training_device
    from cosearch.strategies import _darts_cells_torch as darts_cells

    cells = _relaxable(evaluator)  # the DARTS space: two cell kinds, two inputs kept per node
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data, training = evaluator.data.load(), evaluator.training
    latency = metric is not None and latency_weight > 0
    base, effect, fit = 0.0, None, None
    if latency:
        table = cost_table or price(evaluator, metric, seed)
        base, effect, fit = table["reference"], np.asarray(table["effect"]), table["fit"]
    device = training_device()
    if effect is not None:  # expected_cost reads it: with a latency term only
        table = darts_cells.per_edge(effect) if cells else effect
        effect_t = torch.tensor(table, dtype=torch.float32, device=device)
    relax_bits = not cells and bool(weight_options) and len(weight_options) > 1 and bits_metric is not None
    relax_bits = relax_bits and bits_weight > 0
    supernet = evaluator.space.supernet(data.input_shape, data.num_classes)
    relax_inputs = relax_bits and bits_metric == "bitops" and len(input_options or []) > 1
    if cells:
        model = darts_cells.RelaxedDarts(supernet).to(device)
    else:
        model = RelaxedNB201(
            supernet, list(weight_options) if relax_bits else None, list(input_options) if relax_inputs else None
        ).to(device)
    sizes = layer_sizes(model, data.input_shape) if relax_bits else {}
    w_opt = torch.optim.Adam(model.weights(), lr=training.learning_rate, weight_decay=training.weight_decay)
    a_opt = torch.optim.Adam(model.architecture(), lr=arch_learning_rate, betas=(0.5, 0.999), weight_decay=1e-3)
    steps_per_epoch = max(1, len(data.train.y) // training.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=epochs * steps_per_epoch)
    train_x, train_y = (torch.from_numpy(a).to(device) for a in (data.train.x, data.train.y))
    val_x, val_y = (torch.from_numpy(a).to(device) for a in (data.val.x, data.val.y))
    history = []

    def expected_cost() -> torch.Tensor:
        if cells:
            return darts_cells.expected_cost(model, base, effect_t)
        return base + (F.softmax(model.logits, dim=-1) * effect_t).sum()

    def arch_objective(ce: torch.Tensor, guard: float) -> torch.Tensor:
        """The validation loss the logits descend: the task's, the latency term, the guard."""
        if latency:
            ratio = expected_cost() / target
            if loss == "multiplicative":  # MnasNet's form: CE * (E[LAT] / T) ^ w
                ce = ce * ratio**latency_weight
            else:  # ProxylessNAS's additive form: CE + w * (E[LAT] - T) / T
                ce = ce + latency_weight * (ratio - 1.0)
        if relax_bits:  # the bits budget, in the same form
            ratio = expected_bit_cost(model, sizes, bits_metric, input_bits) / bits_target
            ce = ce * ratio**bits_weight if loss == "multiplicative" else ce + bits_weight * (ratio - 1.0)
        if guard:
            ce = ce + guard * torch.logsumexp(model.logits, dim=-1).mean()  # beta-DARTS
        return ce

    for epoch in range(epochs):
        guard = beta_weight * (epoch + 1) / epochs if collapse_guard == "beta" else 0.0  # rising linearly
        if collapse_guard == "gdas":  # GDAS: the temperature falls linearly from 10 to 0.1
            model.tau = 10.0 - (10.0 - 0.1) * epoch / max(1, epochs - 1)
        model.train()
        order_t, val_order = rng.permutation(len(data.train.y)), rng.permutation(len(data.val.y))
        losses = []
        for step in range(steps_per_epoch):
            rows = torch.from_numpy(order_t[step * training.batch_size : (step + 1) * training.batch_size]).to(device)
            start_v = (step * training.batch_size) % max(1, len(val_order) - training.batch_size + 1)
            vrows = torch.from_numpy(val_order[start_v : start_v + training.batch_size]).to(device)
            batch, val_batch = (train_x[rows], train_y[rows]), (val_x[vrows], val_y[vrows])
            a_opt.zero_grad(set_to_none=True)
            if order == 2:
                value = _second_order_logit_grad(
                    model, batch, val_batch, schedule.get_last_lr()[0], guard, arch_objective
                )
            else:
                value = arch_objective(F.cross_entropy(model(val_batch[0]), val_batch[1]), guard)
                value.backward()
            a_opt.step()
            losses.append(float(value.detach()))
            w_opt.zero_grad(set_to_none=True)
            task = F.cross_entropy(model(batch[0]), batch[1])
            if not torch.isfinite(task):
                raise CosearchError(f"strategy darts: the training loss became {task.item()} in epoch {epoch + 1}")
            task.backward()
            for p in model.architecture():
                p.grad = None  # the weight step moves the weights only
            w_opt.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(val_x).argmax(1) == val_y).float().mean())
        history.append(
            {
                "epoch": epoch + 1,
                "arch_loss": float(np.mean(losses)),
                "val_accuracy_relaxed": accuracy,
                "expected": float(expected_cost().detach()) if latency else None,
                "tau": model.tau,
                "expected_bits_cost": float(expected_bit_cost(model, sizes, bits_metric, input_bits).detach())
                if relax_bits
                else None,
            }
        )
    expected = float(expected_cost().detach()) if latency else None
    model.to("cpu")
    logits = model.logits.detach().numpy()
    under = target if latency and derivation == "budget" else None

    def derived_under(scale: float) -> tuple[dict, float | None, int]:
        """The derived arch, its estimate and its parameter-free count, the effects scaled by `scale`."""
        table = None if effect is None else scale * np.asarray(effect)
        if cells:
            arch, estimate = darts_cells.derive(logits, base, table, under)
            return arch, estimate, darts_cells.parameter_free(arch)
        chosen = derive(logits, base, table, under)
        arch = {"cell": format_arch_str({edge: OPS[k] for edge, k in zip(EDGES, chosen)})}
        estimate = base + float(sum(table[e, k] for e, k in enumerate(chosen))) if latency else None
        return arch, estimate, sum(OPS[k] in ("none", "skip_connect", "avg_pool_3x3") for k in chosen)

    # A fitted table still misses some cells (whole-network latency is not a sum over edges), so a
    # cell derived under a target is priced by the job's own cost path and, while it misses the band,
    # the table is rescaled by how far its sum was off and the cell derived again (CORRECTIONS tries).
    scale, tried = 1.0, []
    for _ in range(CORRECTIONS if under is not None else 1):
        arch, derived, free = derived_under(scale)
        if under is None:
            break  # nothing to land in
        tried.append({"arch": arch, "estimate": derived, "priced": arch_cost(evaluator, arch, metric, data),
                      "free": free, "scale": scale})  # fmt: skip
        ratio = (tried[-1]["priced"] - base) / (derived - base) if abs(derived - base) > 1e-12 else 0.0
        if (1 - TARGET_BAND) * target <= tried[-1]["priced"] <= target or ratio <= 0:
            break  # in the band, or the table's sign is wrong about this cell: no scale mends that
        scale *= ratio
    if tried:  # in the band, else the dearest under the target, else the cheapest
        under_target = [t for t in tried if t["priced"] <= target]
        best = max(under_target, key=lambda t: t["priced"]) if under_target else min(tried, key=lambda t: t["priced"])
        arch, derived, free, scale = best["arch"], best["estimate"], best["free"], best["scale"]
    widths = precision_genes()
    return {
        "arch": arch,
        "cell": arch.get("cell"),  # NB201's, as earlier runs stored it
        "target": target,
        "metric": metric,
        "expected": expected,
        "derived_estimate": derived,
        "derived_priced": [{k: t[k] for k in ("estimate", "priced", "scale")} for t in tried],  # each try, in order
        "table_scale": scale,
        "parameter_free_edges": free,
        "logits": model.logits.detach().tolist(),
        "probabilities": F.softmax(model.logits.detach(), dim=-1).tolist(),
        "history": history,
        "cost_table": {"reference": base, "effect": np.asarray(effect).tolist(), "fit": fit} if latency else None,
        widths["weights"]: model.chosen_bits() if relax_bits else None,  # per slot: the most likely
        widths["inputs"]: model.chosen_bits(inputs=True) if relax_inputs else None,
        "bits_metric": bits_metric if relax_bits else None,
        "bits_target": bits_target if relax_bits else None,
        "seconds": time.perf_counter() - start,
        "derivation": derivation if latency else "argmax",
        "how": f"{'first' if order == 1 else 'second'}-order DARTS, {epochs} epochs, "
        f"{loss if latency else 'no'} latency term, collapse guard {collapse_guard}, "
        f"{derivation if latency else 'argmax'} derivation, on {describe_device(device)}",
    }


def _second_order_logit_grad(
    model, batch, val_batch, xi: float, guard: float, arch_objective, radius: float = 0.01
) -> torch.Tensor:
    """DARTS's second-order gradient of the validation loss with respect to the architecture
    parameters (cell logits, and bit logits when bits are relaxed), set as their `.grad`: at the
    weights after one virtual SGD step of size `xi` on `batch`, minus `xi` times the
    Hessian-vector product, by central differences at weights `radius` away along the
    validation gradient (0.01: DARTS's choice; Liu et al. 2019, eq. 7-8)."""
    weights, arch = model.weights(), model.architecture()
    backup = [w.detach().clone() for w in weights]
    grads = torch.autograd.grad(F.cross_entropy(model(batch[0]), batch[1]), weights, allow_unused=True)
    with torch.no_grad():
        for w, g in zip(weights, grads):
            if g is not None:
                w -= xi * g
    value = arch_objective(F.cross_entropy(model(val_batch[0]), val_batch[1]), guard)
    out = torch.autograd.grad(value, [*arch, *weights], allow_unused=True)
    d_arch = [torch.zeros_like(a) if g is None else g for a, g in zip(arch, out[: len(arch)])]
    v = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, out[len(arch) :])]
    with torch.no_grad():
        for w, b in zip(weights, backup):
            w.copy_(b)
    eps = radius / (torch.sqrt(sum((g * g).sum() for g in v)) + 1e-12)

    def arch_grad(sign: float) -> list[torch.Tensor]:
        with torch.no_grad():
            for w, g in zip(weights, v):
                w += sign * eps * g
        loss = F.cross_entropy(model(batch[0]), batch[1])
        got = torch.autograd.grad(loss, arch, allow_unused=True)
        with torch.no_grad():
            for w, g in zip(weights, v):
                w -= sign * eps * g
        return [torch.zeros_like(a) if g is None else g for a, g in zip(arch, got)]

    plus, minus = arch_grad(1.0), arch_grad(-1.0)
    for a, d, gp, gm in zip(arch, d_arch, plus, minus):
        a.grad = d - xi * (gp - gm) / (2 * eps)
    return value.detach()
