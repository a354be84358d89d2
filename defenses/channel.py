"""The model deployed behind a simulated acoustic channel: it hears clips through a random room."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.channel import Channel
from advsec.defense import Bounds, Defense, InputTransform


@dataclass
class ChannelDefense(InputTransform):
    """Every clip reaches the model through a fresh draw of :class:`advsec.channel.Channel` (gain, delay,
    reverberation, background noise at ``snr_low``–``snr_high`` dB), in training too unless
    ``train_through`` is off. Not a defense so much as a deployment condition: an attack must survive it to
    work over the air."""

    stochastic = True
    modalities = ("audio",)

    snr_low: float = 20.0
    snr_high: float = 40.0
    # False: train exactly as `standard` does, so the same weights are measured with and without the room.
    train_through: bool = True

    def __post_init__(self) -> None:
        if not self.snr_low <= self.snr_high:
            raise ValueError(f"expected snr_low <= snr_high, got {self.snr_low}, {self.snr_high}")

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
        if self.train_through:
            return super().loss(model, x, y, bounds=bounds, generator=generator, progress=progress)
        return Defense.loss(self, model, x, y, bounds=bounds)  # standard training

    def transform(
        self, x: torch.Tensor, bounds: Bounds, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return Channel(snr_db=(self.snr_low, self.snr_high))(x, generator)
