"""`cosearch report`: one self-contained, interactive HTML page for choosing a model.

Python gathers the run into one JSON document (columns, not records, and repeated strings
stored once, so a run of 100,000 results stays a few megabytes); `report.js` draws it with
plotly.js, inlined with the data, so the page fetches nothing when it is opened.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from cosearch import build
from cosearch.compressors import genes as compression_genes
from cosearch.controller.store import RunStore, StoredOutcome, StoredResult, is_final
from cosearch.core.errors import CosearchError
from cosearch.core.objectives import Goals
from cosearch.core.pareto import hypervolume, pareto_front
from cosearch.job import spec_from_dict
from cosearch.report.pareto import pareto_ids, picking_set, view_goals

REPORT_FAILURES = 200  # the latest failures listed with their errors
DETAIL_LIMIT = 3000  # candidates whose card has the per-layer strip and the drawing (fronts first)
CURVE_POINTS = 200  # evaluations at which the hypervolume and best-feasible curves are sampled
HV_REFERENCE = 1.1  # in objectives scaled to [0, 1] over the run's feasible results: extremes count
STATUS_CODES = {"ok": 0, "infeasible": 1, "failed": 2}
SIGNIFICANT = 6  # digits kept of each metric value in the page


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{SIGNIFICANT}g}")


def _index(table: dict[str, int], text: str) -> int:
    """Position of `text` in a table of distinct strings (added when new)."""
    return table.setdefault(text, len(table))


def layout(graph: Any) -> dict[str, Any]:
    """Left-to-right positions for a DAG: a column per generation, nodes stacked in it."""
    import networkx as nx

    names = {node: i for i, node in enumerate(graph.nodes)}
    nodes = [None] * len(names)
    for x, generation in enumerate(nx.topological_generations(graph)):
        for y, node in enumerate(sorted(generation, key=str)):
            label = graph.nodes[node].get("label", str(node))
            nodes[names[node]] = [str(label), x, y]
    edges = [[names[a], names[b], str(data.get("op", ""))] for a, b, data in graph.edges(data=True)]
    return {"nodes": nodes, "edges": edges}


def _how(details: Any) -> str:
    """A metric's `measured` entry as one line: its `how`, then its other plain settings."""
    if not isinstance(details, dict):
        return ""
    parts = [str(details["how"])] if "how" in details else []
    for key, value in details.items():
        if key in ("how", "value_ms") or isinstance(value, dict):
            continue
        parts.append(f"{key} {_number(value) if isinstance(value, float) else value}")
    return "; ".join(parts)


def _curves(items: Sequence[StoredOutcome], goals: Goals) -> dict[str, list]:
    """Hypervolume of the feasible front and the best feasible first objective, after each of
    up to CURVE_POINTS evaluations; the front is carried from one sample to the next."""
    n = len(items)
    if n == 0 or not goals.objectives:
        return {"evaluations": [], "hypervolume": [], "best": []}
    values, violations = goals.arrays([r.result for r in items])
    ok = np.array([r.result.ok for r in items]) & (violations == 0) & np.all(np.isfinite(values), axis=1)
    feasible = values[ok]
    ideal = feasible.min(axis=0) if len(feasible) else np.zeros(values.shape[1])
    span = feasible.max(axis=0) - ideal if len(feasible) else np.ones(values.shape[1])
    scaled = (values - ideal) / np.where(span > 0, span, 1.0)
    reference = np.full(values.shape[1], HV_REFERENCE)
    first = np.where(ok, values[:, 0], np.inf)
    best = np.minimum.accumulate(first)
    sign = -1.0 if goals.objectives[0].direction == "max" else 1.0
    marks = sorted(set(np.rint(np.linspace(1, n, min(n, CURVE_POINTS))).astype(int).tolist()))
    front, volume = np.empty((0, values.shape[1])), 0.0
    out: dict[str, list] = {"evaluations": marks, "hypervolume": [], "best": []}
    done = 0
    for mark in marks:
        chunk = scaled[done:mark][ok[done:mark]]
        done = mark
        if len(chunk):
            joined = np.vstack([front, chunk])
            kept = pareto_front(joined)
            if max(kept) >= len(front):  # a new point entered the front: the volume grew
                front = joined[kept]
                volume = _number(hypervolume(front, reference))
        out["hypervolume"].append(volume if len(front) else 0.0)
        out["best"].append(_number(sign * best[mark - 1]) if math.isfinite(best[mark - 1]) else None)
    return out


def _views(goals: Goals, seen: set[str]) -> list[tuple[str, Goals]]:
    """The job's goals, then one per device: its latency an objective, other devices left out."""
    devices = sorted({m.partition("@")[2] for m in seen if "@" in m})
    named = [("all devices (the job's goals)", goals)]
    return named + [(f"device {d}", view_goals(goals, seen, d)) for d in devices if len(devices) > 1]


def _view(name: str, goals: Goals, items: Sequence[StoredOutcome]) -> dict[str, Any]:
    return {
        "name": name,
        "objectives": [[o.metric, o.direction] for o in goals.objectives],
        "budgets": [[c.metric, c.op, c.bound] for c in goals.constraints],
        "curves": _curves(items, goals),
    }


def _detail_ids(picking: Sequence[StoredOutcome], goals: Goals, views: Sequence[Goals]) -> list[int]:
    """Which candidates get a full card: every one in a small run; in a large one the fronts
    of each view (with and without budgets) first, then the best by the first objective."""
    ok = [r for r in picking if r.result.ok]
    if len(ok) <= DETAIL_LIMIT:
        return [r.id for r in ok]
    chosen: dict[int, None] = {}
    for view in views:
        chosen.update(dict.fromkeys(pareto_ids(ok, view)))
        chosen.update(dict.fromkeys(pareto_ids(ok, Goals(view.objectives))))
    first = goals.objectives[0]
    sign = -1.0 if first.direction == "max" else 1.0
    for r in sorted(ok, key=lambda r: sign * r.result.metrics.get(first.metric, math.inf)):
        if len(chosen) >= DETAIL_LIMIT:
            break
        chosen.setdefault(r.id)
    return list(chosen)[:DETAIL_LIMIT]


