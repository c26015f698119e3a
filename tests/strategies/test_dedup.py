"""The one filter of repeated proposals, around any strategy."""

from __future__ import annotations

from cosearch.core import Candidate, Result
from cosearch.strategies import Deduplicated


class Scripted:
    """Proposes the given keys in order; records what it was told."""

    def __init__(self, *keys: str) -> None:
        self.keys, self.told = list(keys), []

    def ask(self) -> Candidate:
        return Candidate({"x": self.keys.pop(0)})

    def tell(self, candidate: Candidate, result: Result) -> None:
        self.told.append((candidate.arch["x"], result.status))


def candidate(x: str) -> Candidate:
    return Candidate({"x": x})


def test_a_repeat_of_an_answered_candidate_is_told_its_answer_and_asked_again():
    inner = Scripted("a", "a", "b")
    dedup = Deduplicated(inner)
    first = dedup.ask()
    dedup.tell(first, Result(first, "ok", {"accuracy": 0.5}))
    assert dedup.ask().arch == {"x": "b"}  # "a" again was answered from what it was told
    assert inner.told == [("a", "ok"), ("a", "ok")] and dedup.repeats == 1


def test_a_busy_candidate_is_skipped_untold_and_repeats_run_out():
    inner = Scripted("a", "a", "a")
    dedup = Deduplicated(inner, answered={})
    assert dedup.ask(busy=[{candidate("a").key}], max_repeats=3) is None
    assert inner.told == [] and dedup.repeats == 3


def test_answers_are_shared_with_the_caller():
    answered = {candidate("a").key: Result(candidate("a"), "failed", error="boom")}
    inner = Scripted("a", "c")
    assert Deduplicated(inner, answered).ask().arch == {"x": "c"}
    assert inner.told == [("a", "failed")]
