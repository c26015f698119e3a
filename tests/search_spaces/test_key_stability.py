"""Candidate keys and genomes are frozen: stored runs, caches and benchmark tables depend on them.

The expected digests were computed before compression became plug-ins (commit 83bde09) and are
committed in data/stable_keys.json. A failure here means stored run directories would no
longer match their candidates; regenerate (`python tests/search_spaces/test_key_stability.py`)
only when an issue says keys may change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cosearch.core.candidate import canonical_json
from cosearch.search_spaces import SEARCH_SPACES, JointSpace

EXPECTED = Path(__file__).parent / "data" / "stable_keys.json"
SMALL = {
    "nb201": {"channels": 4, "cells_per_stage": 1},
    "darts": {"channels": 4, "layers": 3},
    "enas": {"channels": 4, "layers": 6},
    "mobilenet": {"stage_channels": [8, 16], "stage_strides": [1, 2], "depths": [1, 2], "head_channels": 32},
}
# Compression option lists, by JointSpace keyword: the default, single options (float and not),
# and every knob with several options at once.
CONFIGS = {
    "default": {},
    "float": {"weight_bits": (32,), "sparsity": (0.0,)},
    "w8": {"weight_bits": (8,), "sparsity": (0.5,)},
    "a8": {"weight_bits": (8,), "sparsity": (0.0,), "activation_bits": (8,)},
    "lowrank": {"weight_bits": (32,), "sparsity": (0.0,), "rank_ratio": (0.5,)},
    "hashed": {"weight_bits": (32,), "sparsity": (0.0,), "hash_ratio": (0.25,)},
    "network": {"weight_bits": (32,), "sparsity": (0.0,), "distill_alpha": (0.5,), "channel_ratio": (0.25,)},
    "multi": {
        "weight_bits": (2, 4, 8, 32),
        "sparsity": (0.0, 0.25, 0.5),
        "activation_bits": (4, 8, 32),
        "rank_ratio": (0.25, 0.5, 1.0),
        "hash_ratio": (0.25, 1.0),
        "distill_alpha": (0.0, 0.5),
        "channel_ratio": (0.0, 0.25),
    },
}
SAMPLES = 120  # per space and config, each with a mutant, a crossover and an encode/decode round trip


def digests(space_name: str, config: str) -> dict[str, object]:
    joint = JointSpace(SEARCH_SPACES.create(space_name, **SMALL[space_name]), **CONFIGS[config])
    rng = np.random.default_rng(sum(map(ord, space_name + config)))
    keys, jsons = [], hashlib.sha256()
    previous = joint.sample(rng)
    for _ in range(SAMPLES):
        sample = joint.sample(rng)
        for child in (sample, joint.mutate(sample, rng), joint.crossover(sample, previous, rng)):
            candidate = joint.decode(child)
            keys.append(candidate.key)
            keys.append(joint.decode(joint.encode(candidate)).key)
            jsons.update(candidate.json_text.encode())
            jsons.update(candidate.policy.summary().encode())
        previous = sample
    genome = [[c.name, list(c.options), c.group] for c in joint.choices()]
    return {
        "keys": hashlib.sha256(" ".join(keys).encode()).hexdigest(),
        "json_and_summaries": jsons.hexdigest(),
        "genome": hashlib.sha256(canonical_json(genome).encode()).hexdigest(),
        "first_keys": keys[:4],
    }


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("space_name", sorted(SMALL))
def test_keys_genomes_and_summaries_are_unchanged(space_name, config):
    expected = json.loads(EXPECTED.read_text())[f"{space_name}/{config}"]
    assert digests(space_name, config) == expected


if __name__ == "__main__":
    table = {f"{s}/{c}": digests(s, c) for s in sorted(SMALL) for c in sorted(CONFIGS)}
    EXPECTED.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(table)} digests to {EXPECTED}")
