"""A network as a user's own code would define it, for tests of the `module` search space."""

from __future__ import annotations


def small_cnn(num_classes: int = 10, in_chans: int = 3):
    """conv-bn-relu x2 (the second strided), global pool, linear: what `search_space: {name: module,
    factory: "cosearch.testing.models:small_cnn"}` builds."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_chans, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def not_a_network(num_classes: int = 10):
    """A factory that returns something else (the `module` space refuses it)."""
    return {"classes": num_classes}
