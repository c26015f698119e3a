"""What candidates deploy as, digested, to compare two checkouts of cosearch candidate by candidate.

    PYTHONPATH=OLD_CHECKOUT python scripts/compare_checkouts.py --per-space 10 > old.json
    python scripts/compare_checkouts.py --per-space 10 > new.json && diff old.json new.json

For N seeded joint candidates per space (every technique searched), prints each one's key, the
sha256 of its deployed ONNX file (as the search deploys before training, and, with
`--calibrated`, after min-max calibration on 64 seeded images, as a trained model deploys) and
of its compact file, BitOps, size in bytes, the BitFusion
table's latency and energy, the synthetic evaluator's metrics and the policy summary. A refactor
that keeps behaviour prints the same JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

SPACES = {
    "nb201": {"channels": 8, "cells_per_stage": 1},
    "darts": {"channels": 8},
    "enas": {"channels": 8},
    "mobilenet": {},
}
OPTIONS = {  # every technique, each with its off value and others
    "weight_bits": (2, 4, 8, 32),
    "sparsity": (0.0, 0.5),
    "activation_bits": (4, 8, 32),
    "rank_ratio": (1.0, 0.5),
    "hash_ratio": (1.0, 0.5),
    "channel_ratio": (0.0, 0.25),
    "distill_alpha": (0.0, 0.5),
}
INPUT_SHAPE = (1, 16, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-space", type=int, default=4)
    parser.add_argument("--calibrated", action="store_true", help="also deploy after calibrating activation ranges")
    parser.add_argument(
        "--table", default=str(Path(__file__).resolve().parents[2] / "shared/data/apq/bitfusion_lut.json")
    )
    args = parser.parse_args()
    import torch

    from cosearch.compressors import bake, calibrate, compress, size_bytes
    from cosearch.evaluators.synthetic import SyntheticEvaluator
    from cosearch.hardware.analytic import load_bitfusion
    from cosearch.hardware.layers import bitops, layer_shapes
    from cosearch.hardware.qdq import compact, deployment
    from cosearch.search_spaces import SEARCH_SPACES
    from cosearch.search_spaces.base import JointSpace

    table = load_bitfusion(args.table)
    out = {}
    for name, settings in SPACES.items():
        space = SEARCH_SPACES.create(name, **settings)
        joint, rng, synthetic = JointSpace(space, **OPTIONS), np.random.default_rng(0), SyntheticEvaluator(space)
        for i in range(args.per_space):
            candidate = joint.decode(joint.sample(rng))
            torch.manual_seed(i)
            plain = bake(compress(space.build(candidate.arch, INPUT_SHAPE, 10), candidate.policy))
            layers = layer_shapes(plain, INPUT_SHAPE, candidate.policy)
            deployed = deployment(plain, candidate.policy, INPUT_SHAPE)
            small = compact(deployed, plain, candidate.policy)
            if args.calibrated:
                images = torch.from_numpy(
                    np.random.default_rng(i).standard_normal((64, *INPUT_SHAPE)).astype(np.float32)
                )
                model = compress(space.build(candidate.arch, INPUT_SHAPE, 10), candidate.policy)
                calibrated = bake(calibrate(model, [images]))
                digest = hashlib.sha256(deployment(calibrated, candidate.policy, INPUT_SHAPE, images=images.numpy()))
            out[f"{name}/{i}"] = {
                "key": candidate.key,
                "deploy": hashlib.sha256(deployed).hexdigest()[:16],
                "compact": hashlib.sha256(small).hexdigest()[:16] if small else None,
                "deploy_calibrated": digest.hexdigest()[:16] if args.calibrated else None,
                "bitops": bitops(layers),
                "size": size_bytes(plain, candidate.policy),
                "bitfusion": table.predict(layers, 8),
                "synthetic": synthetic.evaluate(candidate).result.metrics,
                "summary": candidate.policy.summary(),
            }
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
