"""The `darts` strategy's relaxation of the DARTS cell space (Liu et al. 2019, the space it was written for).

One set of logits per cell kind (normal, reduce), edge (node j, input i < j: 14 per cell) and op,
shared by every cell of that kind; each node is the softmax-weighted sum of every op on every
incoming edge, on the supernet's shared weights. A derived cell keeps two inputs per node: the
two edges whose strongest op (`none` aside) is strongest, each with that op, as the paper derives.

Latency is priced per pair a derived node keeps, by cell kind and by where its input comes from
(a cell input, strided in a reduction cell, or an intermediate node): a linear model, the
reference genotype's price (every node reading (skip_connect, 0) and (skip_connect, 1)) plus one
effect per kept pair, fitted by least squares to random genotypes priced by the job's own cost
path. (Effects measured one pair at a time from the reference overestimated whole genotypes by
47 % on the DARTS space at 8 channels, 16x16: the strided skip_connect of a reduction cell is a
convolution, so the reference is no neutral point; the fit misses held-out genotypes by 2 %.)
The relaxed network's expected latency weighs each edge's effects by its op probabilities and
by the share of a node's inputs a derived cell keeps (2 of the j inputs of node j), and a
derivation under a target takes the most probable genotype whose estimate lands in the band
just under it.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cosearch.search_spaces._darts_torch import DartsSuperCell, DartsSupernet
from cosearch.search_spaces.darts import CELLS, OPS, STEPS, format_genotype

EDGES = tuple((node, source) for node in range(2, 2 + STEPS) for source in range(node))
SOURCES = ("input", "inner")  # what an edge reads: a cell input (strided in a reduction cell) or a node
PARAMETER_FREE = ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3")
KEEP = torch.tensor([2.0 / node for node, _ in EDGES])  # the share of node j's j inputs a derived cell keeps
EDGE_SOURCE = [0 if source < 2 else 1 for _, source in EDGES]


def mixed_cell(cell: DartsSuperCell, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor, sampled: bool):
    """The relaxed cell: every node the `weights`-weighted sum of every op on every incoming edge
    (`weights`: edges x ops); `sampled` weights are one-hot (GDAS), so only the chosen ops run."""
    states = [cell.pre0(s0), cell.pre1(s1)]
    for node in range(2, 2 + STEPS):
        total = None
        for source in range(node):
            ops, w = getattr(cell, f"n{node}")[str(source)], weights[EDGES.index((node, source))]
            for k, op in enumerate(OPS):
                if op != "none" and not (sampled and w[k].item() == 0.0):
                    term = w[k] * ops[op](states[source])
                    total = term if total is None else total + term
        states.append(total if total is not None else getattr(cell, f"n{node}")["0"]["none"](states[0]))
    return torch.cat(states[2:], dim=1)


class RelaxedDarts(nn.Module):
    """The DARTS supernet with every cell computing its kind's relaxed cell; `tau` set: cells sampled
    by Gumbel-softmax at that temperature on every forward (GDAS), else softmax-mixed (DARTS)."""

    def __init__(self, supernet: DartsSupernet) -> None:
        super().__init__()
        self.net = supernet
        self.logits = nn.Parameter(1e-3 * torch.randn(len(CELLS), len(EDGES), len(OPS)))
        self.tau: float | None = None

    def architecture(self) -> list[nn.Parameter]:
        return [self.logits]

    def weights(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "logits"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if self.tau is not None and self.training:
            w = F.gumbel_softmax(self.logits, tau=self.tau, hard=True, dim=-1)  # straight-through one-hot
        else:
            w = F.softmax(self.logits, dim=-1)
        sampled = self.tau is not None and self.training
        s0 = s1 = net.stem(x)
        for cell, kind in zip(net.cells, net.kinds):
            s0, s1 = s1, mixed_cell(cell, s0, s1, w[CELLS.index(kind)], sampled)
        return net.classifier(net.pool(s1).flatten(1))


def _genotype(cells: dict[str, list[tuple[str, int]]]) -> dict[str, Any]:
    return {"genotype": format_genotype(cells)}


def pair_counts(arch: dict[str, Any]) -> np.ndarray:
    """How many of the genotype's kept pairs fall in each (cell kind, source kind, op): kinds x sources x ops."""
    from cosearch.search_spaces.darts import parse_genotype

    counts = np.zeros((len(CELLS), len(SOURCES), len(OPS)))
    cells = parse_genotype(arch["genotype"])
    for c, kind in enumerate(CELLS):
        for op, source in cells[kind]:
            counts[c, 0 if source < 2 else 1, OPS.index(op)] += 1
    return counts


