"""Optuna's samplers as cosearch strategies (`optuna:tpe`, `optuna:nsga2`), through its ask/tell API.

Budgets reach Optuna as trial constraints (`value - bound <= 0` is feasible; Optuna >= 5), which both
samplers use.
The state is the list of trials plus the pickled sampler, so a resumed run continues exactly.
Optuna's samplers read every trial of the study at each ask, so the study keeps the last
`history_size` trials (and those a genetic sampler still reads: its latest generations and their
parents): asks and checkpoints then cost the same at any run length.
"""

from __future__ import annotations

import base64
import io
import pickle
import threading
from typing import Annotated, Any

from pydantic import Field

from cosearch._private import optuna_generation_key, optuna_parents, optuna_set_parents, optuna_trial
from cosearch.core.candidate import Candidate
from cosearch.core.objectives import Goals
from cosearch.core.result import Result
from cosearch.search_spaces.base import JointSpace
from cosearch.strategies.base import STRATEGIES, Strategy

# How a candidate without objective values reaches Optuna: worst values, and a violated constraint
# larger than any budget's, so it is dominated by every evaluated trial.
NOT_EVALUATED = "not evaluated"
NOT_EVALUATED_VALUE = 1e9
NOT_EVALUATED_VIOLATION = 1e9


_FRESH_LOCK = {type(threading.Lock()): threading.Lock, type(threading.RLock()): threading.RLock}


class _LockFreePickler(pickle.Pickler):
    """Pickles a sampler whose caches are guarded by a lock (Optuna 5.1's GA samplers): a lock holds no
    state, so a fresh one stands in for it."""

    def reducer_override(self, obj: Any) -> Any:
        fresh = _FRESH_LOCK.get(type(obj))
        return (fresh, ()) if fresh is not None else NotImplemented


