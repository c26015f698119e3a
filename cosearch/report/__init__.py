"""Reading a run: the Pareto set (per device budget), tables and the HTML report."""

from cosearch.report.pareto import Row, pareto_ids, picking_set, rows, searched, view_goals

__all__ = ["Row", "pareto_ids", "picking_set", "rows", "searched", "view_goals"]
