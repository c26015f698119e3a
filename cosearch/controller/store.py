"""The run directory: every result durable in SQLite before the strategy hears of it.

Layout of RUN_DIR:
  cosearch.db   results (append-only, ids 1..N in completion order), trained weights, the
                strategy checkpoint, and the job spec; WAL mode with synchronous=FULL, so a
                committed row survives kill -9 and power loss.
  job.yaml      the validated job, for people to read (the database copy is the one used).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from cosearch.core.errors import RunDirError
from cosearch.core.result import Result

DB_NAME = "cosearch.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    result TEXT NOT NULL,
    created_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS weights (key TEXT PRIMARY KEY, state BLOB NOT NULL);
"""


FINAL_PREFIX = "final:"  # the storage key of a search pick's final training: its candidate's key after this


def is_final(result: Result | Outcome) -> bool:
    """Whether a result is the final, standalone training of a search's pick (`job.finalize`),
    rather than one of the search's own evaluations."""
    return "final" in result.measured


def storage_key(result: Result) -> str:
    return FINAL_PREFIX + result.candidate.key if is_final(result) else result.candidate.key


@dataclass(frozen=True)
class StoredResult:
    id: int
    result: Result
    created_s: float


@dataclass(frozen=True)
class Outcome:
    """A stored result's status, metrics and error without its candidate: all that fronts,
    counts and plots need, read from the store about a hundred times faster than a Result."""

    status: str
    metrics: dict[str, float]
    error: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)  # only `over_budget_stage` and `final`, where set

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class StoredOutcome:
    id: int
    result: Outcome


@dataclass(frozen=True)
class Checkpoint:
    strategy: dict[str, Any]
    told_id: int  # every stored result with id <= told_id has been told to the strategy
    pending: list[dict[str, Any]]  # candidates asked and submitted but without a result yet


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / DB_NAME).is_file()


def half_created(run_dir: str | Path) -> bool:
    """A run directory whose database exists but never got its job (a start that died, e.g. on a
    full disk): nothing was evaluated, so `cosearch run --run-dir` may replace it."""
    db_path = Path(run_dir) / DB_NAME
    if not db_path.is_file():
        return False
    if db_path.stat().st_size == 0:
        return True
    try:
        db = _connect_read_only(db_path)
        try:
            return _never_started(db)
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return False


def _never_started(db: sqlite3.Connection) -> bool:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        return not tables  # an empty database; other tables mean damage, not a half start
    has_job = db.execute("SELECT 1 FROM meta WHERE name = 'job'").fetchone() is not None
    has_results = "results" in tables and db.execute("SELECT 1 FROM results LIMIT 1").fetchone() is not None
    return not has_job and not has_results


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    """A connection that writes nothing. WAL readers need the -shm side file; on read-only storage
    where it cannot be created, the file is opened immutable (nobody can be writing to it there)."""
    uri = f"file:{quote(str(db_path.resolve()))}"
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
        if os.access(db_path.parent, os.W_OK):
            raise
    db = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
    db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    return db


