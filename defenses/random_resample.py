"""Random resampling: each clip is played at a random lower sample rate and back, a random audio transform.

Resampling down to a fraction ``r`` of the rate and back up removes what lies above ``r`` × Nyquist (the
anti-aliasing low-pass any resampler applies first) and smears the rest (linear interpolation both ways).
A fresh ``r`` per clip and per call makes the model random, so it must be evaluated with EOT (Athalye et
al. 2018), as the image transforms are. It is differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from advsec.defense import Bounds, InputTransform
from advsec.errors import InputError
from advsec.threat import random_tensor


@dataclass
class RandomResample(InputTransform):
    """Resamples each clip to a random rate in [min_rate, 1] of its own and back (linear interpolation)."""

    stochastic = True
    modalities = ("audio",)

    min_rate: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.min_rate <= 1:
            raise ValueError(f"min_rate must be in (0, 1], got {self.min_rate}")

    def transform(
        self, x: torch.Tensor, bounds: Bounds, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if x.dim() != 3:
            raise InputError(
                f"random-resample needs waveforms shaped (N, channels, samples), got {tuple(x.shape)}"
            )
        length = x.shape[-1]
        rates = self.min_rate + (1 - self.min_rate) * random_tensor((len(x),), x, generator)
        spectrum = torch.fft.rfft(x, dim=-1)
        where = torch.linspace(0, 1, spectrum.shape[-1], device=x.device)
        x = torch.fft.irfft(spectrum * (where <= rates.view(-1, 1, 1)), n=length, dim=-1)  # anti-aliasing
        resampled = []
        for clip, rate in zip(x, rates.tolist(), strict=True):  # each clip has its own intermediate length
            low = F.interpolate(
                clip[None], size=max(2, round(rate * length)), mode="linear", align_corners=True
            )
            resampled.append(F.interpolate(low, size=length, mode="linear", align_corners=True))
        return torch.cat(resampled).clamp(*bounds)
