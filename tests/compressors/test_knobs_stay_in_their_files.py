"""A compression knob is named only by its own technique: everything else reads the registry.

The rest of the package reaches a technique through its declarations (`Gene`, `precision_of`,
`zeroed_share`, `weight_cost`, ...), so adding or changing one touches one file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cosearch.compressors import (
    Precision,
    compressors,
    layer_precision,
    precision_genes,
    runs_integer,
    zeroed_share,
)
from cosearch.core.candidate import LayerPolicy, Policy

PACKAGE = Path(__file__).resolve().parents[2] / "cosearch"
# Each technique's torch side, and the conformance suites (tests a plug-in inherits).
OWN = {
    "compressors/techniques",
    "compressors/activations.py",
    "compressors/prune.py",
    "compressors/quantize.py",
    "compressors/channels.py",
    "compressors/hashing.py",
    "compressors/lowrank.py",
    "testing",
}
# The analytic device's own job field: the width the accelerator runs float inputs at, named so
# since that device kind exists (stored jobs and the README use it); not the knob.
HOMONYMS = {("hardware/devices/analytic.py", "activation_bits")}
MODULE_PATH = re.compile(r"techniques\.\w+")  # a technique's module, as the package re-exports its names


def test_no_module_outside_a_technique_names_a_knob():
    names = list(compressors())
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if any(where == own or where.startswith(own + "/") for own in OWN):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if where == "compressors/__init__.py" and MODULE_PATH.search(line):
                continue
            found += [
                f"{where}:{number}: {name}"
                for name in names
                if re.search(rf"\b{name}\b", line) and (where, name) not in HOMONYMS
            ]
    assert not found, "knob names outside their technique:\n" + "\n".join(found)


def test_each_width_is_set_by_one_technique_and_read_through_precision():
    widths = precision_genes()
    assert set(widths) == {"weights", "inputs"}
    weights, inputs = widths["weights"], widths["inputs"]
    assert layer_precision(LayerPolicy()) == Precision()
    both = layer_precision(LayerPolicy({weights: 4, inputs: 8}))
    assert both == Precision(weights=4, inputs=8) and both.integer and not both.weight_only
    assert layer_precision(LayerPolicy({weights: 4})).weight_only
    assert not runs_integer(Policy({"0": LayerPolicy({weights: 4})}))
    assert runs_integer(Policy({"0": LayerPolicy(), "1": LayerPolicy({inputs: 4})}))


@pytest.mark.parametrize("share", [0.0, 0.3, 0.75])
def test_the_zeroed_share_is_the_techniques_own_value(share):
    (zeroing,) = [name for name, c in compressors().items() if c.zeroed_share(0.5) != 0.0]
    assert zeroed_share(LayerPolicy({zeroing: share})) == share  # exactly: stand-in metrics stay as they were
