"""Gaussian input noise at inference: a random defense that only looks robust to a naive attacker."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advsec.defense import Bounds, InputTransform
from advsec.threat import random_tensor


@dataclass
class GaussianNoise(InputTransform):
    """Adds N(0, sigma²) noise to every input before the model sees it (and trains on noisy inputs)."""

    stochastic = True

    sigma: float = 0.25

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")

    def transform(
        self, x: torch.Tensor, bounds: Bounds, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return x + self.sigma * random_tensor(x.shape, x, generator, normal=True)
