"""Reading a run: the Pareto set (per device budget), rule-based picks, tables and the HTML report."""

from cosearch.report.pareto import (
    Row,
    Selection,
    best,
    pareto_ids,
    picking_set,
    ranked_ids,
    rows,
    searched,
    select,
    view_goals,
)

__all__ = [
    "Row",
    "Selection",
    "best",
    "pareto_ids",
    "picking_set",
    "ranked_ids",
    "rows",
    "searched",
    "select",
    "view_goals",
]
