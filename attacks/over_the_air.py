"""Over the air: PGD through the expectation over simulated rooms, so the perturbation survives playback."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack, Loss, gradient_attack
from advsec.channel import Channel
from advsec.threat import ThreatModel


class ThroughChannel(nn.Module):
    """``model`` hearing its input through a fresh draw of the channel at every call."""

    def __init__(self, model: nn.Module, channel: Channel) -> None:
        super().__init__()
        self.model, self.channel = model, channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.channel(x))


@dataclass
class OverTheAir(Attack):
    """PGD whose every gradient averages ``draws`` simulated rooms (EOT over :class:`advsec.channel.Channel`:
    gain, delay, reverberation, noise at ``snr_low``–``snr_high`` dB), run for all its steps. Scored on a
    model deployed as is, it measures the attack without the channel; on the ``channel`` defense, with it."""

    targeted = True
    modalities = ("audio",)

    steps: int = 40
    step_fraction: float = 0.1
    draws: int = 8
    snr_low: float = 20.0
    snr_high: float = 40.0
    loss: Loss = "ce"

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
        heard = ThroughChannel(model, Channel(snr_db=(self.snr_low, self.snr_high)))
        # All steps, and the last iterate: a point that barely fools one average would not survive a room.
        return gradient_attack(heard, x, y, threat, steps=self.steps, step_fraction=self.step_fraction,
                               eot=self.draws, loss=self.loss, target=target, keep_worst=False)  # fmt: skip