def random_genotype(rng: np.random.Generator) -> dict[str, Any]:
    """A genotype as derivations make them: two distinct inputs per node, each with an op other than `none`."""
    allowed = [op for op in OPS if op != "none"]
    cells = {}
    for kind in CELLS:
        cells[kind] = [
            (allowed[int(rng.integers(len(allowed)))], int(source))
            for node in range(2, 2 + STEPS)
            for source in rng.choice(node, 2, replace=False)
        ]
    return _genotype(cells)


# The table's unknowns: the reference's price, and an effect per (kind, source, op) but `none` and a
# cell input's skip_connect (the reference's own pairs). Twice as many genotypes are priced to fit them.
FREE = np.ones((len(CELLS), len(SOURCES), len(OPS)), dtype=bool)
FREE[:, :, OPS.index("none")] = False
FREE[:, SOURCES.index("input"), OPS.index("skip_connect")] = False
COST_SAMPLES = 2 * (1 + int(FREE.sum()))


def op_costs(
    evaluator: Any, metric: str, data: Any, cost_of, rng: np.random.Generator, samples: int = COST_SAMPLES
) -> tuple[float, np.ndarray, dict[str, Any]]:
    """The reference genotype's `metric` and each pair's effect, by cell kind and source kind
    (kinds x sources x ops; 0 for `none` and a cell input's skip_connect), fitted by least squares
    to `samples` random genotypes, each priced by `cost_of(evaluator, arch, metric, data)` as
    candidates are priced; and how well the fit predicts a genotype it did not see (leave-one-out)."""
    from cosearch.strategies._darts_torch import fit_table

    archs = [random_genotype(rng) for _ in range(samples)]
    prices = [cost_of(evaluator, arch, metric, data) for arch in archs]
    coef, fit = fit_table([np.r_[1.0, pair_counts(arch)[FREE]] for arch in archs], prices)
    effect = np.zeros(FREE.shape)
    effect[FREE] = coef[1:]
    return float(coef[0]), effect, fit


def per_edge(effect: np.ndarray) -> np.ndarray:
    """kinds x sources x ops -> kinds x edges x ops."""
    return np.asarray(effect)[:, EDGE_SOURCE, :]


def expected_cost(model: RelaxedDarts, base: float, effect_t: torch.Tensor) -> torch.Tensor:
    """The relaxed network's expected cost (`effect_t`: kinds x edges x ops, from `per_edge`)."""
    p = F.softmax(model.logits, dim=-1)
    return base + ((p * effect_t).sum(dim=-1) * KEEP.to(p.device)).sum()


def _node_options(log_p: np.ndarray, cost: np.ndarray, node: int) -> tuple[list, np.ndarray, np.ndarray]:
    """Every way node `node` of one cell keeps two inputs with an op each (`none` aside), with its
    summed log-probability and cost."""
    allowed = [k for k in range(len(OPS)) if OPS[k] != "none"]
    options, score, price = [], [], []
    for a, b in itertools.combinations(range(node), 2):
        ea, eb = EDGES.index((node, a)), EDGES.index((node, b))
        for ka, kb in itertools.product(allowed, allowed):
            options.append(((OPS[ka], a), (OPS[kb], b)))
            score.append(log_p[ea, ka] + log_p[eb, kb])
            price.append(cost[ea, ka] + cost[eb, kb])
    return options, np.array(score), np.array(price)


