"""Optuna's samplers as cosearch strategies (`optuna:tpe`, `optuna:nsga2`), through its ask/tell API.

Budgets reach Optuna as trial constraints (`value - bound <= 0` is feasible; Optuna >= 5), which both
samplers use.
The state is the list of trials plus the pickled sampler, so a resumed run continues exactly.
"""

from __future__ import annotations

import base64
import io
import pickle
import threading
from typing import Annotated, Any

from pydantic import Field

from cosearch._private import optuna_trial
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

    def __init__(self, space: JointSpace, goals: Goals, seed: int = 0, **sampler_kwargs: Any) -> None:
        import optuna

        super().__init__(space, goals, seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.seed = seed
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
            return
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

    def state_dict(self) -> dict[str, Any]:
        trials = [
            {"params": t.params, "values": t.values, "state": t.state.name, "system_attrs": t.system_attrs}
            for t in self.study.get_trials(deepcopy=False)
        ]
        sampler = base64.b64encode(_pickled(self.study.sampler)).decode()  # its RNG and internal state
        return {"trials": trials, "sampler": sampler, "running": self.running}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import optuna

        sampler = pickle.loads(base64.b64decode(state["sampler"]))
        for name, value in vars(self._make_sampler(self.seed)).items():
            vars(sampler).setdefault(name, value)  # attributes a newer Optuna added since the checkpoint
        self._new_study(sampler)
        for t in state["trials"]:
            # Trials go back in order, so trial numbers (which `running` refers to) stay the same.
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=t["params"],
                    distributions=self.distributions,
                    values=t["values"],
                    state=optuna.trial.TrialState[t["state"]],
                    system_attrs=t["system_attrs"],
                )
            )
        self.running = {k: list(v) for k, v in state["running"].items()}


@STRATEGIES.register("optuna:tpe")
class OptunaTPE(OptunaStrategy):
    def __init__(
        self, space: JointSpace, goals: Goals, seed: int = 0, n_startup_trials: Annotated[int, Field(ge=1)] = 10
    ) -> None:
        super().__init__(space, goals, seed, n_startup_trials=n_startup_trials)

    def _make_sampler(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=seed, **self.sampler_kwargs)


@STRATEGIES.register("optuna:nsga2")
class OptunaNSGA2(OptunaStrategy):
    def __init__(
        self, space: JointSpace, goals: Goals, seed: int = 0, population_size: Annotated[int, Field(ge=2)] = 20
    ) -> None:
        super().__init__(space, goals, seed, population_size=population_size)

    def _make_sampler(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.NSGAIISampler(seed=seed, **self.sampler_kwargs)
