"""The controller: Ray scheduling, durable results, checkpoints, resume."""

from cosearch.controller.controller import Controller, RunState, check_new_run_dir, connect_ray, default_run_dir
from cosearch.controller.store import RunStore, StoredResult, is_run_dir

__all__ = [
    "Controller",
    "RunState",
    "RunStore",
    "StoredResult",
    "check_new_run_dir",
    "connect_ray",
    "default_run_dir",
    "is_run_dir",
]
