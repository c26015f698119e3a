"""The gradient work of the `darts` strategy, run in a Ray worker (`Work` of cosearch.strategies.base).

NB201 cells relaxed (Liu et al. 2019, as NAS-Bench-201's DARTS baseline: one set of logits per
edge, shared by every cell): each edge's output is the softmax-weighted sum of every op on the
supernet's shared weights (`none` contributes zero). First order: a weight step on a training
batch, then a logit step on a validation batch.

The latency term needs each op's latency: the cell with every edge `skip_connect` is measured,
then that cell with one edge changed to each other op, by the job's own cost path (the deployed
ONNX file, measured or predicted exactly as candidates are), and each op's effect is its
difference from the all-skip cell. The relaxed cell's expected latency is the all-skip cell's
plus the softmax-weighted sum of these effects.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cosearch.core.candidate import Candidate
from cosearch.core.errors import CosearchError
from cosearch.search_spaces._nb201_torch import NB201Supernet, SuperCell
from cosearch.search_spaces.nb201 import EDGES, NUM_NODES, OPS, edge_name, format_arch_str

REFERENCE_OP = "skip_connect"  # every node of the reference cell is live, so every edge's op runs


def mixed_cell(cell: SuperCell, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    nodes = [x]
    for j in range(1, NUM_NODES):
        total = 0.0
        for i in range(j):
            ops, w = getattr(cell, edge_name(i, j)), weights[EDGES.index((i, j))]
            for k, op in enumerate(OPS):
                if op != "none":
                    total = total + w[k] * ops[op](nodes[i])
        nodes.append(total if isinstance(total, torch.Tensor) else x * 0.0)
    return nodes[-1]


class RelaxedNB201(nn.Module):
    """The NB201 supernet with every cell computing the relaxed (softmax-mixed) cell."""

    def __init__(self, supernet: NB201Supernet) -> None:
        super().__init__()
        self.net = supernet
        self.logits = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPS)))

    def weights(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "logits"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net, w = self.net, F.softmax(self.logits, dim=-1)
        x = net.stem(x)
        for stage in (net.stage0, net.reduce1, net.stage1, net.reduce2, net.stage2):
            if isinstance(stage, nn.Sequential):
                for cell in stage:
                    x = mixed_cell(cell, x, w)
            else:
                x = stage(x)
        return net.classifier(net.head(x))


def op_costs(evaluator: Any, metric: str, data: Any) -> tuple[float, np.ndarray]:
    """The all-skip cell's `metric` and each (edge, op)'s difference from it, as the job measures."""

    def cost(ops: dict) -> float:
        candidate = Candidate({"cell": format_arch_str(ops)})
        model = evaluator.space.build(candidate.arch, data.input_shape, data.num_classes)
        plain, onnx_bytes = evaluator.deployable(model, candidate, data.input_shape)
        predicted, _ = evaluator.predicted_costs(plain, onnx_bytes, candidate, data.input_shape)
        measured, _ = evaluator.measured_costs(onnx_bytes, data.input_shape)
        costs = {**predicted, **measured}
        if metric not in costs:
            raise CosearchError(f"strategy darts: the job's evaluator gives no {metric}; it gives {sorted(costs)}")
        return float(costs[metric])

    reference = dict.fromkeys(EDGES, REFERENCE_OP)
    base = cost(reference)
    effect = np.zeros((len(EDGES), len(OPS)))
    for e, edge in enumerate(EDGES):
        for k, op in enumerate(OPS):
            if op != REFERENCE_OP:
                effect[e, k] = cost({**reference, edge: op}) - base
    return base, effect


def search(
    evaluator: Any,
    epochs: int,
    loss: str,
    latency_weight: float,
    collapse_guard: str,
    beta_weight: float,
    arch_learning_rate: float,
    seed: int,
    metric: str | None = None,
    target: float | None = None,
) -> dict[str, Any]:
    """One DARTS search; returns the derived cell and how it went (JSON-able)."""
    if not hasattr(evaluator, "data") or evaluator.space.registry_name != "nb201":
        raise CosearchError("strategy darts needs the nb201 search space and an evaluator that trains (train)")
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data, training = evaluator.data.load(), evaluator.training
    latency = metric is not None and latency_weight > 0
    base, effect = op_costs(evaluator, metric, data) if latency else (0.0, np.zeros((len(EDGES), len(OPS))))
    effect_t = torch.tensor(effect, dtype=torch.float32)
    space = evaluator.space
    model = RelaxedNB201(space.supernet(data.input_shape, data.num_classes))
    w_opt = torch.optim.Adam(model.weights(), lr=training.learning_rate, weight_decay=training.weight_decay)
    a_opt = torch.optim.Adam([model.logits], lr=arch_learning_rate, betas=(0.5, 0.999), weight_decay=1e-3)
    steps_per_epoch = max(1, len(data.train.y) // training.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=epochs * steps_per_epoch)
    train_x, train_y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
    val_x, val_y = torch.from_numpy(data.val.x), torch.from_numpy(data.val.y)
    history = []

    def expected_cost() -> torch.Tensor:
        return base + (F.softmax(model.logits, dim=-1) * effect_t).sum()

    for epoch in range(epochs):
        guard = beta_weight * (epoch + 1) / epochs if collapse_guard == "beta" else 0.0  # rising linearly
        model.train()
        order, val_order = rng.permutation(len(train_y)), rng.permutation(len(val_y))
        losses = []
        for step in range(steps_per_epoch):
            rows = torch.from_numpy(order[step * training.batch_size : (step + 1) * training.batch_size])
            w_opt.zero_grad(set_to_none=True)
            task = F.cross_entropy(model(train_x[rows]), train_y[rows])
            if not torch.isfinite(task):
                raise CosearchError(f"strategy darts: the training loss became {task.item()} in epoch {epoch + 1}")
            task.backward()
            w_opt.step()
            schedule.step()
            start_v = (step * training.batch_size) % max(1, len(val_y) - training.batch_size + 1)
            vrows = torch.from_numpy(val_order[start_v : start_v + training.batch_size])
            a_opt.zero_grad(set_to_none=True)
            arch = F.cross_entropy(model(val_x[vrows]), val_y[vrows])
            if latency:
                ratio = expected_cost() / target
                if loss == "multiplicative":  # MnasNet's form: CE * (E[LAT] / T) ^ w
                    arch = arch * ratio**latency_weight
                else:  # ProxylessNAS's additive form: CE + w * (E[LAT] - T) / T
                    arch = arch + latency_weight * (ratio - 1.0)
            if guard:
                arch = arch + guard * torch.logsumexp(model.logits, dim=-1).mean()  # beta-DARTS
            arch.backward()
            a_opt.step()
            losses.append(arch.item())
        model.eval()
        with torch.no_grad():
            accuracy = float((model(val_x).argmax(1) == val_y).float().mean())
        history.append(
            {
                "epoch": epoch + 1,
                "arch_loss": float(np.mean(losses)),
                "val_accuracy_relaxed": accuracy,
                "expected": float(expected_cost().detach()) if latency else None,
            }
        )
    # The strongest op per edge, `none` aside (as DARTS derives): a relaxed cell mixes its ops, and
    # `none`, the cheapest, wins the latency term's pull without the cell computing anything.
    logits = model.logits.detach().clone()
    logits[:, OPS.index("none")] = -math.inf
    chosen = logits.argmax(dim=-1).tolist()
    cell = format_arch_str({edge: OPS[k] for edge, k in zip(EDGES, chosen)})
    derived = base + float(sum(effect[e, k] for e, k in enumerate(chosen))) if latency else None
    return {
        "cell": cell,
        "target": target,
        "metric": metric,
        "expected": float(expected_cost().detach()) if latency else None,
        "derived_estimate": derived,
        "parameter_free_edges": sum(OPS[k] in ("none", "skip_connect", "avg_pool_3x3") for k in chosen),
        "logits": model.logits.detach().tolist(),
        "probabilities": F.softmax(model.logits.detach(), dim=-1).tolist(),
        "history": history,
        "cost_table": {"reference": base, "effect": effect.tolist()} if latency else None,
        "seconds": time.perf_counter() - start,
        "how": f"first-order DARTS, {epochs} epochs, {loss if latency else 'no'} latency term, collapse guard {collapse_guard}",
    }
