"""The run directory: every result durable in SQLite before the strategy hears of it.

Layout of RUN_DIR:
  cosearch.db   results (append-only, ids 1..N in completion order), trained weights, the
                strategy checkpoint, and the job spec; WAL mode with synchronous=FULL, so a
                committed row survives kill -9 and power loss.
  job.yaml      the validated job, for people to read (the database copy is the one used).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

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


@dataclass(frozen=True)
class StoredResult:
    id: int
    result: Result
    created_s: float


@dataclass(frozen=True)
class Checkpoint:
    strategy: dict[str, Any]
    told_id: int  # every stored result with id <= told_id has been told to the strategy
    pending: list[dict[str, Any]]  # candidates asked and submitted but without a result yet


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / DB_NAME).is_file()


class RunStore:
    """Results, weights, checkpoint and job of one run, in RUN_DIR/cosearch.db."""

    def __init__(self, run_dir: str | Path, create: bool = False) -> None:
        self.run_dir = Path(run_dir)
        db_path = self.run_dir / DB_NAME
        if not create and not db_path.is_file():
            raise RunDirError(f"{self.run_dir}: not a cosearch run directory (no {DB_NAME}); start one with `cosearch run JOB`")
        if create:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db_path, isolation_level=None, timeout=30.0)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise RunDirError(f"{db_path}: not a readable cosearch database ({error})") from None
        if not create and self._meta("job") is None:
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
        return json.loads(row[0]) if row else None

    def _set_meta(self, name: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, json.dumps(value)))

    def save_job(self, job: dict[str, Any]) -> None:
        self._set_meta("schema_version", SCHEMA_VERSION)
        self._set_meta("job", job)
        self._set_meta("created_s", time.time())
        (self.run_dir / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))

    def job(self) -> dict[str, Any]:
        return self._meta("job")

    # --- results ------------------------------------------------------------------------
    def add(self, result: Result, weights: bytes | None = None) -> int:
        """Store a result (and its weights) in one transaction; returns its id."""
        key = result.candidate.key
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO results (key, status, result, created_s) VALUES (?, ?, ?, ?)",
                (key, result.status, json.dumps(result.to_json()), time.time()),
            )
            if weights is not None:
                self._db.execute("INSERT OR REPLACE INTO weights (key, state) VALUES (?, ?)", (key, weights))
        return int(cursor.lastrowid)

    def results(self, after_id: int = 0) -> list[StoredResult]:
        rows = self._db.execute("SELECT id, result, created_s FROM results WHERE id > ? ORDER BY id", (after_id,))
        return [StoredResult(i, Result.from_json(json.loads(text)), created) for i, text, created in rows]

    def get(self, result_id: int) -> StoredResult | None:
        row = self._db.execute("SELECT id, result, created_s FROM results WHERE id = ?", (result_id,)).fetchone()
        return StoredResult(row[0], Result.from_json(json.loads(row[1])), row[2]) if row else None

    def by_key(self, key: str) -> StoredResult | None:
        row = self._db.execute("SELECT id, result, created_s FROM results WHERE key = ?", (key,)).fetchone()
        return StoredResult(row[0], Result.from_json(json.loads(row[1])), row[2]) if row else None

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def weights(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT state FROM weights WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    # --- strategy checkpoint ------------------------------------------------------------
    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._set_meta("checkpoint", {"strategy": checkpoint.strategy, "told_id": checkpoint.told_id, "pending": checkpoint.pending})

    def checkpoint(self) -> Checkpoint | None:
        data = self._meta("checkpoint")
        return Checkpoint(data["strategy"], data["told_id"], data["pending"]) if data else None

    # --- distillation teacher ----------------------------------------------------------
    def save_teacher(self, info: dict[str, Any], train_logits: bytes, state: bytes) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO weights (key, state) VALUES (?, ?)", ("teacher:logits", train_logits))
            self._db.execute("INSERT OR REPLACE INTO weights (key, state) VALUES (?, ?)", ("teacher:state", state))
            self._set_meta("teacher", info)

    def teacher(self) -> tuple[dict[str, Any], bytes] | None:
        """The teacher's description and its training-split logits (numpy .npy bytes), if prepared."""
        info = self._meta("teacher")
        logits = self.weights("teacher:logits")
        return (info, logits) if info is not None and logits is not None else None

    def set_status(self, status: str) -> None:
        self._set_meta("status", {"state": status, "at_s": time.time()})

    def status(self) -> dict[str, Any]:
        return self._meta("status") or {"state": "unknown"}

    def _transaction(self) -> Iterator[None]:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