def _card(stored: StoredResult, space: Any, drawings: dict[str, int], drawn: list) -> dict[str, Any]:
    r = stored.result
    arch_text = space.describe(r.candidate.arch)
    if arch_text not in drawings:
        drawings[arch_text] = len(drawn)
        drawn.append([{"title": title, **layout(graph)} for title, graph in space.diagram(r.candidate.arch)])
    policy = r.candidate.policy
    return {
        "layers": [[slot, layer.to_json()] for slot, layer in policy.layers.items()],  # genes at default left out
        "network": dict(policy.network),
        "drawing": drawings[arch_text],
        "measured": {k: _how(v) for k, v in r.measured.items() if isinstance(v, dict) and k != "final"},
        "final": r.measured.get("final"),
    }


def report_data(run_dir: str | Path) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able document."""
    with RunStore(run_dir) as store:
        job = spec_from_dict(store.job(), str(run_dir))
        outcomes = store.outcomes()  # metrics only: the candidates are read for the cards below
        status = store.status()
        goals = job.goals()
        seen = {m for r in outcomes for m in r.result.metrics}
        search = [r for r in outcomes if not is_final(r.result)]
        picking = picking_set(outcomes)
        named = _views(goals, seen)
        detail = _detail_ids(picking, goals, [view for _, view in named])
        joint = build.make_joint_space(job)
        space = joint.space
        summaries: dict[str, int] = {}
        archs: dict[str, int] = {}
        drawings: dict[str, int] = {}
        drawn: list = []
        cards: dict[str, Any] = {}
        summary_of: dict[int, int] = {}
        arch_of: dict[int, int] = {}
        for stored in _read(store, detail):
            cards[str(stored.id)] = _card(stored, space, drawings, drawn)
            summary_of[stored.id] = _index(summaries, stored.result.candidate.policy.summary())
            arch_of[stored.id] = _index(archs, space.describe(stored.result.candidate.arch))
    metrics = sorted(seen)
    picked = {r.id for r in picking}
    searched_genes = [n for n, g in compression_genes("layer").items() if tuple(joint.options[n]) != (g.default,)]
    failed = [r for r in outcomes if r.result.status == "failed"]
    counts = {s: sum(r.result.status == s for r in search) for s in STATUS_CODES}
    return {
        "name": job.name,
        "run_dir": str(run_dir),
        "state": status.get("state", "unknown"),
        "reason": status.get("reason"),
        "space": job.search_space.name,
        "strategy": job.strategy.name,
        "trials": job.resources.trials,
        "counts": counts,
        "finals": len(outcomes) - len(search),
        "written": time.strftime("%Y-%m-%d %H:%M"),
        "metrics": metrics,
        "id": [r.id for r in outcomes],
        "status": [STATUS_CODES.get(r.result.status, 2) for r in outcomes],
        "pick": [int(r.id in picked) for r in outcomes],
        "values": {m: [_number(r.result.metrics.get(m)) for r in outcomes] for m in metrics},
        "summary": [summary_of.get(r.id, -1) for r in outcomes],
        "arch": [arch_of.get(r.id, -1) for r in outcomes],
        "summaries": list(summaries),
        "archs": list(archs),
        "views": [_view(name, view, search) for name, view in named],
        "cards": cards,
        "drawings": drawn,
        "detail_limit": DETAIL_LIMIT,
        "gene_defaults": {name: gene.default for name, gene in compression_genes("layer").items()},
        "searched_genes": searched_genes,  # a strip row each, even where a candidate leaves it off
        "failures": [[r.id, r.result.error or ""] for r in failed[-REPORT_FAILURES:]],
        "failures_left_out": max(0, len(failed) - REPORT_FAILURES),
        "export": f"cosearch export {run_dir} --pick",
    }


def _read(store: RunStore, ids: Sequence[int]) -> list[StoredResult]:
    """The stored results of `ids`: in one pass over the store when they are most of it."""
    wanted = set(ids)
    if len(wanted) * 4 > store.count():
        return [r for r in store.iter_results() if r.id in wanted]
    return [r for r in (store.get(i) for i in ids) if r is not None]


def _asset(name: str) -> str:
    return resources.files("cosearch.report").joinpath(name).read_text(encoding="utf-8")


def _inline_json(data: Any) -> str:
    # Inside <script>, "</" would end the element and "<!--" open a comment: written escaped.
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def render(data: dict[str, Any]) -> str:
    from plotly.offline import get_plotlyjs

    title = html.escape(f"cosearch report: {data['name']}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_asset("report.css")}</style>
<script>{get_plotlyjs()}</script>
</head><body>
<h1>{title}</h1>
<div id="app">the report draws itself with JavaScript; if this stays, the browser blocked scripts</div>
<script id="report-data" type="application/json">{_inline_json(data)}</script>
<script>{_asset("report.js")}</script>
</body></html>
"""


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN_DIR/report.html (or `out`, a file; missing folders are created); returns its path."""
    path = Path(out) if out else Path(run_dir) / "report.html"
    if path.is_dir():
        raise CosearchError(f"--out {path} is a folder; give a file name, e.g. {path / 'report.html'}")
    page = render(report_data(run_dir))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise CosearchError(f"{path}: cannot write the report ({error.strerror})") from None
    return path
