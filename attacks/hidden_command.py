"""Hidden command: noise, or a plain tone, that the model hears as a chosen class and a person would not.

After Carlini et al. (2016, "Hidden Voice Commands"), white-box: start from a non-speech carrier and search,
as :mod:`audio-targeted <advsec.attacks.audio_targeted>` does, for a perturbation at least ``below`` dB
under the carrier's peak that makes the model hear the target. The result is not a perturbed test clip,
so it is unrestricted: advsec scores it apart from robust accuracy (:mod:`advsec.unrestricted`), and plays
it to a second, independently trained model, a stand-in for a human listener. The listener should not
hear the target; if it does, the search produced real speech rather than a hidden command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from advsec.attacks.audio_targeted import AudioTargeted
from advsec.threat import ThreatModel, random_tensor


@dataclass
class HiddenCommand(AudioTargeted):
    """A carrier (white noise or a tone) perturbed until the model hears the target class."""

    unrestricted = True

    carrier: Literal["noise", "tone"] = "noise"
    level: float = 0.3  # the carrier's peak amplitude
    below: float = 10.0  # dB: the perturbation's peak at least this far under the carrier's
    listener: str = (
        ""  # the listener's model architecture; "" is the attacked one's, trained from another seed
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.level <= 1:
            raise ValueError(f"level must be in (0, 1], got {self.level}")

    def carriers(self, n: int, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` carriers shaped like one input of ``like``, each at peak ``level``."""
        shape = (n, *like.shape[1:])
        if self.carrier == "noise":
            wave = 2 * random_tensor(shape, like, generator) - 1
        else:  # a tone between 1/64 and 1/8 of the sample rate (125–1000 Hz at 8 kHz), random phase
            draws = random_tensor((n, 2), like, generator)
            cycles = (1 / 64 + (1 / 8 - 1 / 64) * draws[:, :1]) * 2 * math.pi
            t = torch.arange(shape[-1], dtype=like.dtype, device=like.device)
            wave = torch.sin(cycles * t + 2 * math.pi * draws[:, 1:]).view(shape)
        return self.level * wave / wave.flatten(1).abs().amax(1).view(-1, *[1] * (len(shape) - 1))

    def bound(self, bounds: tuple[float, float]) -> ThreatModel:
        """How far the search may move a carrier: ``below`` dB under its peak, within the input bounds."""
        return ThreatModel("db", self.below, bounds)
