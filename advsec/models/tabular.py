"""Tabular models: inputs stay in the data's raw units (an attack's budget is counted in them); the model
normalizes inside."""

from __future__ import annotations

import math

import torch
from torch import nn


class Log1p(nn.Module):
    """``log(1 + x)``: compresses heavy-tailed non-negative counts and frequencies (Spambase's capital runs
    reach 15,841) without statistics of the training data, so a checkpoint carries its own scaling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x.clamp_min(0.0))


class TabularMLP(nn.Sequential):
    """log1p of each feature, then two hidden layers of ``hidden`` ReLU units."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 64) -> None:
        super().__init__(
            nn.Flatten(),
            Log1p(),
            nn.Linear(math.prod(input_shape), hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
