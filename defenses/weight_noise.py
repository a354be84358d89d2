"""Weight noise: fresh noise on every weight at every forward, a random self-ensemble (Liu et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from advsec.defense import Bounds, Defense
from advsec.threat import random_tensor


class FrozenWeights(nn.Module):
    """``model`` run with a fixed set of replacement weights: one moment of a moving model, held still."""

    def __init__(self, model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.weights = {name: weight.detach() for name, weight in weights.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.weights, (x,))


class NoisyWeights(nn.Module):
    """Runs ``model`` with each parameter tensor perturbed by N(0, (sigma · its RMS)²), drawn per call."""

    def __init__(self, model: nn.Module, sigma: float) -> None:
        super().__init__()
        self.model = model
        self.sigma = sigma

    def noise(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One draw of the perturbation of every parameter tensor, by name."""
        return {
            name: self.sigma
            * weight.detach().pow(2).mean().sqrt()
            * random_tensor(weight.shape, weight, generator, normal=True)
            for name, weight in self.model.named_parameters()
        }

    def draw(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One draw of the noisy weights, by name."""
        noise = self.noise(generator)
        return {name: weight + noise[name] for name, weight in self.model.named_parameters()}

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return functional_call(self.model, self.draw(generator), (x,))

    def snapshot(self) -> nn.Module:
        """The model under the next draw of noise, held still."""
        return FrozenWeights(self.model, self.draw())


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
