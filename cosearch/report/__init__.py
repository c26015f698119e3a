"""Reading a run: the Pareto set and tables (the HTML report comes later)."""

from cosearch.report.pareto import Row, pareto_ids, rows

__all__ = ["Row", "pareto_ids", "rows"]
