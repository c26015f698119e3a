"""Strategies on a real benchmark table: hypervolume, regret and best accuracy, plus controller overhead.

    python scripts/bench_strategies.py --table ../shared/data/nb201/nb201_acc_latency.csv.gz --device lat_pixel3

For every strategy and seed, three searches run through the same ask/tell loop the controller
uses (duplicates answered from what was already evaluated, not counted):
  A. accuracy (max) and latency on DEVICE (min): hypervolume as a share of the true front's,
     both against the reference point (10th-percentile accuracy, 90th-percentile latency) of
     the whole table;
  B. accuracy under the budget latency <= the table's median latency: regret = best feasible
     accuracy in the table minus best feasible accuracy found;
  C. accuracy alone: the best found.
Each is read at 50, 150 and 300 evaluations. The true front is taken over the architectures a
search can reach: cosearch treats cells that compute the same function as one candidate, and
answers each with its canonical form's row. The front over all 15,625 rows is reported beside it.
Then the real controller runs the table evaluator on local Ray at concurrency 2, beside Ray
Tune running the same evaluator with a custom Searcher (reuse_actors=True), for per-evaluation
overhead (the median of `--overhead-repeats` searches each). Seeds run side by side in `--workers` processes. Writes OUT/strategies.json and OUT/strategies.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread per worker process
import itertools
import json
import logging
import platform
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

from cosearch import build
from cosearch.core import Constraint, Goals, Objective, hypervolume
from cosearch.evaluators.table import TableEvaluator, read_table
from cosearch.search_spaces import JointSpace
from cosearch.search_spaces.nb201 import EDGES, OPS, NB201Space, format_arch_str
from cosearch.strategies import STRATEGIES, Deduplicated

BUDGETS = (50, 150, 300)
STRATEGY_PARAMS = {
    "random": {},
    "optuna:nsga2": {"population_size": 20},
    "optuna:tpe": {},
    "regularized_evolution": {"population_size": 20, "sample_size": 5},
    "nsga2": {"population_size": 20},
    "reinforce": {},
    "gp": {},
}
MAX_DUPLICATES = 500


def search(name: str, space: JointSpace, goals: Goals, evaluator: TableEvaluator, seed: int, steps: int):
    """Ask/tell until `steps` distinct candidates are evaluated; returns their results in order."""
    strategy = Deduplicated(STRATEGIES.create(name, space, goals, seed=seed, **STRATEGY_PARAMS[name]))
    results = []
    while len(results) < steps:
        candidate = strategy.ask(max_repeats=MAX_DUPLICATES - strategy.repeats)
        if candidate is None:
            break
        result = evaluator.evaluate(candidate).result
        strategy.tell(candidate, result)
        results.append(result)
    return results


_SHARED: dict = {}  # set by main before the worker processes fork


def run_seed(name: str, seed: int) -> tuple[dict[str, list[tuple[bool, float, float]]], float]:
    """The three searches of one strategy and seed: (ok, accuracy, latency) per evaluation, and CPU seconds."""
    start = time.process_time()
    runs = {}
    for key, goals in _SHARED["scenarios"].items():
        results = search(name, _SHARED["space"], goals, _SHARED["evaluator"], seed, max(BUDGETS))
        runs[key] = [
            (r.ok, r.metrics.get("accuracy", 0.0), r.metrics.get(_SHARED["latency_metric"], 0.0)) for r in results
        ]
    return runs, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--device", default="lat_pixel3", help="latency column of the table")
    parser.add_argument("--accuracy", default="c10_test_200ep", help="accuracy column of the table")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGY_PARAMS))
    parser.add_argument("--workers", type=int, default=2, help="processes running seeds side by side")
    parser.add_argument("--overhead-trials", type=int, default=300)
    parser.add_argument(
        "--overhead-repeats", type=int, default=5, help="searches timed per framework; the median is reported"
    )
    parser.add_argument("--out", default="benchmarks")
    args = parser.parse_args()
    args.table = str(Path(args.table).resolve())  # Ray Tune runs trials in their own folders
    logging.basicConfig(level=logging.WARNING)

    device = args.device.removeprefix("lat_")
    latency_metric = f"latency_ms@{device}"
    base = NB201Space(channels=16, cells_per_stage=5)
    space = JointSpace(base, weight_bits=(32,), sparsity=(0.0,))
    evaluator = TableEvaluator(base, args.table, {"accuracy": args.accuracy, latency_metric: args.device})

    _, columns = read_table(args.table)
    all_acc = np.asarray(columns[args.accuracy], dtype=float)
    all_lat = np.asarray(columns[args.device], dtype=float)
    reference = np.array([-np.percentile(all_acc, 10), np.percentile(all_lat, 90)])
    latency_budget = float(np.median(all_lat))
    rows_by_arch = {a: i for i, a in enumerate(columns["arch_str"])}
    reachable = sorted(
        {
            space.canonical({"cell": format_arch_str(dict(zip(EDGES, ops)))}, {}).arch["cell"]
            for ops in itertools.product(OPS, repeat=6)
        }
    )
    reach_idx = np.array([rows_by_arch[a] for a in reachable])
    reach_points = np.stack([-all_acc[reach_idx], all_lat[reach_idx]], axis=1)
    true_hv = hypervolume(reach_points, reference)
    all_hv = hypervolume(np.stack([-all_acc, all_lat], axis=1), reference)
    under = all_lat[reach_idx] <= latency_budget
    best_under_budget = float(all_acc[reach_idx][under].max())
    best_overall = float(all_acc[reach_idx].max())

    scenarios = {
        "A": Goals((Objective.parse("accuracy"), Objective.parse(latency_metric))),
        "B": Goals((Objective.parse("accuracy"),), (Constraint(latency_metric, "<=", latency_budget),)),
        "C": Goals((Objective.parse("accuracy"),)),
    }
    table: dict[str, dict[str, list[float]]] = {}
    timing: dict[str, float] = {}
    _SHARED.update(space=space, scenarios=scenarios, evaluator=evaluator, latency_metric=latency_metric)
    jobs = [(name, seed) for name in args.strategies for seed in range(args.seeds)]
    # Seeds run in worker processes (forked: they share the loaded table); each reports its CPU time.
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        outcomes = dict(
            zip(jobs, pool.starmap(run_seed, jobs, chunksize=1))
        )  # gp seeds last and slowest: no big chunks
    for name in args.strategies:
        stats: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            runs, _ = outcomes[(name, seed)]
            for budget in BUDGETS:
                points = np.array([[-acc * 100, lat] for ok, acc, lat in runs["A"][:budget] if ok])
                stats.setdefault(f"hv_{budget}", []).append(
                    hypervolume(points, reference) / true_hv if len(points) else 0.0
                )
                b = [acc * 100 for ok, acc, lat in runs["B"][:budget] if ok and lat <= latency_budget]
                stats.setdefault(f"regret_{budget}", []).append(best_under_budget - (max(b) if b else 0.0))
                c = [acc * 100 for ok, acc, _ in runs["C"][:budget] if ok]
                stats.setdefault(f"best_{budget}", []).append(max(c) if c else 0.0)
        cpu_s = sum(outcomes[(name, seed)][1] for seed in range(args.seeds))
        timing[name] = cpu_s / (args.seeds * len(scenarios) * max(BUDGETS)) * 1e3
        table[name] = stats
        print(
            name, {k: round(float(np.mean(v)), 4) for k, v in stats.items()}, f"{timing[name]:.2f} ms/eval", flush=True
        )

    overhead = measure_overhead(args, latency_metric)
    report = {
        "command": f"python scripts/bench_strategies.py --table {args.table} --device {args.device} --seeds {args.seeds}",
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "python_speed_ms": python_speed_ms(),
        },
        "table": {"path": Path(args.table).name, "accuracy": args.accuracy, "latency": args.device},
        "reference_point": {"accuracy": float(-reference[0]), "latency_ms": float(reference[1])},
        "latency_budget_ms": latency_budget,
        "reachable_architectures": len(reachable),
        "true_front_hv_share_of_all_rows_front": true_hv / all_hv,
        "best_accuracy_under_budget": best_under_budget,
        "best_accuracy": best_overall,
        "strategies": {
            name: {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in stats.items()}
            | {"strategy_ms_per_eval": timing[name]}
            for name, stats in table.items()
        },
        "overhead": overhead,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "strategies.json").write_text(json.dumps(report, indent=2))
    write_markdown(out / "strategies.md", report)
    print((out / "strategies.md").read_text())


def measure_overhead(args, latency_metric: str) -> dict:
    """Per-evaluation wall time of whole searches whose evaluations cost nothing."""
    import ray

    from cosearch.controller import Controller
    from cosearch.controller.controller import connect_ray
    from cosearch.job import spec_from_dict

    job = spec_from_dict(
        {
            "name": "overhead",
            "search_space": {"name": "nb201", "channels": 16, "cells_per_stage": 5},
            "compression": {"weight_bits": [32], "sparsity": [0.0]},
            "strategy": {"name": "random"},
            "evaluator": {
                "name": "table",
                "path": args.table,
                "metrics": {"accuracy": args.accuracy, latency_metric: args.device},
            },
            "objectives": ["accuracy", latency_metric],
            "resources": {"trials": args.overhead_trials, "concurrency": 2},
        }
    )
    connect_ray(None, 2)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            warm = job.model_copy(update={"resources": job.resources.model_copy(update={"trials": 20})})
            Controller.start(warm, Path(tmp) / "warmup").run()  # workers started, table loaded in each
            cosearch_ms = []
            for repeat in range(args.overhead_repeats):  # a 2-core machine is noisy: one search is not a measurement
                controller = Controller.start(job, Path(tmp) / f"run{repeat}")
                start = time.perf_counter()
                controller.run()
                cosearch_ms.append((time.perf_counter() - start) / args.overhead_trials * 1e3)
        tune_ms = [tune_overhead(job, args.overhead_trials) for _ in range(args.overhead_repeats)]
    finally:
        ray.shutdown()
    return {
        "trials": args.overhead_trials,
        "concurrency": 2,
        "cosearch_controller_ms_per_eval": float(np.median(cosearch_ms)),
        "cosearch_runs_ms_per_eval": cosearch_ms,
        "ray_tune_ms_per_eval": float(np.median(tune_ms)) if None not in tune_ms else None,
        "ray_tune_runs_ms_per_eval": tune_ms,
        "note": "wall time of the whole search / evaluations; Ray already started; cosearch commits every result and checkpoint to SQLite (fsync)",
    }


def tune_overhead(job, trials: int) -> float | None:
    """Ray Tune with a custom Searcher around the same strategy and the same table evaluator."""
    try:
        from ray import tune
        from ray.tune.search import Searcher
    except ImportError:
        return None

    from cosearch.core import Candidate

    strategy = build.make_strategy(job)
    evaluator = build.make_evaluator(job)
    goals = job.goals()

    class StrategySearcher(Searcher):
        def __init__(self) -> None:
            super().__init__(metric="accuracy", mode="max")
            self.asked: dict[str, Candidate] = {}

        def suggest(self, trial_id: str):
            candidate = strategy.ask()
            self.asked[trial_id] = candidate
            return {"candidate": candidate.to_json()}

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            from cosearch.core import Result

            candidate = self.asked.pop(trial_id)
            if result and "accuracy" in result:
                metrics = {m: result[m] for m in goals.metrics if m in result}
                strategy.tell(candidate, Result(candidate, "ok", metrics))
            else:
                strategy.tell(candidate, Result.failed(candidate, "tune error"))

    def trainable(config):
        evaluation = evaluator.evaluate(Candidate.from_json(config["candidate"]))
        return dict(evaluation.result.metrics)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        tune.run(
            trainable,
            search_alg=StrategySearcher(),
            num_samples=trials,
            max_concurrent_trials=2,
            reuse_actors=True,
            verbose=0,
            storage_path=tmp,
            resources_per_trial={"cpu": 1},
        )
        return (time.perf_counter() - start) / trials * 1e3


def python_speed_ms() -> float:
    """Best of 5 runs of a fixed pure-Python loop: the timings below scale with it from machine to machine."""
    return min(timeit.repeat("sum(range(10**6))", number=1, repeat=5)) * 1e3


def _range(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}"


def write_markdown(path: Path, report: dict) -> None:
    lines = [
        "# Strategies on NAS-Bench-201",
        "",
        f"Command: `{report['command']}` on {report['machine']['processor']}, Python {report['machine']['python']}. "
        f"Machine speed, to compare timings across machines: `sum(range(10**6))` takes {report['machine']['python_speed_ms']:.1f} ms.",
        "",
        f"Table {report['table']['path']}: accuracy `{report['table']['accuracy']}`, latency `{report['table']['latency']}`. "
        f"Reference point: accuracy {report['reference_point']['accuracy']:.2f} %, latency {report['reference_point']['latency_ms']:.3f} ms "
        f"(10th / 90th percentile of the table). {report['reachable_architectures']} architectures are distinct for cosearch; "
        f"their front holds {report['true_front_hv_share_of_all_rows_front']:.1%} of the hypervolume of the front over all rows.",
        f"Latency budget for regret: {report['latency_budget_ms']:.3f} ms (median); best accuracy under it {report['best_accuracy_under_budget']:.2f} %.",
        "",
        "Means over seeds (± std). HV: share of the true front's hypervolume. Regret in accuracy points. Best: best accuracy (%) with no budget.",
        "Strategy ms/eval: CPU time of the search loop per evaluation (ask, tell and the table lookup), seeds run in parallel processes.",
        "",
        "| strategy | HV@50 | HV@150 | HV@300 | regret@50 | regret@150 | regret@300 | best@150 | strategy ms/eval |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in report["strategies"].items():
        lines.append(
            f"| {name} | {s['hv_50']['mean']:.3f} | {s['hv_150']['mean']:.3f} ± {s['hv_150']['std']:.3f} | {s['hv_300']['mean']:.3f} | "
            f"{s['regret_50']['mean']:.2f} | {s['regret_150']['mean']:.2f} ± {s['regret_150']['std']:.2f} | {s['regret_300']['mean']:.2f} | "
            f"{s['best_150']['mean']:.2f} | {s['strategy_ms_per_eval']:.2f} |"
        )
    o = report["overhead"]
    tune = (
        "not installed"
        if o["ray_tune_ms_per_eval"] is None
        else f"{o['ray_tune_ms_per_eval']:.1f} ms per evaluation ({_range(o['ray_tune_runs_ms_per_eval'])})"
    )
    lines += [
        "",
        f"Controller overhead, {o['trials']} table evaluations at concurrency {o['concurrency']} on local Ray, median of "
        f"{len(o['cosearch_runs_ms_per_eval'])} searches (range): cosearch {o['cosearch_controller_ms_per_eval']:.1f} ms per evaluation "
        f"({_range(o['cosearch_runs_ms_per_eval'])}); Ray Tune with a custom Searcher (reuse_actors=True) {tune}.",
    ]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
