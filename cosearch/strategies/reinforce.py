"""An ENAS-style RL controller: a policy emits the genome token by token, trained by REINFORCE.

Each token's logits depend on the previous token's choice (a first-order autoregressive policy:
ENAS uses an LSTM; one step of memory keeps this numpy-only and fast). The reward follows
MnasNet: `primary * prod_c (value_c / bound_c) ** w_c` over the budgets, with `w_c = alpha`
within budget and `beta` over it; a failed candidate earns 0. A moving-average baseline cuts
variance and an entropy bonus keeps the policy from collapsing early (Pham et al. 2018).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field

from cosearch.core.candidate import Candidate
from cosearch.core.objectives import Goals
from cosearch.core.result import Result
from cosearch.search_spaces.base import JointSpace
from cosearch.strategies.base import STRATEGIES, Strategy


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


@STRATEGIES.register("reinforce")
class ReinforceController(Strategy):
    def __init__(
        self,
        space: JointSpace,
        goals: Goals,
        seed: int = 0,
        learning_rate: Annotated[float, Field(gt=0)] = 0.2,
        baseline_decay: Annotated[float, Field(ge=0, lt=1)] = 0.9,
        entropy_weight: Annotated[float, Field(ge=0)] = 0.01,
        alpha: float = 0.0,
        beta: float = -1.0,
    ) -> None:
        super().__init__(space, goals, seed)
        self.learning_rate, self.baseline_decay, self.entropy_weight = learning_rate, baseline_decay, entropy_weight
        self.alpha, self.beta = alpha, beta
        self.choices = [c for c in space.choices() if len(c.options) > 1]  # single-option genes are not decisions
        self.fixed = {c.name: c.options[0] for c in space.choices() if len(c.options) == 1}
        # weights[t][p] = logits of token t given the previous token chose option p (row 0 for t = 0).
        self.weights = [
            np.zeros((len(self.choices[t - 1].options) if t else 1, len(c.options))) for t, c in enumerate(self.choices)
        ]
        self.baseline: float | None = None
        self.asked_tokens: dict[str, list[int]] = {}

    def _tokens_of(self, genome: dict[str, Any]) -> list[int]:
        return [list(c.options).index(genome[c.name]) for c in self.choices]

    def ask(self) -> Candidate:
        tokens, previous = [], 0
        for t, choice in enumerate(self.choices):
            probs = _softmax(self.weights[t][previous])
            previous = int(self.rng.choice(len(choice.options), p=probs))
            tokens.append(previous)
        genome = {**self.fixed, **{c.name: c.options[k] for c, k in zip(self.choices, tokens)}}
        candidate = self.space.decode(genome)
        # The canonical candidate may be written with other tokens (dead genes); learn from what was sampled.
        self.asked_tokens[candidate.key] = tokens
        return candidate

    def reward(self, result: Result) -> float:
        if result.status == "failed":
            return 0.0
        primary = self.goals.objectives[0]
        value = result.metrics.get(primary.metric)
        if value is None:
            return 0.0
        reward = value if primary.direction == "max" else -value
        for constraint in self.goals.constraints:
            measured = result.metrics.get(constraint.metric)
            if measured is None or measured <= 0:
                continue
            ratio = measured / constraint.bound if constraint.op == "<=" else constraint.bound / measured
            reward *= ratio ** (self.alpha if constraint.violation(measured) == 0 else self.beta)
        return float(reward)

    def tell(self, candidate: Candidate, result: Result) -> None:
        tokens = self.asked_tokens.pop(candidate.key, None) or self._tokens_of(self.space.encode(candidate))
        reward = self.reward(result)
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        previous = 0
        for t, token in enumerate(tokens):
            probs = _softmax(self.weights[t][previous])
            grad = -probs
            grad[token] += 1.0  # d log p(token) / d logits
            entropy = -float(np.sum(probs * np.log(probs + 1e-12)))
            grad_entropy = -probs * (np.log(probs + 1e-12) + entropy)
            self.weights[t][previous] += self.learning_rate * (advantage * grad + self.entropy_weight * grad_entropy)
            previous = token

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "weights": [w.tolist() for w in self.weights],
            "baseline": self.baseline,
            "asked_tokens": self.asked_tokens,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.weights = [np.array(w, dtype=float) for w in state["weights"]]
        self.baseline = state["baseline"]
        self.asked_tokens = {k: list(v) for k, v in state["asked_tokens"].items()}
