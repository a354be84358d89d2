"""Weight noise: fresh noise on every weight at every forward, a random self-ensemble (Liu et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from advsec.defense import Bounds, Defense
from advsec.threat import random_tensor


class NoisyWeights(nn.Module):
    """Runs ``model`` with each parameter tensor perturbed by N(0, (sigma · its RMS)²), drawn per call."""

    def __init__(self, model: nn.Module, sigma: float) -> None:
        super().__init__()
        self.model = model
        self.sigma = sigma

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noisy = {}
        for name, weight in self.model.named_parameters():
            scale = self.sigma * weight.detach().pow(2).mean().sqrt()
            noisy[name] = weight + scale * random_tensor(weight.shape, weight, generator, normal=True)
        return functional_call(self.model, noisy, (x,))


@dataclass
class WeightNoise(Defense):
    """Trained and deployed with weights perturbed afresh at every forward: a model that never sits still.

    ``sigma`` is relative to each parameter tensor's root-mean-square, so one value suits every layer.
    """

    stochastic = True

    sigma: float = 0.1

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        generator: torch.Generator | None = None,
        progress: float = 1.0,
    ) -> torch.Tensor:
        return F.cross_entropy(NoisyWeights(model, self.sigma)(x, generator), y)

    def wrap(self, model: nn.Module, *, bounds: Bounds) -> nn.Module:
        return NoisyWeights(model, self.sigma)
