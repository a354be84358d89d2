"""Defenses that hide their tricks behind a deterministic, differentiable, stateless declaration.

They are what advsec's flags that act are tested against (evaluations/escalation-mnist.toml, and
tests/test_escalation.py on digits): each deploys the standard network, only its trick and what it declares
about itself differ. The "declared" twins say truthfully what they are, so advsec attacks them adaptively
from the start: their robust accuracy is the honest worst case a hidden trick's escalated one is held to.
Each hidden trick names that twin (``honest_twin``): saturation and memory give the bare network's answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from advsec.defense import Bounds, Defense
from advsec.defenses.bit_depth import BitDepth
from advsec.defenses.gaussian_noise import GaussianNoise


@dataclass
class HiddenRounding(BitDepth):
    """1-bit inputs, declared differentiable: its zero gradient is hidden."""

    honest_twin: ClassVar[str] = "declared-rounding"
    differentiable = True
    trained_like = "standard"


@dataclass
class DeclaredRounding(BitDepth):
    """1-bit inputs, declared non-differentiable: attacked through BPDA from the start."""

    trained_like = "standard"


@dataclass
class HiddenNoise(GaussianNoise):
    """Gaussian input noise, declared deterministic."""

    honest_twin: ClassVar[str] = "declared-noise"
    stochastic = False
    certifiable = False
    trained_like = "standard"


@dataclass
class DeclaredNoise(GaussianNoise):
    """Gaussian input noise, declared random: attacked through an expectation over draws from the start."""

    trained_like = "standard"


class Saturated(nn.Module):
    """The same predictions, logits scaled by 10,000: cross-entropy's gradient underflows to zero."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * 1e4


@dataclass
class HiddenSaturation(Defense):
    """Saturated logits, declared an ordinary differentiable model."""

    honest_twin: ClassVar[str] = "standard"
    trained_like = "standard"

    def wrap(self, model: nn.Module, *, bounds: Bounds) -> nn.Module:
        return Saturated(model)


class Memory(nn.Module):
    """Answers a query within ``radius`` (linf) of an earlier one as it answered that one."""

    def __init__(self, model: nn.Module, radius: float) -> None:
        super().__init__()
        self.model = model
        self.radius = radius
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.seen:
            keys, answers = (torch.cat(parts) for parts in zip(*self.seen, strict=True))
            nearest, index = torch.cdist(x.flatten(1), keys.flatten(1), p=float("inf")).min(1)
            hit = nearest <= self.radius
            out = torch.where(hit[:, None], answers[index] + 0 * out, out)
        else:
            hit = torch.zeros(len(x), dtype=torch.bool)
        self.seen.append((x.detach()[~hit], out.detach()[~hit]))
        return out


@dataclass
class HiddenMemory(Defense):
    """Remembers its queries and repeats its old answers near them, declared stateless."""

    honest_twin: ClassVar[str] = "standard"
    trained_like = "standard"
    radius: float = 0.15

    def wrap(self, model: nn.Module, *, bounds: Bounds) -> nn.Module:
        return Memory(model, self.radius)
