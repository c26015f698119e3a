"""Every registered search space passes the same suite (add a small config here for a new one)."""

from __future__ import annotations

import numpy as np
import pytest

from cosearch.core import SpecError
from cosearch.search_spaces import SEARCH_SPACES, JointSpace

SMALL = {
    "nb201": {"channels": 4, "cells_per_stage": 1},
    "darts": {"channels": 4, "layers": 3},
    "enas": {"channels": 4, "layers": 6},
    "mobilenet": {"stage_channels": [8, 16], "stage_strides": [1, 2], "depths": [1, 2], "head_channels": 32},
}
BAD_ARCH = {
    "nb201": {"cell": "|nor_conv_3x3~0|+|conv_9x9~0|none~1|+|none~0|none~1|none~2|"},
    "darts": {
        "genotype": "Genotype(normal=[('sep_conv_3x3', 7)], normal_concat=[2, 3, 4, 5], reduce=[], reduce_concat=[2, 3, 4, 5])"
    },
    "enas": {"ops": ["conv_3x3"] * 5 + ["conv_7x7"], "skips": [[]] * 6},
    "mobilenet": {"width": 1.0, "stages": [[{"kernel": 9, "expand": 4}], [{"kernel": 3, "expand": 4}]]},
}
NAMES = SEARCH_SPACES.names()


def test_every_space_has_a_small_config():
    assert sorted(SMALL) == NAMES and sorted(BAD_ARCH) == NAMES


@pytest.fixture(params=NAMES)
def joint(request):
    return JointSpace(SEARCH_SPACES.create(request.param, **SMALL[request.param]))


def test_sample_build_forward_and_slots(joint):
    torch = pytest.importorskip("torch")
    from cosearch.compressors import compress, compression_slots, layers_of_slot

    rng = np.random.default_rng(0)
    for _ in range(3):
        candidate = joint.decode(joint.sample(rng))
        model = joint.space.build(candidate.arch, (1, 8, 8), 10)
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
        slots = joint.space.layer_slots(candidate.arch)
        assert set(candidate.policy.layers) == set(slots)
        covered = [name for slot in slots for name in layers_of_slot(model, slot)]
        assert sorted(covered) == sorted(compression_slots(model))  # every layer in exactly one slot
        assert compress(model, candidate.policy)(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_mutation_and_crossover_stay_inside(joint):
    rng = np.random.default_rng(1)
    a, b = joint.sample(rng), joint.sample(rng)
    for _ in range(20):
        assert joint.contains(joint.decode(joint.mutate(a, rng)))
        assert joint.contains(joint.decode(joint.crossover(a, b, rng)))


def test_encode_decode_round_trip(joint):
    rng = np.random.default_rng(2)
    for _ in range(20):
        candidate = joint.decode(joint.sample(rng))
        assert joint.decode(joint.encode(candidate)).key == candidate.key


def test_decode_equals_canonical_of_the_whole_policy(joint):
    # decode reads only the layer genes that stay live; canonical() is given every slot's policy.
    from cosearch.core.candidate import LayerPolicy

    rng = np.random.default_rng(3)
    for _ in range(10):
        sample = joint.sample(rng)
        layers = {
            slot: LayerPolicy(weight_bits=sample[f"bits:{slot}"], sparsity=sample[f"sparsity:{slot}"])
            for slot in joint.space.all_slots()
        }
        arch = joint.space.arch_from_sample(sample)
        network = {"distill_alpha": sample["distill_alpha"], "channel_ratio": sample["channel_ratio"]}
        assert joint.decode(sample) == joint.canonical(arch, layers, **network)


def test_seeded_sampler_repeats(joint):
    assert joint.sample(np.random.default_rng(3)) == joint.sample(np.random.default_rng(3))


def test_bad_genotype_is_a_clear_error(joint):
    with pytest.raises(SpecError) as error:
        joint.space.validate_arch(BAD_ARCH[joint.space.registry_name])
    assert "allowed" in str(error.value)
