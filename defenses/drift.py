"""Drift: a model that keeps moving over time, its weights wandering slowly around the trained ones."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from advsec.defense import Bounds
from advsec.defenses.weight_noise import FrozenWeights, NoisyWeights, WeightNoise


class Drifting(nn.Module):
    """Trained weights plus an offset that walks (Ornstein–Uhlenbeck), one step per queried sample.

    The walk's stationary spread is weight noise's (``sigma`` × each tensor's RMS), so the model is as
    accurate at any moment as under weight noise; but it forgets where it was with a half-life of
    ``half_life`` queried samples, so queries close in time meet nearly the same model and distant ones a
    different model. A query batch is answered by the weights of the moment it arrives.
    """

    def __init__(self, model: nn.Module, sigma: float, half_life: float) -> None:
        super().__init__()
        self.noisy = NoisyWeights(model, sigma)
        self.decay = 0.5 ** (1 / half_life)
        self._offsets: dict[str, torch.Tensor] | None = None  # drawn at the first query

    @property
    def offsets(self) -> dict[str, torch.Tensor]:
        """Where the walk is now, relative to the trained weights (it starts anywhere in its spread)."""
        if self._offsets is None:
            self._offsets = self.noisy.noise()
        return self._offsets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = functional_call(self.noisy.model, self.weights(), (x,))
        self.advance(len(x))
        return output

    def weights(self) -> dict[str, torch.Tensor]:
        return {name: w + self.offsets[name] for name, w in self.noisy.model.named_parameters()}

    @torch.no_grad()
    def advance(self, steps: int) -> None:
        """``steps`` steps of the walk at once: its exact transition, so the batch size does not matter."""
        keep = self.decay**steps
        fresh = self.noisy.noise()
        renew = math.sqrt(1 - keep**2)
        self._offsets = {name: keep * offset + renew * fresh[name] for name, offset in self.offsets.items()}

    def snapshot(self) -> nn.Module:
        """The model at this moment, held still."""
        return FrozenWeights(self.noisy.model, self.weights())


@dataclass
class Drift(WeightNoise):
    """Weights that keep drifting while deployed, and clean accuracy that stays: a slowly moving target.

    Trained under weight noise of the drift's spread ``sigma``; deployed, the weights wander with a
    half-life of ``half_life`` queried samples, so an adversarial example found today meets a different
    model later. Stateful (the model depends on how many queries came before) and stochastic.
    """

    stateful = True

    half_life: float = 1000.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.half_life > 0:
            raise ValueError(f"half_life must be > 0, got {self.half_life}")

    def wrap(self, model: nn.Module, *, bounds: Bounds) -> nn.Module:
        return Drifting(model, self.sigma, self.half_life)
