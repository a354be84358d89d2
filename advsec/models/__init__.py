"""Built-in models: plain ``nn.Module`` classifiers returning logits, sized from the dataset.

Each is registered in the ``advsec.models`` entry-point group and built as
``Model(input_shape, num_classes)``.
Convolutions use "same" padding so the same architecture runs on 8x8 digits and 28x28 MNIST.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _flat_size(features: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, *input_shape)).numel()


class MLP(nn.Sequential):
    """Two hidden layers of 256 ReLU units."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 256) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )


class _ConvNet(nn.Sequential):
    def __init__(
        self, features: nn.Sequential, input_shape: tuple[int, ...], head: list[int], num_classes: int
    ):
        layers: list[nn.Module] = [*features, nn.Flatten()]
        width = _flat_size(features, input_shape)
        for units in head:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        super().__init__(*layers, nn.Linear(width, num_classes))


class LeNet(_ConvNet):
    """LeNet-5 style: conv6-5x5, pool, conv16-5x5, pool, fc120, fc84."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        channels = input_shape[0]
        features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        super().__init__(features, input_shape, [120, 84], num_classes)


class MadryCNN(_ConvNet):
    """Madry et al.'s MNIST model: conv32-5x5, pool, conv64-5x5, pool, fc1024."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        channels = input_shape[0]
        features = nn.Sequential(
            nn.Conv2d(channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        super().__init__(features, input_shape, [1024], num_classes)


class WongCNN(_ConvNet):
    """Wong, Rice & Kolter's small MNIST model: conv16-4x4/2, conv32-4x4/2, fc100."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        channels = input_shape[0]
        features = nn.Sequential(
            nn.Conv2d(channels, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        super().__init__(features, input_shape, [100], num_classes)
