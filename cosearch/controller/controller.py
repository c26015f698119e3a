"""The search driver: asks the strategy, runs evaluations as Ray tasks, stores, tells, resumes.

The only module of cosearch that imports ray. Order of every completion:
  1. the result (and weights) is committed to RUN_DIR,
  2. the strategy is told,
  3. the strategy checkpoint (state, last told id, in-flight candidates) is committed.
A kill between any two steps loses nothing: resume loads the checkpoint, tells the strategy
the stored results it has not heard of, and re-submits the in-flight candidates. Step 3 is
throttled (CHECKPOINT_INTERVAL_S), since serialising a large strategy state per evaluation
would dominate cheap evaluations, and a stale checkpoint is made whole by step 2's replay.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cosearch import build
from cosearch.controller.lock import RunLock
from cosearch.controller.store import (
    DB_NAME,
    FINAL_PREFIX,
    Checkpoint,
    CheckpointError,
    RunStore,
    StoredOutcome,
    StoredResult,
    half_created,
    is_final,
    reset_hint,
)
from cosearch.core.candidate import Candidate
from cosearch.core.errors import CosearchError, RunFailed
from cosearch.core.objectives import Goals
from cosearch.core.result import Result
from cosearch.evaluators.base import Evaluation, Evaluator
from cosearch.job import JobSpec, require_teacher, spec_from_dict, teacher_rules
from cosearch.strategies.dedup import Deduplicated

log = logging.getLogger(__name__)

# A strategy asked this many times in a row for only stored or running candidates gets a fresh
# random proposal in its place (told to it like any result): repeating itself proves nothing.
MAX_REPEATED_ASKS = 20
MAX_RANDOM_DRAWS = 1000  # random draws for a new candidate before the space is counted
ENUMERATE_LIMIT = 20_000  # genomes of a space small enough to count its distinct candidates exactly
WAIT_TIMEOUT_S = 0.5  # how often the progress display refreshes while evaluations run
# Results are committed one by one; the strategy checkpoint at most this often (and on exit).
# An older checkpoint loses nothing: resume tells the strategy every result stored after it.
CHECKPOINT_INTERVAL_S = 2.0


RECENT_RESULTS = 1000  # results a display can still show one by one; older ones are only counted


def _with_trials(job: JobSpec, trials: int, stored: int, run_dir: str | Path) -> JobSpec:
    if trials < max(stored, 1):
        raise CosearchError(
            f"--trials {trials} is below the {stored} results {run_dir} already stores; give at least {max(stored, 1)}"
        )
    return job.model_copy(update={"resources": job.resources.model_copy(update={"trials": trials})})


def default_run_dir(job: JobSpec) -> Path:
    return Path(f"runs/{job.name}-{time.strftime('%Y%m%d-%H%M%S')}")


def check_new_run_dir(run_dir: str | Path) -> str | None:
    """Refuse a run directory that cannot take a new run (a file, another driver's, a stored run,
    other files); returns a note when it holds a run that never started, which is started again."""
    from cosearch.controller.lock import LOCK_NAME, driver_running

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CosearchError(f"--run-dir {run_dir} is a file; give a folder (new or empty)")
    if driver_running(run_dir):
        raise CosearchError(
            f"{run_dir} is being driven by another cosearch process; one driver per run: give a new --run-dir"
        )
    note = None
    if (run_dir / DB_NAME).exists():
        if not half_created(run_dir):
            raise CosearchError(f"{run_dir} already holds a run; continue it with `cosearch resume {run_dir}`")
        note = f"{run_dir} holds a run that never started (no job recorded, nothing evaluated); starting it again there"
    leftovers = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", LOCK_NAME, "job.yaml"}
    if run_dir.exists() and any(p.name not in leftovers for p in run_dir.iterdir()):
        raise CosearchError(f"{run_dir} exists and is not empty; give a new --run-dir")
    return note


@dataclass
class RunState:
    """What a progress display shows; updated by the controller as results arrive (`add`).

    Every figure is kept as a running count, so showing it costs the same at the millionth
    result as at the first; only the latest `RECENT_RESULTS` results themselves are held."""

    goals: Goals
    total: int
    running: int = 0
    started_s: float = field(default_factory=time.time)
    done_at_start: int = 0
    duplicates: int = 0
    random_proposals: int = 0  # fresh random candidates given in place of a strategy's repeats
    finished: bool = False
    reason: str = ""  # why a run ended before `total` results, e.g. the space is used up
    note: str = ""  # what the run is doing besides evaluating, e.g. training the teacher
    evaluated: int = 0
    failed: int = 0
    feasible: int = 0
    recent: deque[StoredResult] = field(default_factory=lambda: deque(maxlen=RECENT_RESULTS))
    failures: deque[StoredResult] = field(default_factory=lambda: deque(maxlen=RECENT_RESULTS))
    _skipped_by: Counter[str] = field(default_factory=Counter)
    _trained: int = 0  # results with training time, and their training seconds in all
    _trained_s: float = 0.0
    _best_feasible: dict[str, float] = field(default_factory=dict)
    _best_ok: dict[str, float] = field(default_factory=dict)

    def add(self, item: StoredResult | StoredOutcome) -> None:
        """Count one stored result in (a constant amount of work)."""
        result = item.result
        self.evaluated += 1
        self.recent.append(item)
        if result.status == "failed":
            self.failed += 1
            self.failures.append(item)
        elif result.status == "infeasible":
            self._skipped_by[result.measured.get("over_budget_stage", "")] += 1
        if "train_s" in result.timings_s:
            self._trained_s += result.timings_s["train_s"] + result.timings_s.get("compress_s", 0.0)
            self._trained += 1
        feasible = self.goals.feasible(result)
        self.feasible += feasible
        for best, counts in ((self._best_feasible, feasible), (self._best_ok, result.ok)):
            if not counts:
                continue
            for objective in self.goals.objectives:
                value = result.metrics.get(objective.metric)
                if value is None:
                    continue
                old = best.get(objective.metric)
                better = old is None or (value > old if objective.direction == "max" else value < old)
                if better:
                    best[objective.metric] = value

    @property
    def skipped(self) -> int:
        """Candidates known to break a budget before training, and so never trained."""
        return sum(self._skipped_by.values())

    def skipped_by(self, stage: str) -> int:
        """Never-trained candidates caught by `predicted` (cheap) or `measured` costs."""
        return self._skipped_by[stage]

    def training_saved_s(self) -> float | None:
        """Training time the never-trained candidates would have cost, at the trained ones' mean."""
        return self.skipped * self._trained_s / self._trained if self._trained else None

    @property
    def elapsed_s(self) -> float:
        return time.time() - self.started_s

    @property
    def eta_s(self) -> float | None:
        done_now = self.evaluated - self.done_at_start
        if done_now <= 0:
            return None
        return self.elapsed_s / done_now * (self.total - self.evaluated)

    def best(self) -> dict[str, float]:
        """Best value per objective among feasible results (all ok results when none is feasible)."""
        return dict(self._best_feasible if self.feasible else self._best_ok)


