"""The shared vocabulary of cosearch: candidates, results, goals, Pareto maths, registries, errors.

Standard library and numpy only.
"""

from cosearch.core.candidate import FLOAT_BITS, Candidate, LayerPolicy, Policy
from cosearch.core.errors import CosearchError, EvaluationError, RunDirError, SpecError
from cosearch.core.objectives import Constraint, Goals, Objective, resolve_metric
from cosearch.core.pareto import (
    constrained_dominates,
    crowding_distance,
    dominates,
    hypervolume,
    nondominated_sort,
    pareto_front,
)
from cosearch.core.registry import Registry
from cosearch.core.result import Result

__all__ = [
    "FLOAT_BITS",
    "Candidate",
    "Constraint",
    "CosearchError",
    "EvaluationError",
    "Goals",
    "LayerPolicy",
    "Objective",
    "Policy",
    "Registry",
    "Result",
    "RunDirError",
    "SpecError",
    "constrained_dominates",
    "crowding_distance",
    "dominates",
    "hypervolume",
    "nondominated_sort",
    "pareto_front",
    "resolve_metric",
]
