"""What every search space promises: samples build and run, genomes round-trip, bad archs are clear errors."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from cosearch.core import SpecError
from cosearch.search_spaces import SEARCH_SPACES, JointSpace


class SearchSpaceSuite:
    """Set `name` (the registry name), `params` (a small configuration: the suite builds networks)
    and `bad_arch` (an architecture the space must refuse), or override the fixtures of those names."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}
    bad_arch: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def space_name(self) -> str:
        return self.name

    @pytest.fixture
    def space_params(self, space_name) -> dict[str, Any]:
        return self.params

    @pytest.fixture
    def space_bad_arch(self, space_name) -> dict[str, Any]:
        return self.bad_arch

    @pytest.fixture
    def joint(self, space_name, space_params) -> JointSpace:
        return JointSpace(SEARCH_SPACES.create(space_name, **space_params))

    def test_sample_build_forward_and_slots(self, joint):
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

    def test_mutation_and_crossover_stay_inside(self, joint):
        rng = np.random.default_rng(1)
        a, b = joint.sample(rng), joint.sample(rng)
        for _ in range(20):
            assert joint.contains(joint.decode(joint.mutate(a, rng)))
            assert joint.contains(joint.decode(joint.crossover(a, b, rng)))

    def test_encode_decode_round_trip(self, joint):
        rng = np.random.default_rng(2)
        for _ in range(20):
            candidate = joint.decode(joint.sample(rng))
            assert joint.decode(joint.encode(candidate)).key == candidate.key

    def test_decode_equals_canonical_of_the_whole_policy(self, joint):
        # decode reads only the layer genes that stay live; canonical() is given every slot's policy.
        from cosearch.compressors import genes
        from cosearch.core.candidate import LayerPolicy

        rng = np.random.default_rng(3)
        for _ in range(10):
            sample = joint.sample(rng)
            layers = {
                slot: LayerPolicy(
                    {
                        name: sample[f"{gene.genome}:{slot}"]
                        for name, gene in genes("layer").items()
                        if f"{gene.genome}:{slot}" in sample
                    }
                )
                for slot in joint.space.all_slots()
            }
            network = {name: sample[gene.genome] for name, gene in genes("network").items() if gene.genome in sample}
            arch = joint.space.arch_from_sample(sample)
            assert joint.decode(sample) == joint.canonical(arch, layers, **network)

    def test_fair_samples_spread_every_decision_evenly(self, joint):
        """As many samples as the widest decision has options; each decision takes every option once
        when it has that many, and as evenly as the count allows otherwise (FairNAS)."""
        samples = joint.fair_samples(np.random.default_rng(4))
        count = max(len(c.options) for c in joint.choices())
        assert len(samples) == count and all(joint.contains(joint.decode(s)) for s in samples)
        for choice in joint.choices():
            taken = [sum(s[choice.name] == option for s in samples) for option in choice.options]
            assert set(taken) <= {count // len(choice.options), count // len(choice.options) + 1}, choice.name
        assert joint.fair_samples(np.random.default_rng(4)) == samples

    def test_seeded_sampler_repeats(self, joint):
        assert joint.sample(np.random.default_rng(3)) == joint.sample(np.random.default_rng(3))

    def test_bad_genotype_is_a_clear_error(self, joint, space_bad_arch):
        with pytest.raises(SpecError) as error:
            joint.space.validate_arch(space_bad_arch)
        assert "allowed" in str(error.value)

    def test_diagram_is_titled_acyclic_graphs(self, joint):
        import networkx as nx

        rng = np.random.default_rng(4)
        for _ in range(5):
            drawn = joint.space.diagram(joint.decode(joint.sample(rng)).arch)
            assert drawn, "diagram() returns at least one (title, graph)"
            for title, graph in drawn:
                assert isinstance(title, str) and title
                assert isinstance(graph, nx.DiGraph) and graph.number_of_nodes() >= 2
                assert nx.is_directed_acyclic_graph(graph), f"{title}: the report lays graphs out left to right"

    # --- weight sharing: only for a space whose `supernet` is implemented ----------------
    @pytest.fixture
    def supernet(self, joint):
        if not joint.space.has_supernet():
            pytest.skip(f"the {joint.space.registry_name!r} space has no supernet")
        pytest.importorskip("torch")
        return joint.space.supernet((1, 8, 8), 10)

    def test_an_extracted_subnet_computes_what_the_supernet_does_on_its_path(self, joint, supernet):
        import torch

        from cosearch.search_spaces.supernet import extract

        rng = np.random.default_rng(4)
        x = torch.randn(3, 1, 8, 8)
        supernet.eval()
        for _ in range(5):
            candidate = joint.decode(joint.sample(rng))
            subnet = extract(joint.space, supernet, candidate.arch, (1, 8, 8), 10).eval()
            supernet.choose(candidate.arch)
            with torch.no_grad():
                assert torch.allclose(subnet(x), supernet(x), atol=1e-5)
            assert not any(  # a copy: fine-tuning the subnet leaves the shared weights alone
                p.data_ptr() == q.data_ptr() for p in subnet.parameters() for q in supernet.parameters()
            )

    def test_structured_pruning_trains_the_subnet_that_keeping_each_groups_first_channels_gives(self, joint, supernet):
        """On a supernet with elastic channels, each technique that removes channels
        (`kept_channels`): the path it runs at a value computes what its extracted subnet computes
        once the technique's own reshape keeps every group's first channels (importance "first")."""
        import torch

        from cosearch.compressors import compressors, reshape
        from cosearch.search_spaces import JointSpace
        from cosearch.search_spaces.supernet import extract, path_logits

        if not joint.space.elastic_channels:
            pytest.skip(f"the {joint.space.registry_name!r} supernet has no elastic channels")
        for m in supernet.modules():  # statistics that differ per channel, so a wrong slice shows
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
        supernet.eval()
        rng, x = np.random.default_rng(5), torch.randn(3, 1, 8, 8)
        pruning = [name for name, technique in compressors().items() if technique.removes_channels]
        assert pruning, "elastic channels, but no technique removes channels"
        for name in pruning:
            for value in (0.25, 0.5):
                joint_pruned = JointSpace(joint.space, **{name: (value,)})
                candidate = joint_pruned.extreme(joint_pruned.decode(joint_pruned.sample(rng)).arch)  # others off
                subnet = extract(joint.space, supernet, candidate.arch, (1, 8, 8), 10)
                pruned = reshape(subnet, candidate.policy, (1, 8, 8), "first").eval()
                assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in subnet.parameters())
                with torch.no_grad():
                    assert torch.allclose(pruned(x), path_logits(supernet, candidate, x), atol=1e-5)

    def test_elastic_compression_reaches_every_slot_and_trains_the_shared_weights(self, joint, supernet):
        import torch

        from cosearch.core.candidate import LayerPolicy, Policy
        from cosearch.search_spaces.supernet import elastic_weights, path_logits

        candidate = joint.decode(joint.sample(np.random.default_rng(5)))
        slots = joint.space.layer_slots(candidate.arch)
        policy = Policy({slot: LayerPolicy({"weight_bits": 4, "sparsity": 0.5}) for slot in slots})
        compressed = type(candidate)(candidate.arch, policy)
        supernet.choose(candidate.arch)
        weights = elastic_weights(supernet, compressed)
        assert len(weights) >= len(slots)  # a slot may hold several layers
        for name, weight in weights.items():
            assert float((weight == 0).float().mean()) >= 0.45, name  # half masked (ties may add zeros)
            per_channel = weight.detach().flatten(1)
            assert all(len(torch.unique(row)) <= 15 for row in per_channel), name  # on a 4-bit grid
        x = torch.randn(2, 1, 8, 8)
        path_logits(supernet, compressed, x).sum().backward()
        shared = dict(supernet.named_parameters())
        assert all(shared[n].grad is not None for n in weights if n in shared)  # by supernet name, where shared as is
        assert sum(p.grad is not None and bool(p.grad.any()) for p in shared.values()) >= len(slots)

        # Input bits: every layer of the path reads its input at 4 bits; nothing stays changed after.
        from cosearch.search_spaces.supernet import elastic_inputs

        coarse = type(candidate)(candidate.arch, Policy({slot: LayerPolicy({"activation_bits": 4}) for slot in slots}))
        assert not elastic_weights(supernet, coarse) and len(elastic_inputs(supernet, coarse)) >= len(slots)
        supernet.eval()
        plain = type(candidate)(candidate.arch, Policy({}))
        with torch.no_grad():
            before = path_logits(supernet, plain, x)
            assert not torch.allclose(path_logits(supernet, coarse, x), before, atol=1e-4)
            assert torch.equal(path_logits(supernet, plain, x), before)  # its input hooks are gone