def _pickled(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _LockFreePickler(buffer).dump(obj)
    return buffer.getvalue()


class OptunaStrategy(Strategy):
    sampler_name = ""

    def __init__(
        self, space: JointSpace, goals: Goals, seed: int = 0, history_size: int = 1000, **sampler_kwargs: Any
    ) -> None:
        import optuna

        super().__init__(space, goals, seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.seed = seed
        self.history_size = history_size
        self.compacted = history_size  # trials the study kept at its last compaction (none yet: the window)
        self.sampler_kwargs = sampler_kwargs
        self.distributions = {
            c.name: optuna.distributions.CategoricalDistribution(list(c.options))
            for c in space.choices()
            if len(c.options) > 1
        }
        self.fixed = {c.name: c.options[0] for c in space.choices() if len(c.options) == 1}
        self._new_study(self._make_sampler(seed))
        self.running: dict[str, list[int]] = {}  # candidate key -> numbers of the trials asked for it

    def _make_sampler(self, seed: int) -> Any:
        raise NotImplementedError

    def _new_study(self, sampler: Any) -> None:
        import optuna

        directions = ["maximize" if o.direction == "max" else "minimize" for o in self.goals.objectives]
        self.study = optuna.create_study(directions=directions, sampler=sampler)

    def ask(self) -> Candidate:
        trial = self.study.ask(self.distributions)
        candidate = self.space.decode({**self.fixed, **trial.params})
        self.running.setdefault(candidate.key, []).append(trial.number)
        return candidate

    def _outcome(self, result: Result) -> tuple[Any, list[float], dict[str, float]]:
        """A result as a COMPLETE trial. One without objective values (failed, or never trained) is an
        infeasible trial, so both samplers rank it last and steer away from it: as a FAIL trial
        TPE ignores it and proposes the same configuration again (a run once ended at 32 of 120)."""
        import optuna

        values = [result.metrics.get(o.metric) for o in self.goals.objectives]
        constraints = {}
        for c in self.goals.constraints:
            measured = result.metrics.get(c.metric)
            constraints[str(c)] = (
                1.0 if measured is None else (measured - c.bound if c.op == "<=" else c.bound - measured)
            )
        if result.status == "failed" or any(v is None for v in values):
            values = [
                NOT_EVALUATED_VALUE if o.direction == "min" else -NOT_EVALUATED_VALUE for o in self.goals.objectives
            ]
            constraints[NOT_EVALUATED] = NOT_EVALUATED_VIOLATION
        return optuna.trial.TrialState.COMPLETE, values, constraints

    def tell(self, candidate: Candidate, result: Result) -> None:
        import optuna

        state, values, constraints = self._outcome(result)
        numbers = self.running.get(candidate.key)
        if numbers:
            number = numbers.pop(0)
            if not numbers:
                del self.running[candidate.key]
            trial = optuna_trial(self.study, number)
            for name, value in constraints.items():
                trial.set_constraint(name, value)
            self.study.tell(trial, values, state=state)
        else:
            genome = self.space.encode(candidate)  # a result this study never asked for (a replay)
            params = {name: genome[name] for name in self.distributions}
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions=self.distributions,
                    values=values,
                    state=state,
                    constraints=constraints or None,
                )
            )
        # Compacting once history_size // 4 trials came since the last keeps its O(history_size) cost at
        # O(1) per result (what it keeps beyond the last history_size, such as old parents, counts too).
        if len(self.study.get_trials(deepcopy=False)) >= self.compacted + max(1, self.history_size // 4):
            self._compact()

    def _compact(self) -> None:
        """The study again with only the trials its sampler still reads, renumbered in order."""
        trials = self.study.get_trials(deepcopy=False)
        parents = self._parents()
        keep = set(range(len(trials) - self.history_size, len(trials)))
        keep |= {t.number for t in trials if not t.state.is_finished()}  # asked, not yet told
        keep |= {n for numbers in parents.values() for n in numbers}
        generation = optuna_generation_key(self.study.sampler)
        if generation is not None:  # a genetic sampler counts its latest generation's members
            latest = max((t.system_attrs.get(generation, -1) for t in trials), default=-1)
            keep |= {t.number for t in trials if t.system_attrs.get(generation, -1) >= latest - 1}
        renumber = {old: new for new, old in enumerate(sorted(keep))}
        self._restore(
            self.study.sampler,
            [_trial_json(trials[n]) for n in sorted(keep)],
            {key: [renumber[n] for n in numbers] for key, numbers in self.running.items()},
            {g: [renumber[n] for n in numbers] for g, numbers in parents.items()},
        )
        self.compacted = max(self.history_size, len(keep))

    def _parents(self) -> dict[int, list[int]]:
        """A genetic sampler's cached parents of its two latest generations (older ones are not read again)."""
        parents = optuna_parents(self.study)
        return {g: parents[g] for g in sorted(parents)[-2:]}

    def state_dict(self) -> dict[str, Any]:
        sampler = base64.b64encode(_pickled(self.study.sampler)).decode()  # its RNG and internal state
        return {
            "trials": [_trial_json(t) for t in self.study.get_trials(deepcopy=False)],
            "sampler": sampler,
            "running": self.running,
            "parents": {str(g): numbers for g, numbers in self._parents().items()},
            "compacted": self.compacted,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sampler = pickle.loads(base64.b64decode(state["sampler"]))
        for name, value in vars(self._make_sampler(self.seed)).items():
            vars(sampler).setdefault(name, value)  # attributes a newer Optuna added since the checkpoint
        parents = {int(g): numbers for g, numbers in state.get("parents", {}).items()}
        self._restore(sampler, state["trials"], state["running"], parents)
        self.compacted = state.get("compacted", self.history_size)

    def _restore(
        self, sampler: Any, trials: list[dict[str, Any]], running: dict[str, list[int]], parents: dict[int, list[int]]
    ) -> None:
        import optuna

        self._new_study(sampler)
        for t in trials:
            # Trials go in in order, so trial numbers (which `running` and `parents` refer to) are their indices.
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=t["params"],
                    distributions=self.distributions,
                    values=t["values"],
                    state=optuna.trial.TrialState[t["state"]],
                    system_attrs=t["system_attrs"],
                )
            )
        optuna_set_parents(self.study, parents)
        self.running = {k: list(v) for k, v in running.items()}


def _trial_json(trial: Any) -> dict[str, Any]:
    return {
        "params": trial.params,
        "values": trial.values,
        "state": trial.state.name,
        "system_attrs": trial.system_attrs,
    }


@STRATEGIES.register("optuna:tpe")
class OptunaTPE(OptunaStrategy):
    def __init__(
        self,
        space: JointSpace,
        goals: Goals,
        seed: int = 0,
        n_startup_trials: Annotated[int, Field(ge=1)] = 10,
        history_size: Annotated[int, Field(ge=10)] = 1000,
    ) -> None:
        super().__init__(space, goals, seed, history_size, n_startup_trials=n_startup_trials)

    def _make_sampler(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=seed, **self.sampler_kwargs)


@STRATEGIES.register("optuna:nsga2")
class OptunaNSGA2(OptunaStrategy):
    def __init__(
        self,
        space: JointSpace,
        goals: Goals,
        seed: int = 0,
        population_size: Annotated[int, Field(ge=2)] = 20,
        history_size: Annotated[int, Field(ge=10)] = 1000,
    ) -> None:
        if history_size < 2 * population_size:
            raise ValueError(
                f"history_size ({history_size}) must hold two generations: at least 2 * population_size ({population_size})"
            )
        super().__init__(space, goals, seed, history_size, population_size=population_size)

    def _make_sampler(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.NSGAIISampler(seed=seed, **self.sampler_kwargs)