Listener = Callable[[RunState], None]


_WORKER_EVALUATORS: dict[str, Evaluator] = {}  # in a Ray worker: the current run's evaluator, by object id


def _evaluate(evaluator_box: list[Any], candidate_text: str) -> tuple[dict[str, Any], bytes | None]:
    """Evaluate the candidate written as `candidate_text` (its canonical JSON); returns the
    result's JSON without the candidate, which the controller holds, and the weights.

    `evaluator_box` holds the ObjectRef of the run's evaluator. Boxed, Ray passes the ref itself
    rather than a fresh copy per task, so each worker deserialises the evaluator once per run."""
    import json

    import ray

    ref = evaluator_box[0]
    evaluator = _WORKER_EVALUATORS.get(ref.hex())
    if evaluator is None:
        _WORKER_EVALUATORS.clear()  # one run at a time keeps the worker's memory flat
        evaluator = _WORKER_EVALUATORS[ref.hex()] = ray.get(ref)
    evaluation = evaluator.evaluate(Candidate.from_json(json.loads(candidate_text)))
    result = evaluation.result.to_json()
    del result["candidate"]
    return result, evaluation.weights


def _run_work(evaluator_box: list, function: str, args: dict[str, Any]) -> Any:
    """A strategy's `Work` in a worker: `function(evaluator, **args)`."""
    import importlib

    import ray

    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)(ray.get(evaluator_box[0]), **args)


def _prepare_teacher(job_json: dict[str, Any]) -> tuple[dict[str, Any], bytes, bytes]:
    from cosearch.evaluators.teacher import prepare_teacher

    job = spec_from_dict(job_json)
    teacher = build.teacher_spec(job)
    return _as_stored(
        prepare_teacher(
            teacher.model, teacher.checkpoint, teacher.epochs, build.data_settings(job), build.training_settings(job)
        )
    )


def _train_supernet(job_json: dict[str, Any], checkpoint: bytes | None) -> tuple[bytes, dict[str, Any]]:
    """One epoch of the run's supernet training, from `checkpoint` (None: from the start)."""
    job = spec_from_dict(job_json)
    return build.make_evaluator(job).train_supernet(build.make_joint_space(job), checkpoint)


def _as_stored(teacher: dict[str, Any]) -> tuple[dict[str, Any], bytes, bytes]:
    """A prepared teacher as the run store keeps it: description, logits (.npy bytes), state."""
    import io

    info = dict(teacher)
    buffer = io.BytesIO()
    np.save(buffer, info.pop("train_logits"))
    return info, buffer.getvalue(), info.pop("state")


