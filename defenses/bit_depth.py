"""Bit-depth reduction (Xu, Evans & Qi 2018, "feature squeezing"): quantize every input before the model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advsec.defense import Bounds, InputTransform


@dataclass
class BitDepth(InputTransform):
    """Rounds each input value to one of 2^bits levels across the input bounds.

    Rounding has zero gradient almost everywhere, so a naive gradient attack gets no signal and the
    defense looks robust; BPDA (straight-through gradient) shows what it is worth. On audio it is the
    sample resolution: 8 bits over [-1, 1] is a step of 2/255.
    """

    differentiable = False

    bits: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 16:
            raise ValueError(f"bits must be between 1 and 16, got {self.bits}")

    def transform(
        self, x: torch.Tensor, bounds: Bounds, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        low, high = bounds
        levels = 2**self.bits - 1
        return low + torch.round((x - low) / (high - low) * levels) / levels * (high - low)