class RunStore:
    """Results, weights, checkpoint and job of one run, in RUN_DIR/cosearch.db.

    `create`: a new run; `write`: the driver of an existing run; otherwise read-only, which works
    on read-only storage and beside a running driver (`status`, `pareto`, `report`, `export`)."""

    def __init__(self, run_dir: str | Path, create: bool = False, write: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.writable = create or write
        db_path = self.run_dir / DB_NAME
        if not create and not db_path.is_file():
            raise RunDirError(
                f"{self.run_dir}: not a cosearch run directory (no {DB_NAME}); start one with `cosearch run JOB`"
            )
        never_started = RunDirError(
            f"{self.run_dir}: a run that never started (its {DB_NAME} holds no job and no results, e.g. the disk "
            f"filled while it was created); start it again with `cosearch run JOB --run-dir {self.run_dir}`, which replaces it"
        )
        if not create and db_path.stat().st_size == 0:
            raise never_started
        if create:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.writable:
                self._db = sqlite3.connect(db_path, isolation_level=None, timeout=30.0)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                if create:
                    self._db.executescript(_SCHEMA)
            else:
                self._db = _connect_read_only(db_path)
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not create and _never_started(self._db):
                self._db.close()
                raise never_started
        except sqlite3.DatabaseError as error:
            if hasattr(self, "_db"):
                self._db.close()
            raise RunDirError(f"{db_path}: not a readable cosearch database ({error})") from None
        missing = [t for t in ("meta", "results", "weights") if t not in tables]
        if missing:
            self._db.close()
            raise RunDirError(
                f"{db_path}: the database lacks its {', '.join(missing)} table(s); it was damaged outside cosearch (restore it from a copy)"
            )
        if not create and self._meta("job") is None:
            self._db.close()
            raise RunDirError(f"{self.run_dir}: the run has no job recorded; it is not a cosearch run")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- job ----------------------------------------------------------------------------
    def _meta(self, name: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return _parsed(row[0], f"{self.run_dir / DB_NAME}: the {name!r} entry") if row else None

    def _set_meta(self, name: str, value: Any) -> None:
        with self._writing():
            self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, json.dumps(value)))

    def save_job(self, job: dict[str, Any]) -> None:
        self._set_meta("schema_version", SCHEMA_VERSION)
        self._set_meta("job", job)
        self._set_meta("created_s", time.time())
        try:
            (self.run_dir / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
        except OSError as error:
            raise RunDirError(f"{self.run_dir / 'job.yaml'}: cannot write ({error.strerror})") from None

    def job(self) -> dict[str, Any]:
        return self._meta("job")

    # --- results ------------------------------------------------------------------------
    def add(self, result: Result, weights: bytes | None = None) -> int:
        """Store a result (and its weights) in one transaction; returns its id. A final training
        is stored beside the search's result of the same candidate, under its own key."""
        key = storage_key(result)
        with self._writing(), self._transaction():
            cursor = self._db.execute(
                "INSERT INTO results (key, status, result, created_s) VALUES (?, ?, ?, ?)",
                (key, result.status, json.dumps(result.to_json()), time.time()),
            )
            if weights is not None:
                self._db.execute("INSERT OR REPLACE INTO weights (key, state) VALUES (?, ?)", (key, weights))
        return int(cursor.lastrowid)

    def results(self, after_id: int = 0) -> list[StoredResult]:
        return list(self.iter_results(after_id))

    def iter_results(self, after_id: int = 0, batch: int = 1000) -> Iterator[StoredResult]:
        """Stored results in id order, read `batch` at a time (memory stays flat over a large run)."""
        while True:
            rows = self._db.execute(
                "SELECT id, result, created_s FROM results WHERE id > ? ORDER BY id LIMIT ?", (after_id, batch)
            ).fetchall()
            for row in rows:
                yield self._stored(*row)
            if len(rows) < batch:
                return
            after_id = rows[-1][0]

    def outcomes(self) -> list[StoredOutcome]:
        """Every result's status, metrics and error, in id order (the candidates are not read)."""
        fields = ("$.metrics", "$.error", "$.timings_s", "$.measured.over_budget_stage", "$.measured.final")
        extract = ", ".join(f"CASE WHEN json_valid(result) THEN json_extract(result, '{f}') END" for f in fields)
        rows = self._db.execute(f"SELECT id, status, json_valid(result), {extract} FROM results ORDER BY id")
        out = []
        for i, status, valid, metrics, error, timings, stage, final in rows:
            if not valid or metrics is None:  # damaged outside cosearch: reading it whole says how
                self._damaged(i)
            where = f"{self.run_dir / DB_NAME}: result #{i}"
            measured = {"over_budget_stage": stage} if stage else {}
            if final:
                measured["final"] = _parsed(final, where)
            out.append(
                StoredOutcome(
                    i, Outcome(status, _parsed(metrics, where), error, _parsed(timings or "{}", where), measured)
                )
            )
        return out

    def _damaged(self, result_id: int) -> None:
        """Raise the error that reading result `result_id` whole gives (it is not a stored result)."""
        self.get(result_id)
        raise RunDirError(
            f"{self.run_dir / DB_NAME}: result #{result_id} has no metrics; the database was changed outside cosearch"
        )

    def get(self, result_id: int) -> StoredResult | None:
        row = self._db.execute("SELECT id, result, created_s FROM results WHERE id = ?", (result_id,)).fetchone()
        return self._stored(*row) if row else None

    def by_key(self, key: str) -> StoredResult | None:
        row = self._db.execute("SELECT id, result, created_s FROM results WHERE key = ?", (key,)).fetchone()
        return self._stored(*row) if row else None

    def _stored(self, result_id: int, text: str, created_s: float) -> StoredResult:
        where = f"{self.run_dir / DB_NAME}: result #{result_id}"
        data = _parsed(text, where)
        try:
            return StoredResult(result_id, Result.from_json(data), created_s)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise RunDirError(
                f"{where} is not a stored result ({type(error).__name__}: {error}); the database was changed outside cosearch"
            ) from None

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def weights_of(self, result: Result) -> bytes | None:
        """The stored weights of `result` (a search evaluation's, or a final training's)."""
        return self.weights(storage_key(result))

    def weights(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT state FROM weights WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    # --- strategy checkpoint ------------------------------------------------------------
    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._set_meta(
            "checkpoint",
            {"strategy": checkpoint.strategy, "told_id": checkpoint.told_id, "pending": checkpoint.pending},
        )

    def checkpoint(self) -> Checkpoint | None:
        data = self._meta("checkpoint")
        if not data:
            return None
        ok = (
            isinstance(data, dict)
            and isinstance(data.get("strategy"), dict)
            and isinstance(data.get("told_id"), int)
            and isinstance(data.get("pending"), list)
        )
        if not ok:
            raise CheckpointError(
                f"{self.run_dir / DB_NAME}: the strategy checkpoint is not of the shape cosearch writes; {reset_hint(self.run_dir)}"
            )
        return Checkpoint(data["strategy"], data["told_id"], data["pending"])

    # --- distillation teacher ----------------------------------------------------------
    def save_teacher(self, info: dict[str, Any], train_logits: bytes, state: bytes) -> None:
        with self._writing(), self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO weights (key, state) VALUES (?, ?)", ("teacher:logits", train_logits)
            )
            self._db.execute("INSERT OR REPLACE INTO weights (key, state) VALUES (?, ?)", ("teacher:state", state))
            self._set_meta("teacher", info)

    def save_work(self, key: str, output: Any) -> None:
        """The output of a strategy's `Work` (a one-shot search), before the strategy hears of it."""
        self._set_meta(f"work:{key}", output)

    def work(self, key: str) -> Any:
        return self._meta(f"work:{key}")

    def save_warm_start(self, info: dict[str, Any]) -> None:
        self._set_meta("warm_start", info)

    def warm_start(self) -> dict[str, Any] | None:
        """Where a warm-started run began from, and how many results it reused and told."""
        return self._meta("warm_start")

    def has_teacher(self) -> bool:
        """Whether the teacher is prepared (as `teacher()` would find it), without reading its logits."""
        row = self._db.execute("SELECT 1 FROM weights WHERE key = ?", ("teacher:logits",)).fetchone()
        return row is not None and self._meta("teacher") is not None

    def teacher(self) -> tuple[dict[str, Any], bytes] | None:
        """The teacher's description and its training-split logits (numpy .npy bytes), if prepared."""
        info = self._meta("teacher")
        logits = self.weights("teacher:logits")
        return (info, logits) if info is not None and logits is not None else None

    # --- weight-sharing supernet -------------------------------------------------------
    def save_supernet(self, info: dict[str, Any], checkpoint: bytes) -> None:
        """The supernet's training checkpoint after an epoch (weights, optimizer, epochs done)."""
        with self._writing(), self._transaction():
            self._db.execute("INSERT OR REPLACE INTO weights (key, state) VALUES (?, ?)", ("supernet", checkpoint))
            self._set_meta("supernet", info)

    def supernet(self) -> tuple[dict[str, Any], bytes] | None:
        """The supernet's description (epochs done, losses) and its latest checkpoint, if any."""
        info = self._meta("supernet")
        checkpoint = self.weights("supernet")
        return (info, checkpoint) if info is not None and checkpoint is not None else None

    def set_status(self, status: str, reason: str = "") -> None:
        self._set_meta("status", {"state": status, "at_s": time.time(), **({"reason": reason} if reason else {})})

    def status(self) -> dict[str, Any]:
        return self._meta("status") or {"state": "unknown"}

    def _transaction(self) -> Iterator[None]:
        return _Transaction(self._db)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write that fails (a full disk, storage gone read-only) is one clear error; SQLite rolls
        the transaction back, so what was committed before stays whole."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.OperationalError as error:
            raise RunDirError(
                f"{self.run_dir / DB_NAME}: cannot write ({error}); everything committed before is kept: "
                f"make room (or make the storage writable), then `cosearch resume {self.run_dir}`"
            ) from None


def reset_hint(run_dir: Path) -> str:
    return f"`cosearch resume {run_dir} --reset-strategy` starts the strategy afresh and tells it every stored result (nothing stored is lost)"


class CheckpointError(RunDirError):
    """The stored strategy checkpoint cannot be loaded; `cosearch resume --reset-strategy` rebuilds it."""


def _parsed(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as error:
        raise RunDirError(f"{where} is not valid JSON ({error}); the database was changed outside cosearch") from None


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