def _measure_on_node(device: Any, onnx_bytes: bytes, input_shape: Any) -> dict[str, Any]:
    import ray

    from cosearch.hardware.costs import measure_here

    out = measure_here(device, onnx_bytes, input_shape)
    out["node_id"] = ray.get_runtime_context().get_node_id()
    return out


@dataclass(frozen=True)
class RoutedMeasure:
    """Measures a device's latency on a node that declares the device's Ray resource.

    Called inside an evaluation task; the nested task needs no CPU, only the device (one unit
    per node, so one measurement at a time on it), and Ray frees the caller's CPU while it waits.
    """

    def __call__(self, device: Any, onnx_bytes: bytes, input_shape: Any) -> dict[str, Any]:
        import ray

        task = ray.remote(_measure_on_node).options(num_cpus=0, resources={device.resource: 1}, max_retries=2)
        return ray.get(task.remote(device, onnx_bytes, input_shape))


def routed_devices(job: JobSpec) -> list[Any]:
    """The measured devices of `job` that live on particular nodes (a Ray resource names them)."""
    evaluated = build.evaluated_devices(job) if "devices" in build.evaluator_needs(job) else []
    return [d for d in evaluated if d.measured and d.resource]


def _cluster(address: str | None) -> str:
    return f"the Ray cluster at {address}" if address else "local Ray (no --address given)"


def check_device_resources(job: JobSpec, address: str | None) -> None:
    """Every routed device has a node: fail now with a clear message, not hang later."""
    import ray

    have = ray.cluster_resources()
    for device in routed_devices(job):
        if have.get(device.resource, 0) < 1:
            raise CosearchError(
                f"device {device.name!r} is measured on nodes with the Ray resource {device.resource!r}, but no node of "
                f"{_cluster(address)} declares it; start one with: ray start --address HEAD --resources '{{\"{device.resource}\": 1}}'"
            )


def check_gpus(job: JobSpec, address: str | None) -> None:
    """A job that asks for GPUs runs on a cluster that has them: fail now, not queue forever."""
    import ray

    wanted = job.resources.gpus_per_trial
    if wanted <= 0:
        return
    have = ray.cluster_resources().get("GPU", 0.0)
    if have < wanted:
        raise CosearchError(
            f"resources.gpus_per_trial is {wanted:g}, but {_cluster(address)} has {have:g} GPUs; run on GPU nodes "
            "(`ray start ... --num-gpus N`), or set gpus_per_trial: 0 to train on CPUs"
        )


def connect_ray(address: str | None, concurrency: int) -> bool:
    """Start local Ray (no address) or join a cluster; returns True when this call started it."""
    import ray

    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address and address not in ("auto", "local", _JOINED.get("address")) and not _same_head(address, current):
            _check_reachable(address)  # another cluster than the one joined: it was silently ignored
            raise CosearchError(
                f"--address {address}: this process is already connected to the Ray cluster at {current}; "
                "call ray.shutdown() first, or give that cluster's address"
            )
        return False
    import signal
    import threading

    quiet = {"logging_level": logging.WARNING, "log_to_driver": False, "configure_logging": False}
    # ray.init makes SIGTERM a bare sys.exit; the caller's handler (the CLI stops cleanly) stays.
    on_sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if address:
        import cosearch

        _check_reachable(address)
        # Ship this cosearch to the cluster's workers; its dependencies must be installed there.
        runtime_env = {"py_modules": [str(Path(cosearch.__file__).parent)]}
        try:
            ray.init(address=address, runtime_env=runtime_env, **quiet)
        except ConnectionError as error:  # something listens there, but not a Ray head
            raise CosearchError(
                f"--address {address}: no Ray cluster answers there ({str(error)[:200]}); check the address and port"
            ) from None
        _JOINED["address"] = address
    else:
        ray.init(num_cpus=concurrency, include_dashboard=False, **quiet)
        _JOINED["address"] = None
    if on_sigterm is not None:
        signal.signal(signal.SIGTERM, on_sigterm)
    return True


_JOINED: dict[str, str | None] = {"address": None}  # the --address this process's Ray was started with


def _same_head(address: str, current: str) -> bool:
    """Whether HOST:PORT `address` names the head at `current` (Ray reports it by the node's IP)."""
    import socket

    (host, _, port), (current_host, _, current_port) = address.rpartition(":"), current.rpartition(":")
    if port != current_port:
        return False
    try:
        ip, current_ip = socket.gethostbyname(host), socket.gethostbyname(current_host)
        here = {"127.0.0.1", *socket.gethostbyname_ex(socket.gethostname())[2]}
    except OSError:
        return host == current_host
    return ip == current_ip or (ip.startswith("127.") and current_ip in here)


CONNECT_TIMEOUT_S = 10.0  # a head that does not answer a TCP connect in this long is not there


