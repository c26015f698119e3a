"""Warm starts: a new run (new budgets, devices or strategy) that begins from an earlier run's results.

Every earlier result the new job can read is told to the new strategy before it is first asked.
Where the two jobs evaluate a candidate the same way (same data, evaluator, training, latency
settings, devices and seed), a trained result is not evaluated again: it is stored in the new run,
weights included, and counts towards its trials. Nothing is read from the earlier run afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cosearch.controller.store import RunStore, StoredResult, is_final
from cosearch.core.errors import CosearchError
from cosearch.core.result import Result

# The job sections that decide what a candidate's evaluation measures; the search's own choices
# (strategy, objectives, budgets, trials, the compression options searched) are left out.
EVALUATION_SECTIONS = ("task", "evaluator", "training", "latency", "devices", "profiles")


@dataclass
class WarmStart:
    source: Path
    reuse: list[tuple[Result, bytes | None]] = field(default_factory=list)  # stored in the new run
    tell: list[Result] = field(default_factory=list)  # told to the strategy only
    left_out: int = 0  # outside the new space, never trained, failed, or lacking a metric the goals need

    def summary(self) -> dict[str, Any]:
        return {"from": str(self.source), "reused": len(self.reuse), "told": len(self.tell), "left_out": self.left_out}

    def describe(self) -> str:
        return (
            f"warm start from {self.source}: {len(self.reuse)} results reused (same evaluation settings; not evaluated "
            f"again), {len(self.tell)} told to the strategy only (other evaluation settings), {self.left_out} left out "
            "(outside this job's space, never trained, failed, or lacking a metric its goals need)"
        )


def evaluation_settings(job: dict[str, Any]) -> dict[str, Any]:
    from cosearch.compressors import genes

    searched = set(genes())
    compression = {k: v for k, v in job.get("compression", {}).items() if k not in searched}
    return {
        **{k: job.get(k) for k in EVALUATION_SECTIONS},
        "compression": compression,
        "seed": job.get("resources", {}).get("seed"),
    }


def plan(job: Any, source: str | Path, run_dir: str | Path) -> WarmStart:
    """What a new run of `job` in `run_dir` takes from the run in `source`; an incompatible source
    (another search space, the run itself) is one clear error, raised before anything is written."""
    from cosearch import build

    source = Path(source)
    if Path(run_dir).resolve() == source.resolve():
        raise CosearchError(f"--warm-start {source} is the new run's own directory; give an earlier run")
    with RunStore(source) as store:  # says clearly what a directory without a run is
        old = store.job()
        results = [r for r in store.iter_results() if not is_final(r.result)]
        new = job.to_json()
        if (old["search_space"]) != new["search_space"]:
            raise CosearchError(
                f"--warm-start {source} searched {_space(old)}, this job searches {_space(new)}: "
                "its candidates are other networks here; warm-start from a run of the same search space"
            )
        joint = build.make_joint_space(job)
        goals = job.goals()
        same = evaluation_settings(old) == evaluation_settings(new) and "supernet" not in build.evaluator_needs(job)
        out = WarmStart(source)
        for item in results:
            result = item.result
            usable = result.ok and joint.contains(result.candidate) and all(m in result.metrics for m in goals.metrics)
            if not usable:
                out.left_out += 1
            elif same and len(out.reuse) < job.resources.trials:
                out.reuse.append((_marked(result, source, item), store.weights_of(result)))
            else:
                out.tell.append(result)
    return out


def _marked(result: Result, source: Path, item: StoredResult) -> Result:
    return replace(result, measured={**result.measured, "warm_start": {"from": str(source), "id": item.id}})


def _space(job: dict[str, Any]) -> str:
    space = dict(job["search_space"])
    return f"{space.pop('name')} {space}"
