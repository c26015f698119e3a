"""The gradient work of the `enas` strategy, run in a Ray worker (see cosearch.strategies.enas)."""

from __future__ import annotations

import heapq
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cosearch.core.errors import CosearchError
from cosearch.core.objectives import Constraint, Goals, Objective
from cosearch.core.result import Result
from cosearch.search_spaces.base import JointSpace
from cosearch.search_spaces.supernet import path_logits, recalibrate_batchnorm
from cosearch.strategies.reinforce import ReinforceController

BN_BATCHES = 2  # training batches re-estimating BatchNorm for each rewarded sample (SPOS)


def search(
    evaluator: Any,
    epochs: int,
    samples: int,
    top_k: int,
    seed: int,
    controller: dict[str, Any],
    options: dict[str, list],
    objectives: list[str],
    budgets: list[str],
) -> dict[str, Any]:
    """Alternate shared-weight training and controller steps; returns the controller's state and
    the `top_k` genomes it rewarded most (JSON-able)."""
    from cosearch.evaluators.train import describe_device, training_device

    space = evaluator.space
    if not hasattr(evaluator, "data") or not space.has_supernet():
        raise CosearchError("strategy enas needs a search space with a supernet and an evaluator that trains (train)")
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data, training = evaluator.data.load(), evaluator.training
    joint = JointSpace(space, **options)
    goals = Goals(tuple(Objective.parse(o) for o in objectives), tuple(Constraint.parse(b) for b in budgets))
    policy = ReinforceController(joint, goals, seed, **controller)
    device = training_device()
    supernet = space.supernet(data.input_shape, data.num_classes).to(device)
    optimizer = torch.optim.Adam(supernet.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    train_x, train_y = (torch.from_numpy(a).to(device) for a in (data.train.x, data.train.y))
    val_x, val_y = (torch.from_numpy(a).to(device) for a in (data.val.x, data.val.y))
    batch = training.batch_size
    steps = max(1, len(data.train.y) // batch)
    best: list[tuple[float, int, dict]] = []  # a min-heap of (reward, order, genome), distinct candidates
    kept: dict[str, tuple] = {}  # key -> its entry in `best`
    history = []

    for epoch in range(epochs):
        supernet.train()
        order = rng.permutation(len(data.train.y))
        losses = []
        for step in range(steps):
            rows = torch.from_numpy(order[step * batch : (step + 1) * batch]).to(device)
            candidate = policy.ask()
            policy.asked_tokens.pop(candidate.key, None)  # trained on, not rewarded: nothing to learn from
            loss = F.cross_entropy(path_logits(supernet, candidate, train_x[rows]), train_y[rows])
            if not torch.isfinite(loss):
                raise CosearchError(
                    f"strategy enas: the shared weights' loss became {loss.item()} in epoch {epoch + 1}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        rewards, accuracies = [], []
        for _ in range(samples):
            candidate = policy.ask()
            supernet.choose(candidate.arch)
            picks = [rng.choice(len(data.train.y), batch, replace=False) for _ in range(BN_BATCHES)]
            recalibrate_batchnorm(supernet, [train_x[torch.from_numpy(p).to(device)] for p in picks])
            with torch.no_grad():
                accuracy = float((path_logits(supernet, candidate, val_x).argmax(1) == val_y).float().mean())
            result = Result(candidate, "ok", {"accuracy": accuracy, **evaluator.costs(candidate, data)})
            reward = policy.reward(result)
            policy.tell(candidate, result)
            rewards.append(reward)
            accuracies.append(accuracy)
            entry = (reward, len(history) * samples + len(rewards), joint.encode(candidate))
            if candidate.key in kept:  # sampled again: the entry it has stays
                continue
            if len(best) < top_k:
                heapq.heappush(best, entry)
                kept[candidate.key] = entry
            elif entry[:2] > best[0][:2]:
                dropped = heapq.heapreplace(best, entry)
                kept = {k: e for k, e in kept.items() if e is not dropped}
                kept[candidate.key] = entry
        history.append(
            {
                "epoch": epoch + 1,
                "shared_loss": float(np.mean(losses)),
                "reward_mean": float(np.mean(rewards)),
                "shared_accuracy_mean": float(np.mean(accuracies)),
            }
        )
    supernet.to("cpu")
    ranked = sorted(best, key=lambda e: (-e[0], e[1]))
    return {
        "controller": policy.state_dict(),
        "best": [genome for _, _, genome in ranked],
        "best_rewards": [reward for reward, _, _ in ranked],
        "history": history,
        "seconds": time.perf_counter() - start,
        "how": f"ENAS: {epochs} epochs of shared-weight training on controller samples, {samples} rewarded "
        f"samples per epoch, on {describe_device(device)}",
    }