def _check_reachable(address: str) -> None:
    """Fail fast on an address where no Ray head listens (ray.init would retry for minutes)."""
    import socket

    if address in ("auto", "local"):
        return
    if address.startswith("ray://"):
        raise CosearchError(
            f"--address {address}: Ray Client (ray://) addresses are not supported (Ray Client needs ray[client], which "
            "cosearch does not install); give the head's address HOST:6379 from a machine of the cluster, or submit "
            "the search with `ray job submit --working-dir . -- cosearch run JOB`"
        )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise CosearchError(
            f"--address {address!r}: HOST:PORT of a Ray head node (its GCS port, 6379 unless set), or auto"
        )
    try:
        connection = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S)
    except OSError as error:
        raise CosearchError(
            f"--address {address}: no Ray head answers there ({error.strerror or error}, after at most {CONNECT_TIMEOUT_S:.0f} s); "
            "start one with `ray start --head --port PORT` or check the address"
        ) from None
    with connection:
        if not os.environ.get("RAY_USE_TLS") and not _answers_http2(connection):  # ray.init would wait minutes
            raise CosearchError(
                f"--address {address}: something listens there but it is not a Ray head (no gRPC answer within "
                f"{HANDSHAKE_TIMEOUT_S:.0f} s); give the head's GCS port (6379 unless set) or check the address"
            )


HANDSHAKE_TIMEOUT_S = 5.0
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # preface + empty SETTINGS


def _answers_http2(connection: Any) -> bool:
    """Whether the server greets an HTTP/2 client with its SETTINGS frame, as every gRPC server
    (Ray's GCS among them) does; a listener that is silent or speaks something else does not."""

    try:
        connection.settimeout(HANDSHAKE_TIMEOUT_S)
        connection.sendall(_HTTP2_PREFACE)
        header = b""
        while len(header) < 9:
            chunk = connection.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    except (TimeoutError, OSError):
        return False
    return header[3] == 4  # frame type SETTINGS


