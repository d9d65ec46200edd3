"""A model of the tests' own for --model (tests/test_models.py): small enough to run a quick run in seconds on 2 cores."""

from __future__ import annotations

from torch import nn


def build(num_classes: int = 10) -> nn.Module:
    """A convolution, a pooling to 4x4 and a linear layer: takes any 1-4 channel image of 4x4 or larger."""
    return nn.Sequential(
        nn.LazyConv2d(8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, num_classes),
    )


def not_a_model() -> str:
    return "a string"


def raises() -> nn.Module:
    raise RuntimeError("the user's builder failed")


def three_channels(num_classes: int = 10) -> nn.Module:
    """A lazy model that takes 3 channels only: its weights are made by a first forward pass."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(num_classes))
