"""The controller: Ray scheduling, durable results, checkpoints, resume."""

from cosearch.controller.controller import Controller, RunState, connect_ray
from cosearch.controller.store import RunStore, StoredResult, is_run_dir

__all__ = ["Controller", "RunState", "RunStore", "StoredResult", "connect_ray", "is_run_dir"]