class Controller:
    """Runs one search in RUN_DIR. Use `start` for a new run and `resume` for a stopped one."""

    def __init__(
        self,
        job: JobSpec,
        store: RunStore,
        address: str | None = None,
        listener: Listener | None = None,
        lock: RunLock | None = None,
    ):
        self.job = job
        self.lock = lock or RunLock(store.run_dir)
        self.lock.acquire()  # one live driver per run directory
        self.store = store
        self.address = address if address is not None else job.resources.address
        self.listener = listener or (lambda state: None)
        self.goals = job.goals()
        self.strategy = build.make_strategy(job)
        self.evaluator = build.make_evaluator(job)
        self.prepared: dict[str, Any] = {}  # what the run made for the evaluator: teacher logits, supernet
        self.told_id = 0
        self.pending: dict[str, Candidate] = {}  # key -> candidate, asked and not yet stored
        self.known = _StoredAnswers(store)  # key -> stored result, to answer repeated asks
        self.state = RunState(self.goals, job.resources.trials)
        self._checkpointed_s = 0.0
        self._dirty = False
        self._owns_ray = False
        self._rng = np.random.default_rng([job.resources.seed, 0x5EED])  # random proposals
        self._exhausted_count: int | None = None  # distinct candidates of the space, once counted
        self.warm: Any = None  # the warm start this run began with (controller.warm.WarmStart)

    @classmethod
    def start(
        cls,
        job: JobSpec,
        run_dir: str | Path,
        address: str | None = None,
        teacher: Any = None,
        warm_start: str | Path | None = None,
        **kwargs: Any,
    ) -> Controller:
        """A new run in `run_dir`. `teacher`: a trained torch module to distil from, instead of the
        job's `compression.teacher`; its logits are stored in the run, so resuming needs it no more.
        `warm_start`: an earlier run of the same space whose results the strategy is told first,
        those evaluated the same way stored here instead of evaluated again (`controller.warm`)."""
        from cosearch.controller import warm

        run_dir = Path(run_dir)
        build.check(job)  # files and components, before anything is written
        if (run_dir / DB_NAME).exists() and not half_created(run_dir):
            raise CosearchError(f"{run_dir} already holds a run; continue it with `cosearch resume {run_dir}`")
        plan = warm.plan(job, warm_start, run_dir) if warm_start is not None else None
        require_teacher(job, module_given=teacher is not None)
        if teacher is not None and not job.compression.distills:
            raise CosearchError(f"a teacher module was given but the job searches no {' or '.join(teacher_rules())}")
        teacher_outputs = (
            cls._module_teacher(job, teacher) if teacher is not None else None
        )  # a bad module fails before anything is written
        owns_ray = cls._connect(job, address)  # a missing device fails here, before anything is written
        created = not run_dir.exists()
        lock = RunLock(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()  # before the check below, so two starts cannot both pass it
            if (run_dir / DB_NAME).exists():
                if not half_created(run_dir):
                    raise CosearchError(f"{run_dir} already holds a run; continue it with `cosearch resume {run_dir}`")
                log.warning("%s held a run that never started (no job recorded); replacing it", run_dir)
                for side in ("", "-wal", "-shm"):
                    (run_dir / f"{DB_NAME}{side}").unlink(missing_ok=True)
            store = RunStore(run_dir, create=True)
            store.save_job(job.to_json())
            if teacher_outputs is not None:
                store.save_teacher(*teacher_outputs)
            if plan is not None:
                for result, weights in plan.reuse:
                    store.add(result, weights)
                store.save_warm_start(plan.summary())
            controller = cls(job, store, address=address, lock=lock, **kwargs)
            if plan is not None:
                controller._restore()  # the reused results: told and counted as a resumed run's are
                for result in plan.tell:
                    controller.strategy.tell(result.candidate, result)
                controller._checkpoint(force=True)
                controller.warm = plan
        except BaseException:
            lock.release()
            if created and run_dir.is_dir() and not (run_dir / DB_NAME).exists():
                (run_dir / "driver.lock").unlink(missing_ok=True)
                if not any(run_dir.iterdir()):
                    run_dir.rmdir()
            if owns_ray:
                import ray

                ray.shutdown()
            raise
        controller._owns_ray = owns_ray
        return controller

    @staticmethod
    def _module_teacher(job: JobSpec, module: Any) -> tuple[dict[str, Any], bytes, bytes]:
        from cosearch.evaluators.teacher import teacher_outputs

        start = time.perf_counter()
        out = teacher_outputs(module, build.data_settings(job).load(), build.training_settings(job))
        return _as_stored(
            {
                "model": f"{type(module).__name__} (module)",
                "how": "a trained module given to Controller.start",
                **out,
                "seconds": time.perf_counter() - start,
            }
        )

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        address: str | None = None,
        reset_strategy: bool = False,
        trials: int | None = None,
        **kwargs: Any,
    ) -> Controller:
        """Continue the run in `run_dir`. `reset_strategy`: ignore the stored strategy checkpoint (one
        that cannot be loaded) and tell a fresh strategy every stored result instead. `trials`: a
        new number of results to reach (a finished run goes on, its strategy where it stopped)."""
        if (Path(run_dir) / DB_NAME).is_file() and not half_created(run_dir):
            lock = RunLock(run_dir)
            lock.acquire()  # before anything is read for writing
        else:
            lock = None  # RunStore says what the directory is
        owns_ray = False
        try:
            store = RunStore(run_dir, write=True)
            job = spec_from_dict(store.job(), str(run_dir))
            build.check(job, teacher_prepared=store.has_teacher())  # its files may have moved
            if trials is not None and trials != job.resources.trials:
                job = _with_trials(job, trials, sum(not is_final(r.result) for r in store.outcomes()), run_dir)
                store.save_job(job.to_json())
            owns_ray = cls._connect(job, address)
            controller = cls(job, store, address=address, lock=lock, **kwargs)
            controller._owns_ray = owns_ray
            controller._restore(reset_strategy)
        except BaseException:
            if lock is not None:
                lock.release()
            if owns_ray:
                import ray

                ray.shutdown()
            raise
        return controller

    @staticmethod
    def _connect(job: JobSpec, address: str | None) -> bool:
        """Connect to Ray and check that every routed device has a node; True when Ray was started here."""
        import ray

        # Inside `ray job submit` (or wherever RAY_ADDRESS is set) Ray says which cluster to join.
        address = next((a for a in (address, job.resources.address, os.environ.get("RAY_ADDRESS")) if a), None)
        owns_ray = connect_ray(address, job.resources.concurrency)
        try:
            check_device_resources(job, address)
            check_gpus(job, address)
        except BaseException:
            if owns_ray:
                ray.shutdown()
            raise
        return owns_ray

    def _route(self, evaluator: Evaluator) -> Evaluator:
        """Send each routed device's measurements to the nodes that have it."""
        for device in routed_devices(self.job):
            evaluator.route(device.name, RoutedMeasure())
        return evaluator

    def _restore(self, reset_strategy: bool = False) -> None:
        checkpoint = None if reset_strategy else self.store.checkpoint()
        if checkpoint is not None:
            try:
                self.strategy.load_state_dict(checkpoint.strategy)
                pending = {c.key: c for c in map(Candidate.from_json, checkpoint.pending)}
            except (KeyError, TypeError, ValueError, AttributeError, IndexError, CosearchError) as error:
                raise CheckpointError(
                    f"{self.store.run_dir}: the stored checkpoint of strategy {self.job.strategy.name!r} cannot be loaded "
                    f"({type(error).__name__}: {str(error)[:200]}); {reset_hint(self.store.run_dir)}"
                ) from None
            self.told_id = checkpoint.told_id
            self.pending = pending
        for item in self.store.iter_results():
            if is_final(item.result):  # a pick's final training: not one of the search's trials
                continue
            key = item.result.candidate.key
            self.known[key] = item.result
            self.state.add(item)
            self.pending.pop(key, None)
            if item.id > self.told_id:  # stored but the strategy never heard of it
                self.strategy.tell(item.result.candidate, item.result)
                self.told_id = item.id
        self.state.done_at_start = stored = self.state.evaluated
        log.info("resumed: %d results stored, %d candidates to re-submit", stored, len(self.pending))

    def _checkpoint(self, force: bool = False) -> None:
        self._dirty = True
        if not force and time.monotonic() - self._checkpointed_s < CHECKPOINT_INTERVAL_S:
            return
        pending = [c.to_json() for c in self.pending.values()]
        self.store.save_checkpoint(Checkpoint(self.strategy.state_dict(), self.told_id, pending))
        self._checkpointed_s = time.monotonic()
        self._dirty = False

    def _next_candidate(self, in_flight: set[str]) -> Candidate | None:
        """A new candidate: the strategy's, or a random one when it only repeats itself; None only
        when every distinct candidate of the space is stored or running.

        A repeat of a stored candidate is answered from the store (told again, never evaluated)."""
        dedup = Deduplicated(self.strategy, self.known)
        candidate = dedup.ask((in_flight, self.pending), MAX_REPEATED_ASKS)
        self.state.duplicates += dedup.repeats
        if candidate is not None:
            return candidate
        candidate = self._random_candidate(in_flight)
        if candidate is not None:
            self.state.random_proposals += 1
            log.info(
                "the strategy repeated known candidates %d times in a row; evaluating a random one", MAX_REPEATED_ASKS
            )
        return candidate

    def _is_new(self, key: str, in_flight: set[str]) -> bool:
        return key not in self.known and key not in in_flight and key not in self.pending

    def _random_candidate(self, in_flight: set[str]) -> Candidate | None:
        """A random candidate not stored or running; None when the space has no other."""
        space = self.strategy.space
        for _ in range(MAX_RANDOM_DRAWS):
            candidate = space.decode(space.sample(self._rng))
            if self._is_new(candidate.key, in_flight):
                return candidate
        # Rarely reached: a space whose distinct candidates are nearly all known. Count them when
        # it is small enough; otherwise the run stops (not finishes) and says so.
        choices = space.choices()
        if math.prod(len(c.options) for c in choices) > ENUMERATE_LIMIT:
            return None
        names = [c.name for c in choices]
        distinct = {}
        for values in itertools.product(*(c.options for c in choices)):
            candidate = space.decode(dict(zip(names, values)))
            distinct.setdefault(candidate.key, candidate)
        self._exhausted_count = len(distinct)
        fresh = [c for key, c in distinct.items() if self._is_new(key, in_flight)]
        return fresh[int(self._rng.integers(len(fresh)))] if fresh else None

    def run(self) -> RunState:
        """Evaluate until the job's number of trials is stored. Ctrl-C stops cleanly (resumable)."""
        import ray

        self.lock.acquire()  # held since start / resume; taken again for a second run()
        started_ray = self._connect(self.job, self.address) or self._owns_ray
        in_flight: dict[Any, Candidate] = {}
        stopping: BaseException | None = None
        try:
            if self.job.compression.distills:
                self._ensure_teacher()
            if "supernet" in build.evaluator_needs(self.job):
                self._ensure_supernet()
            remote = ray.remote(**self._task_resources(), max_retries=2)(_evaluate)
            evaluator_ref = ray.put(self._route(self.evaluator))
            self._strategy_work(evaluator_ref)
            resubmit = list(self.pending.values())
            exhausted = False
            self.store.set_status("running")
            while True:
                stored = self.state.evaluated
                while (
                    len(in_flight) < self.job.resources.concurrency
                    and stored + len(in_flight) < self.job.resources.trials
                    and not (exhausted and not resubmit)
                ):
                    candidate = (
                        resubmit.pop(0) if resubmit else self._next_candidate({c.key for c in in_flight.values()})
                    )
                    if candidate is None:
                        exhausted = True
                        break
                    self.pending[candidate.key] = candidate
                    self._checkpoint()
                    in_flight[remote.remote([evaluator_ref], candidate.json_text)] = candidate
                self.state.running = len(in_flight)
                self.listener(self.state)
                if not in_flight:
                    break
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_TIMEOUT_S)
                for ref in ready:
                    self._complete(in_flight.pop(ref), ref)
            if self.job.finalize is not None and self._searched(exhausted):
                self._finalize(remote)
            self._finish(exhausted)
        except BaseException as error:
            # In-flight tasks are left alone, not ray.cancel'led: in Ray 2.60 a cancel that races the task's
            # reply aborts the driver ("Tried to complete task that was not pending", task_manager.cc), as it
            # did in CI. A driver that exits (the CLI) takes them with it: Ray kills an ended job's workers.
            stopping = error
            if not isinstance(error, RunFailed):  # a failed run says so, and why
                self._quietly(stopping, self.store.set_status, "stopped")  # never hide the error that stopped the run
            raise
        finally:
            if self._dirty:
                self._quietly(stopping, self._checkpoint, True)
            self.state.running = 0
            if started_ray:
                ray.shutdown()
                self._owns_ray = False
            self.lock.release()
        return self.state

    @staticmethod
    def _quietly(stopping: BaseException | None, write: Callable[..., Any], *args: Any) -> None:
        """`write`, warning if it fails (a full disk: the run resumes from what is committed), unless
        it fails as the error that is stopping the run did: that one is reported once, by the caller."""
        try:
            write(*args)
        except CosearchError as error:
            if str(error) != str(stopping):
                log.warning("%s", error)

    def _searched(self, exhausted: bool) -> bool:
        """Whether the search is done: `trials` results, or a space whose every distinct candidate is stored."""
        return self.state.evaluated >= self.job.resources.trials or (exhausted and self._exhausted_count is not None)

    def _finish(self, exhausted: bool) -> None:
        """Finished means the search is done (`_searched`)."""
        trials = self.job.resources.trials
        if self.state.evaluated >= trials:
            self.state.finished, self.state.reason = True, ""
        elif self._searched(exhausted):
            self.state.finished = True
            self.state.reason = (
                f"the search space has only {self._exhausted_count} distinct candidates and all of them are stored "
                f"({self.state.evaluated} of the {trials} trials asked for)"
            )
        else:
            self.state.finished = False
            self.state.reason = (
                f"neither the strategy nor {MAX_RANDOM_DRAWS} random draws found a candidate not yet stored, in a space too "
                f"large to count; {self.state.evaluated} of {trials} stored (resume to try again)"
            )
        self.store.set_status("finished" if self.state.finished else "stopped", self.state.reason)

    def close(self) -> None:
        """Let go of the run directory (the driver lock and the database)."""
        self.lock.release()
        self.store.close()

    def _ensure_teacher(self) -> None:
        """Train (or load) the teacher once per run, on a worker; durable before any evaluation uses it."""
        import io

        import ray

        stored = self.store.teacher()
        teacher = build.teacher_spec(self.job)
        if stored is None and teacher is None:  # a module teacher is stored at start
            raise CosearchError("this run distils but has no teacher: name one in compression.teacher")
        if stored is None:
            self.state.note = f"preparing teacher {teacher.model}"
            self.listener(self.state)
            task = ray.remote(**self._task_resources())(_prepare_teacher)
            info, logits, state = ray.get(task.remote(self.job.to_json()))
            self.store.save_teacher(info, logits, state)
            stored = (info, logits)
            self.state.note = ""
        info, logits = stored
        log.info("teacher %s: %s, val accuracy %.4f", info["model"], info["how"], info["val_accuracy"])
        from cosearch.evaluators.data import TeacherLogits

        self.prepared["teacher_logits"] = TeacherLogits(np.load(io.BytesIO(logits)), info.get("train_views"))
        self.evaluator = build.make_evaluator(self.job, **self.prepared)

    def _strategy_work(self, evaluator_ref: Any) -> None:
        """Run the work the strategy needs before it proposes (a one-shot search), a Ray task per
        piece; each output is stored before the strategy is handed it, and a resumed run hands
        stored outputs back instead of running them again."""
        import ray

        task = ray.remote(**self._task_resources())(_run_work)
        while work := self.strategy.work():
            todo = []
            for item in work:
                stored = self.store.work(item.key)
                if stored is None:
                    todo.append(item)
                else:
                    self.strategy.worked(item.key, stored)
            if not todo:
                continue
            in_flight = {task.remote([evaluator_ref], item.function, item.args): item for item in todo}
            with self._noted():
                while in_flight:
                    self.state.note = (
                        f"strategy {self.job.strategy.name}: {len(in_flight)} of {len(work)} searches running"
                    )
                    self.listener(self.state)
                    ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_TIMEOUT_S)
                    for ref in ready:
                        item = in_flight.pop(ref)
                        try:
                            output = ray.get(ref)
                        except ray.exceptions.RayTaskError as error:
                            raise RunFailed(
                                f"strategy {self.job.strategy.name}: {item.description or item.key} failed: "
                                f"{str(error.cause)[:500]}"
                            ) from None
                        self.store.save_work(item.key, output)
                        self.strategy.worked(item.key, output)
                        self._checkpoint(force=True)

    @contextmanager
    def _noted(self) -> Iterator[None]:
        """A block that writes the display's note, cleared however it ends (Ray tasks it started are
        left to finish if it stops early, as `run` leaves its own)."""
        try:
            yield
        finally:
            self.state.note = ""

    def _finalize(self, remote: Any) -> None:
        """Train the search's best `top_k` results by Pareto rank standalone (job.finalize), each
        stored as a final result beside the search's own; a resumed run trains only those not stored."""
        import ray

        from cosearch.report.pareto import ranked_ids, searched

        finalize = self.job.finalize
        picks = [self.store.get(i) for i in ranked_ids(searched(self.store.outcomes()), self.goals, finalize.top_k)]
        todo = [p for p in picks if self.store.by_key(FINAL_PREFIX + p.result.candidate.key) is None]
        if not todo:
            return
        evaluator_ref = ray.put(self._route(self.evaluator.final_evaluator(finalize)))
        in_flight: dict[Any, StoredResult] = {}
        with self._noted():
            while todo or in_flight:
                while todo and len(in_flight) < self.job.resources.concurrency:
                    pick = todo.pop(0)
                    in_flight[remote.remote([evaluator_ref], pick.result.candidate.json_text)] = pick
                done = len(picks) - len(todo) - len(in_flight)
                self.state.note = f"training the search's {len(picks)} picks standalone ({done} done)"
                self.listener(self.state)
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_TIMEOUT_S)
                for ref in ready:
                    pick = in_flight.pop(ref)
                    evaluation = self._collect(pick.result.candidate, ref)
                    final = {
                        "of": pick.id,
                        "searched_accuracy": pick.result.metrics.get("accuracy"),
                        "from": finalize.start,
                        "epochs": finalize.final_epochs,
                    }
                    result = evaluation.result
                    self.store.add(replace(result, measured={**result.measured, "final": final}), evaluation.weights)

    def _ensure_supernet(self) -> None:
        """Train the run's supernet an epoch per worker task, storing a checkpoint after each, so
        a resumed run continues from the last epoch stored and never trains a stored one again."""
        import ray

        stored = self.store.supernet()
        info, checkpoint = stored if stored is not None else ({"epochs_done": 0}, None)
        epochs = self.evaluator.epochs
        task = ray.remote(**self._task_resources())(_train_supernet)
        while info["epochs_done"] < epochs:
            done = info["epochs_done"]
            shown = ""
            if done:  # what the last epoch says, and when the rest will be done at the pace so far
                eta = format_duration(info["train_s"] / done * (epochs - done))
                shown = f", loss {info['losses'][-1]:.3f}, ETA {eta}"
            self.state.note = f"training the supernet: epoch {done + 1} of {epochs}{shown}"
            self.listener(self.state)
            try:
                checkpoint, info = ray.get(task.remote(self.job.to_json(), checkpoint))
            except ray.exceptions.RayTaskError as error:
                cause = error.cause if isinstance(error.cause, Exception) else error
                message = f"supernet training failed: {type(cause).__name__}: {cause}"
                self.store.set_status("failed", message)
                raise RunFailed(message) from None
            self.store.save_supernet(info, checkpoint)
        self.state.note = ""
        log.info("supernet: %d epochs, %.0f s", info["epochs_done"], info.get("train_s", 0.0))
        self.prepared["supernet"] = checkpoint
        self.evaluator = build.make_evaluator(self.job, **self.prepared)

    def _task_resources(self) -> dict[str, float]:
        """What Ray reserves for one evaluation: a CPU, and the job's share of a GPU if it asks."""
        gpus = self.job.resources.gpus_per_trial
        return {"num_cpus": 1, **({"num_gpus": gpus} if gpus else {})}

    @staticmethod
    def _collect(candidate: Candidate, ref: Any) -> Evaluation:
        """What the evaluation task `ref` of `candidate` returned, or why it returned nothing."""
        import ray

        try:
            result_json, weights = ray.get(ref)
            return Evaluation(Result.from_json(result_json, candidate), weights)
        except ray.exceptions.RayError as error:  # the worker died even after retries
            return Evaluation(Result.failed(candidate, f"{type(error).__name__}: {error}"))

    def _complete(self, candidate: Candidate, ref: Any) -> None:
        evaluation = self._collect(candidate, ref)
        result_id = self.store.add(evaluation.result, evaluation.weights)  # 1. durable
        self.known[candidate.key] = evaluation.result
        self.pending.pop(candidate.key, None)
        self.strategy.tell(candidate, evaluation.result)  # 2. told
        self.told_id = result_id
        self._checkpoint()  # 3. checkpointed
        self.state.add(StoredResult(result_id, evaluation.result, time.time()))
        if evaluation.result.status == "failed":
            log.info("candidate %s failed: %s", candidate.key, evaluation.result.error)


class _StoredAnswers(MutableMapping[str, Result]):
    """Stored results by key, holding only the keys in memory: the rare repeated proposal is
    answered by one indexed query, so the driver's memory does not grow with every result."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.keys: set[str] = set()

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __getitem__(self, key: str) -> Result:
        stored = self.store.by_key(key) if key in self.keys else None
        if stored is None:
            raise KeyError(key)
        return stored.result

    def __setitem__(self, key: str, result: Result) -> None:
        self.keys.add(key)  # the store holds the result itself

    def __delitem__(self, key: str) -> None:
        self.keys.discard(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    seconds = round(seconds)
    return (
        f"{seconds // 60:d}:{seconds % 60:02d}"
        if seconds < 3600
        else f"{seconds // 3600:d}h{seconds % 3600 // 60:02d}m"
    )
