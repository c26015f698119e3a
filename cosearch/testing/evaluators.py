"""What every evaluator promises: it pickles (it runs in Ray workers), every ok result carries
what `provides()` names, and a candidate it cannot evaluate is a failed result, not an exception."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from cosearch.core import Candidate
from cosearch.evaluators.base import Evaluator


class EvaluatorSuite:
    """Override the `evaluator` fixture (an instance) and, if need be, `candidates` (a few the
    evaluator can answer; by default three samples of its space's joint genome)."""

    @pytest.fixture
    def evaluator(self):
        raise NotImplementedError("a subclass returns the evaluator to check")

    @pytest.fixture
    def candidates(self, evaluator) -> list[Candidate]:
        from cosearch.search_spaces import JointSpace

        joint = JointSpace(evaluator.space)
        rng = np.random.default_rng(0)
        return [joint.decode(joint.sample(rng)) for _ in range(3)]

    def test_needs_are_run_inputs_its_constructor_takes(self, evaluator):
        import inspect

        from cosearch.build import RUN_INPUTS

        needs = type(evaluator).needs
        assert set(needs) <= set(RUN_INPUTS), f"a run provides only {RUN_INPUTS}"
        takes = inspect.signature(type(evaluator)).parameters
        assert all(need in takes for need in needs), f"the constructor must take every need: {sorted(needs)}"
        if "devices" in needs:
            assert type(evaluator).route is not Evaluator.route, "an evaluator that takes devices routes them"

    def test_every_ok_result_carries_what_it_provides(self, evaluator, candidates):
        provides = evaluator.provides()
        assert provides, "provides() names no metric"
        results = [evaluator.evaluate(candidate).result for candidate in candidates]
        assert any(r.status == "ok" for r in results), [r.error for r in results]
        for candidate, result in zip(candidates, results):
            assert result.candidate.key == candidate.key
            if result.status == "ok":
                missing = provides - set(result.metrics)
                assert not missing, f"an ok result lacks {sorted(missing)}"
                assert all(isinstance(v, float) and math.isfinite(v) for v in result.metrics.values())

    def test_pickles_and_answers_alike(self, evaluator, candidates):
        copy = pickle.loads(pickle.dumps(evaluator))
        assert copy.provides() == evaluator.provides()
        assert copy.evaluate(candidates[0]).result.status == evaluator.evaluate(candidates[0]).result.status

    def test_a_candidate_it_cannot_evaluate_is_a_failed_result(self, evaluator):
        foreign = Candidate({"no such": "architecture"})
        result = evaluator.evaluate(foreign).result
        assert result.status == "failed" and result.error, result
