"""`cosearch report`: one self-contained HTML page with the run's plots and Pareto table."""

from __future__ import annotations

import html
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cosearch.build import make_space
from cosearch.controller.store import RunStore, StoredOutcome, StoredResult
from cosearch.core.errors import CosearchError
from cosearch.core.objectives import Goals
from cosearch.job import spec_from_dict
from cosearch.report.pareto import pareto_ids, picking_set, searched

REPORT_FAILURES = 200  # the latest failures listed with their errors
RASTER_ABOVE = 500  # points of one kind drawn as vector marks; more become one embedded image
COLOURS = {"front": "#d62728", "feasible": "#1f77b4", "over budget": "#aaaaaa", "failed": "#000000"}


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE: the SVG goes inline


def _label(metric: str) -> str:
    return "accuracy (val)" if metric == "accuracy" else metric


def scatter(
    results: Sequence[StoredOutcome | StoredResult], goals: Goals, x_metric: str, y_metric: str, front: set[int]
) -> str:
    """Every result with both metrics, coloured by status; budget lines dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.2, 3.8))
    groups: dict[str, list[tuple[float, float]]] = {k: [] for k in COLOURS}
    for item in results:
        r = item.result
        if x_metric not in r.metrics or y_metric not in r.metrics:
            continue
        kind = "front" if item.id in front else "feasible" if goals.feasible(r) else "over budget"
        groups[kind].append((r.metrics[x_metric], r.metrics[y_metric]))
    for kind, points in groups.items():
        if points:
            xs, ys = zip(*points)
            axes.scatter(
                xs,
                ys,
                s=28 if kind == "front" else 16,
                c=COLOURS[kind],
                label=f"{kind} ({len(points)})",
                zorder=3 if kind == "front" else 2,
                rasterized=len(points) > RASTER_ABOVE,  # a large cloud as one image, not a node per point
            )
    for constraint in goals.constraints:
        if constraint.metric == x_metric:
            axes.axvline(constraint.bound, ls="--", c="#555555", lw=1)
        if constraint.metric == y_metric:
            axes.axhline(constraint.bound, ls="--", c="#555555", lw=1)
    axes.set_xlabel(_label(x_metric))
    axes.set_ylabel(_label(y_metric))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    svg = _svg(figure)
    plt.close(figure)
    return svg


def progress(results: Sequence[StoredOutcome | StoredResult], goals: Goals) -> str:
    """Best feasible value of the first objective after each evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objective = goals.objectives[0]
    best, curve = None, []
    for item in results:
        value = item.result.metrics.get(objective.metric)
        if goals.feasible(item.result) and value is not None:
            better = best is None or (value > best if objective.direction == "max" else value < best)
            best = value if better else best
        curve.append(best)
    figure, axes = plt.subplots(figsize=(5.2, 3.0))
    axes.step(
        range(1, len(curve) + 1), [float("nan") if v is None else v for v in curve], where="post", c=COLOURS["front"]
    )
    axes.set_xlabel("evaluations")
    axes.set_ylabel(f"best feasible {_label(objective.metric)}")
    axes.grid(alpha=0.3)
    svg = _svg(figure)
    plt.close(figure)
    return svg


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN_DIR/report.html (or `out`, a file; missing folders are created); returns its path."""
    path = Path(out) if out else Path(run_dir) / "report.html"
    if path.is_dir():
        raise CosearchError(f"--out {path} is a folder; give a file name, e.g. {path / 'report.html'}")
    with RunStore(run_dir) as store:
        job = spec_from_dict(store.job(), str(run_dir))
        results = store.outcomes()  # metrics only; the candidates of the Pareto set are read below
        status = store.status()
        goals = job.goals()
        front_ids = pareto_ids(picking_set(results), goals)
        by_id = {i: store.get(i) for i in front_ids}
    space = make_space(job)
    front = set(front_ids)
    metrics = [o.metric for o in goals.objectives]
    plots = []
    first = metrics[0]
    for other in metrics[1:]:
        plots.append(scatter(results, goals, other, first, front))
    if len(metrics) >= 3:  # the costs of candidates skipped before training show here too
        plots.append(scatter(results, goals, metrics[1], metrics[2], front))
    if searched(results):
        plots.append(progress(searched(results), goals))
    search = searched(results)
    finals = len(results) - len(search)
    counts = {s: sum(r.result.status == s for r in search) for s in ("ok", "infeasible", "failed")}
    rows = []
    for result_id in front_ids:
        r = by_id[result_id].result
        cells = [str(result_id)] + [f"{r.metrics.get(m, float('nan')):.4g}" for m in metrics]
        cells += [r.candidate.policy.summary(), space.describe(r.candidate.arch)]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    failed = [r for r in results if r.result.status == "failed"]
    failures = [f"<li>#{r.id}: {html.escape(r.result.error or '')}</li>" for r in failed[-REPORT_FAILURES:]]
    if len(failed) > REPORT_FAILURES:
        failures.insert(
            0, f"<li>({len(failed) - REPORT_FAILURES} earlier failures: <code>cosearch pareto --all</code>)</li>"
        )
    header = "".join(f"<th>{html.escape(h)}</th>" for h in ["id", *metrics, "compression", "arch"])
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cosearch report: {html.escape(job.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ddd;padding:3px 7px;text-align:left}} .plots{{display:flex;flex-wrap:wrap;gap:1em}} code{{background:#f4f4f4}}</style>
</head><body>
<h1>cosearch report: {html.escape(job.name)}</h1>
<p>Run <code>{html.escape(str(run_dir))}</code>, {html.escape(status.get("state", "unknown"))}; {len(search)} of {job.resources.trials} evaluations:
{counts["ok"]} trained, {counts["infeasible"]} over budget before training, {counts["failed"]} failed.
Search space <code>{html.escape(job.search_space.name)}</code>, strategy <code>{html.escape(job.strategy.name)}</code>.
Budgets: {html.escape(", ".join(map(str, goals.constraints)) or "none")}. Written {time.strftime("%Y-%m-%d %H:%M")}.</p>
<div class="plots">{"".join(plots)}</div>
<h2>Pareto set ({len(front_ids)}{" of the final, standalone trainings of the search's picks" if finals else ""})</h2>
<table><tr>{header}</tr>{"".join(rows)}</table>
<p>Export one with <code>cosearch export {html.escape(str(run_dir))} --pick ID</code>.</p>
{"<h2>Failures</h2><ul>" + "".join(failures) + "</ul>" if failures else ""}
</body></html>
"""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page)
    except OSError as error:
        raise CosearchError(f"{path}: cannot write the report ({error.strerror})") from None
    return path
