"""cosearch: joint architecture x compression search on Ray, scored under device budgets.

From Python: `cosearch.search(job, run_dir=...)` runs a search, `cosearch.open_run(run_dir)` reads
one (see `cosearch.api`); from a shell: `cosearch --help`.
"""

from cosearch.api import Run, open_run, resume, search

__all__ = ["Run", "open_run", "resume", "search"]
