"""Which accuracy predictor ranks a supernet's answers better: the `gp` strategy's Gaussian process
or a small MLP on the joint encoding (Once-for-All's and APQ's predictor)?

    python scripts/bench_predictor.py [--candidates 300] [--image-size 32] [--out benchmarks/predictor]

Trains the NB201 supernet of `scripts/bench_supernet.py` once, scores `--candidates` random joint
candidates (architecture, per-layer weight bits and sparsity) with the `supernet` evaluator, then,
over `--splits` random splits, fits each predictor on the first N answers (N in `--train-sizes`)
and reports Kendall's tau between its predictions and the supernet's answers on `--held-out`
candidates it never saw (mean and standard deviation over the splits). Predictors:

  gp    the `gp` strategy's surrogate, as it fits during a search (group-weighted Hamming plus
        option-count distance, length scale and noise by marginal likelihood, worst tail tamed)
  mlp   scikit-learn's MLPRegressor on the one-hot genome (3 hidden layers of 400, ReLU, Adam,
        as Once-for-All's accuracy predictor), standardised target, an ensemble of 5 seeds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from bench_supernet import IMAGE_SIZE, SPACES, evaluate, joint, load_supernet, make, random_candidates


def one_hot(space, genomes: list[dict]) -> np.ndarray:
    genes = [c for c in space.choices() if len(c.options) > 1]
    columns = [(c.name, option) for c in genes for option in c.options]
    index = {column: i for i, column in enumerate(columns)}
    out = np.zeros((len(genomes), len(columns)))
    for row, genome in enumerate(genomes):
        for c in genes:
            out[row, index[(c.name, genome[c.name])]] = 1.0
    return out


def gp_predictions(space, candidates, accuracies, test_candidates) -> np.ndarray:
    from cosearch.core.objectives import Goals, Objective
    from cosearch.core.result import Result
    from cosearch.strategies.gp import GaussianProcessBO

    strategy = GaussianProcessBO(space, Goals((Objective("accuracy", "max"),)), refit_every=1)
    for candidate, value in zip(candidates, accuracies):
        strategy.tell(candidate, Result(candidate, "ok", {"accuracy": value}))
    model = strategy._fit("accuracy")
    return model.predict(strategy._features([space.encode(c) for c in test_candidates]))[0]


def mlp_predictions(space, candidates, accuracies, test_candidates, members: int = 5) -> np.ndarray:
    from sklearn.neural_network import MLPRegressor

    x = one_hot(space, [space.encode(c) for c in candidates])
    y = np.asarray(accuracies)
    mean, scale = y.mean(), y.std() or 1.0
    test = one_hot(space, [space.encode(c) for c in test_candidates])
    out = np.zeros(len(test_candidates))
    for seed in range(members):
        model = MLPRegressor(hidden_layer_sizes=(400, 400, 400), alpha=1e-3, max_iter=500, random_state=seed)
        model.fit(x, (y - mean) / scale)
        out += model.predict(test)
    return mean + scale * out / members


PREDICTORS = {"gp": gp_predictions, "mlp": mlp_predictions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("--train-sizes", default="25,50,100,200")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=60, help="supernet training epochs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from scipy import stats

    IMAGE_SIZE[0] = args.image_size
    sizes = [int(s) for s in args.train_sizes.split(",")]
    if max(sizes) + args.held_out > args.candidates:
        raise SystemExit("--candidates must cover the largest training size plus --held-out")
    space = joint("nb201")
    candidates = random_candidates(space, args.candidates)
    start = time.perf_counter()
    checkpoint, _ = make("supernet", "nb201", epochs=args.epochs).train_supernet(space, None, epochs=args.epochs)
    supernet_s = time.perf_counter() - start
    print(f"supernet {args.epochs} epochs in {supernet_s:.0f} s", flush=True)
    work = [("supernet", "nb201", 0, c.to_json()) for c in candidates]
    start = time.perf_counter()
    with ProcessPoolExecutor(
        args.workers, initializer=load_supernet, initargs=("nb201", checkpoint, args.epochs, {})
    ) as pool:
        accuracies = [r["accuracy"] for r in pool.map(evaluate, work)]
    scored_s = time.perf_counter() - start
    print(f"{len(candidates)} candidates scored in {scored_s:.0f} s", flush=True)

    taus: dict[str, dict[int, list[float]]] = {name: {n: [] for n in sizes} for name in PREDICTORS}
    fit_s: dict[str, list[float]] = {name: [] for name in PREDICTORS}
    for split in range(args.splits):
        order = np.random.default_rng(100 + split).permutation(len(candidates))
        test = order[: args.held_out]
        rest = order[args.held_out :]
        for n in sizes:
            train = rest[:n]
            for name, predict in PREDICTORS.items():
                began = time.perf_counter()
                predicted = predict(
                    space, [candidates[i] for i in train], [accuracies[i] for i in train], [candidates[i] for i in test]
                )
                fit_s[name].append(time.perf_counter() - began)
                tau = float(stats.kendalltau(predicted, [accuracies[i] for i in test])[0])
                taus[name][n].append(tau)
        print(json.dumps({"split": split, **{k: {n: v[n][-1] for n in sizes} for k, v in taus.items()}}), flush=True)

    command = "python scripts/bench_predictor.py " + " ".join(sys.argv[1:])
    summary = {
        "command": command,
        "space": {"name": "nb201", **SPACES["nb201"]},
        "image_size": args.image_size,
        "supernet_epochs": args.epochs,
        "supernet_train_s": supernet_s,
        "scored_s_per_candidate": scored_s * args.workers / len(candidates),
        "accuracy": {
            "mean": float(np.mean(accuracies)),
            "min": float(np.min(accuracies)),
            "max": float(np.max(accuracies)),
        },
        "held_out": args.held_out,
        "splits": args.splits,
        "kendall_tau": {
            name: {str(n): {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1))} for n, v in by_n.items()}
            for name, by_n in taus.items()
        },
        "fit_and_predict_s": {name: float(np.mean(v)) for name, v in fit_s.items()},
        "per_candidate": [{"key": c.key, "accuracy": a} for c, a in zip(candidates, accuracies)],
    }
    lines = [
        "# Accuracy predictors on a supernet's answers",
        "",
        f"Command: `{command}` on this machine. NB201 supernet ({SPACES['nb201']}, digits at {args.image_size}x"
        f"{args.image_size}, {args.epochs} epochs in {supernet_s:.0f} s); {len(candidates)} random joint candidates "
        f"scored by the `supernet` evaluator ({summary['scored_s_per_candidate']:.2f} s each; accuracy "
        f"{summary['accuracy']['min']:.1%} to {summary['accuracy']['max']:.1%}, mean {summary['accuracy']['mean']:.1%}).",
        f"Kendall's tau between each predictor's prediction and the supernet's answer on {args.held_out} held-out "
        f"candidates, mean +- sd over {args.splits} random splits, by the number of answers it was fitted on.",
        "",
        "| predictor | " + " | ".join(f"tau at {n}" for n in sizes) + " | fit + predict s |",
        "|---|" + "---:|" * (len(sizes) + 1),
    ]
    for name, by_n in summary["kendall_tau"].items():
        cells = " | ".join(f"{by_n[str(n)]['mean']:.3f} +- {by_n[str(n)]['sd']:.3f}" for n in sizes)
        lines.append(f"| {name} | {cells} | {summary['fit_and_predict_s'][name]:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
