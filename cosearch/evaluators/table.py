"""Answer candidates from a benchmark table (e.g. NAS-Bench-201 with HW-NAS-Bench latencies).

No training: a whole search runs in seconds through the real controller, so strategies can be
compared on real numbers. The table is a CSV (optionally gzipped) with one row per architecture.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from cosearch.core.candidate import Candidate
from cosearch.core.errors import SpecError
from cosearch.core.objectives import resolve_metric
from cosearch.core.result import Result
from cosearch.evaluators.base import EVALUATORS, Evaluation, Evaluator
from cosearch.search_spaces.base import SearchSpace


@lru_cache(maxsize=4)
def read_table(path: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and the columns of a CSV table, as strings; cached per process."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    return header, columns


@lru_cache(maxsize=8)
def _index(path: str, key_column: str, columns: tuple[tuple[str, str, float], ...]) -> dict[str, dict[str, float]]:
    """key -> {metric: scaled value}; cached per process, since Ray hands each task a fresh evaluator."""
    _, table = read_table(path)
    data = {metric: np.asarray(table[column], dtype=float) * scale for metric, column, scale in columns}
    return {key: {m: float(v[i]) for m, v in data.items()} for i, key in enumerate(table[key_column])}


@EVALUATORS.register("table")
class TableEvaluator(Evaluator):
    """Look a candidate's architecture up in a table.

    `metrics` maps each metric cosearch reports to a column, e.g.
    `{accuracy: c10_test_200ep, latency_ms@pixel3: lat_pixel3}`; map accuracy to a 12-epoch column
    for a low-fidelity search. Accuracy columns in percent are divided by 100 (see `scale`).
    `noise_std` adds seeded Gaussian noise (in metric units) to emulate noisy training.
    """

    evaluates_policy = False

    def __init__(
        self,
        space: SearchSpace,
        path: str,
        metrics: Mapping[str, str],
        key_column: str = "arch_str",
        arch_field: str = "cell",
        scale: Mapping[str, float] | None = None,
        noise_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not Path(path).is_file():
            raise SpecError("evaluator.path", path, "an existing CSV or CSV.gz benchmark table")
        header, columns = read_table(str(path))
        if key_column not in header:
            raise SpecError("evaluator.key_column", key_column, f"a column of the table: {header[:8]}...")
        if not metrics:
            raise SpecError(
                "evaluator.metrics", metrics, "a mapping of metric to column, e.g. {accuracy: c10_test_200ep}"
            )
        if noise_std < 0:
            raise SpecError("evaluator.noise_std", noise_std, "a number >= 0")
        self.space, self.path, self.key_column, self.arch_field = space, str(path), key_column, arch_field
        self.noise_std, self.seed = float(noise_std), int(seed)
        self.columns: dict[str, str] = {}
        self.scale: dict[str, float] = {}
        for metric, column in metrics.items():
            resolved = resolve_metric(metric, f"evaluator.metrics.{metric}")
            if column not in header:
                raise SpecError(f"evaluator.metrics.{metric}", column, f"a column of the table, e.g. {header[2:6]}")
            self.columns[resolved] = column
            values = np.asarray(columns[column], dtype=float)
            default = 0.01 if resolved == "accuracy" and np.nanmax(values) > 1.0 else 1.0
            self.scale[resolved] = float((scale or {}).get(metric, default))

    def provides(self) -> set[str]:
        return set(self.columns)

    def _lookup(self) -> dict[str, dict[str, float]]:
        columns = tuple((m, c, self.scale[m]) for m, c in sorted(self.columns.items()))
        return _index(self.path, self.key_column, columns)

    def evaluate(self, candidate: Candidate) -> Evaluation:
        key = candidate.arch.get(self.arch_field)
        row = self._lookup().get(key)  # type: ignore[arg-type]
        if row is None:
            return Evaluation(Result.failed(candidate, f"KeyError: {key!r} is not in {self.path}"))
        metrics = dict(row)
        if self.noise_std:
            rng = np.random.default_rng([self.seed, int(candidate.key, 16)])
            metrics = {m: v + float(rng.normal(0.0, self.noise_std)) for m, v in metrics.items()}
        measured = {
            m: {"table": Path(self.path).name, "column": c, "scale": self.scale[m]} for m, c in self.columns.items()
        }
        return Evaluation(Result(candidate, "ok", metrics, measured=measured))
