"""Band noise: an audio perturbation confined to one frequency band, heard as faint rustling, not clicks.

Projected gradient ascent in which every step keeps the perturbation inside the band: the gradient is
band-passed (an FFT mask along time), scaled to a fraction of the budget, added, band-passed again, and the
whole perturbation is rescaled into the threat model's ball — a uniform rescale keeps the band, where a
coordinate-wise linf clip would spill out of it. The band is given as fractions of the Nyquist frequency
(``low``, ``high``), so it means the same at any sample rate: 0.5–1.0 of 8 kHz audio is 2–4 kHz.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack, Loss, gradient_attack
from advsec.threat import ThreatModel, norm_of

_TINY = 1e-12


def band_pass(t: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``t`` with every frequency along its last axis outside [low, high] × Nyquist removed."""
    spectrum = torch.fft.rfft(t, dim=-1)
    where = torch.linspace(0, 1, spectrum.shape[-1], device=t.device)
    keep = (where >= low) & (where <= high)
    return torch.fft.irfft(spectrum * keep, n=t.shape[-1], dim=-1)


def check_band(low: float, high: float) -> None:
    if not 0 <= low < high <= 1:
        raise ValueError(f"expected 0 <= low < high <= 1 (fractions of Nyquist), got {low}, {high}")


@dataclass
class BandAscent:
    """Steps of ``step_size`` (per sample, in the threat model's geometry) that never leave the band."""

    threat: ThreatModel
    step_size: torch.Tensor
    low: float
    high: float

    def step(
        self, t: int, x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        geometry = self.threat.geometry
        direction = band_pass(grad, self.low, self.high)
        step = direction * self.step_size / norm_of(direction, geometry).clamp_min(_TINY)
        delta = band_pass(x_adv - x + step, self.low, self.high)
        delta = delta * (self.threat.radius(x) / norm_of(delta, geometry).clamp_min(_TINY)).clamp(max=1.0)
        return self.threat.project(x, x + delta)  # within the ball already; this clips to the bounds

    def keep(self, mask: torch.Tensor) -> None:
        self.step_size = self.step_size[mask]


@dataclass
class BandNoise(Attack):
    """PGD restricted to one frequency band (fractions of Nyquist); untargeted or targeted."""

    targeted = True
    modalities = ("audio",)

    low: float = 0.5
    high: float = 1.0
    steps: int = 40
    step_fraction: float = 0.1  # of the budget per step
    loss: Loss = "ce"

    def __post_init__(self) -> None:
        check_band(self.low, self.high)

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return gradient_attack(
            model,
            x,
            y,
            threat,
            steps=self.steps,
            stepper=lambda x0: BandAscent(
                threat, self.step_fraction * threat.radius(x0), self.low, self.high
            ),
            loss=self.loss,
            target=target,
        )