def derive(
    logits: np.ndarray, base: float = 0.0, effect: np.ndarray | None = None, target: float | None = None, band=0.1
) -> tuple[dict[str, Any], float | None]:
    """The genotype a search derives and its estimated cost (None without an `effect` table).

    Without a `target`: per node the two inputs whose strongest op is strongest, with that op (the
    most probable pair of (op, input), `none` aside). With one: the most probable genotype whose
    estimate lies in [(1 - band) T, T], else the most probable under T, else the cheapest: a
    knapsack over the 8 nodes of both cells (`_most_probable_within`).
    """
    logits = np.asarray(logits, dtype=np.float64)
    log_p = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    cost = per_edge(effect) if effect is not None else np.zeros_like(log_p)
    kinds = [c for c in range(len(CELLS)) for _ in range(STEPS)]  # the cell kind of each node's group
    groups = [_node_options(log_p[c], cost[c], 2 + step) for c in range(len(CELLS)) for step in range(STEPS)]
    if target is None or effect is None:
        picks = [int(np.argmax(score)) for _, score, _ in groups]
    else:
        picks = (
            _most_probable_within(groups, base, (1 - band) * target, target)
            or _most_probable_within(groups, base, -np.inf, target)
            or [int(np.argmin(price - 1e-9 * score)) for _, score, price in groups]  # the cheapest
        )
    cells: dict[str, list] = {kind: [] for kind in CELLS}
    for (options, _, _), pick, c in zip(groups, picks, kinds):
        cells[CELLS[c]] += list(options[pick])
    estimate = base + sum(price[pick] for (_, _, price), pick in zip(groups, picks))
    return _genotype(cells), (float(estimate) if effect is not None else None)


def _most_probable_within(groups, base: float, low: float, high: float, bins_per_band: int = 400) -> list[int] | None:
    """One option per group maximising the summed score with `base` + summed price in [low, high]
    (a multiple-choice knapsack by dynamic programming over prices rounded to a grid fine enough
    that the rounding of all groups together stays inside the interval); None when nothing fits."""
    floors = [float(price.min()) for _, _, price in groups]
    lowest = base + sum(floors)
    if high < max(low, lowest):
        return None
    span = high - max(low, lowest)  # the interval the reachable totals can fill
    step = max(span, 1e-9 * max(abs(high), 1.0)) / bins_per_band
    slack = len(groups) * step / 2  # the largest total rounding error
    grids = [np.rint((price - floor) / step).astype(int) for (_, _, price), floor in zip(groups, floors)]
    size = int((high + slack - lowest) / step) + 1  # no total above `high` can fit: those are not kept
    best = np.full(size, -np.inf)
    best[0] = 0.0
    choices = []
    for (_, score, _), grid in zip(groups, grids):
        order = np.lexsort((-score, grid))  # per grid cell, its most probable option first
        first = order[np.r_[True, grid[order][1:] != grid[order][:-1]]]
        new, arg = np.full(size, -np.inf), np.full(size, -1)
        for i in first[grid[first] < size]:
            shifted = np.full(size, -np.inf)
            shifted[grid[i] :] = best[: size - grid[i]] + score[i]
            better = shifted > new
            new[better], arg[better] = shifted[better], i
        best = new
        choices.append(arg)
    totals = lowest + step * np.arange(size)
    fits = (totals >= low + slack) & (totals <= high - slack) & np.isfinite(best)
    if not fits.any():
        return None
    cell = int(np.flatnonzero(fits)[np.argmax(best[fits])])
    picks = []
    for arg, grid in zip(reversed(choices), reversed(grids)):
        picks.append(int(arg[cell]))
        cell -= int(grid[arg[cell]])
    return picks[::-1]


def parameter_free(arch: dict[str, Any]) -> int:
    """How many of the genotype's 16 kept pairs are parameter-free ops (the collapse count)."""
    from cosearch.search_spaces.darts import parse_genotype

    cells = parse_genotype(arch["genotype"])
    return sum(op in PARAMETER_FREE for kind in CELLS for op, _ in cells[kind])
