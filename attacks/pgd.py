"""PGD (Madry et al. 2018): random start in the ball, then projected gradient steps, with restarts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from advsec.attack import Attack, Loss, gradient_attack
from advsec.threat import ThreatModel


@dataclass
class PGD(Attack):
    """Projected gradient descent; restarts keep each sample's worst case."""

    reduced_search = True  # gradient_attack confirms every fooled sample in float32
    norms: ClassVar[tuple[str, ...]] = (*Attack.norms, "words")  # words: its projection makes PGD add-only
    targeted = True
    streams = True
    default_reach: ClassVar[float] = 2.5  # steps × step size ÷ eps when step_fraction is unset (Madry et al.)
    steps: int = 20
    step_fraction: float | None = None  # step size as a fraction of eps; default default_reach / steps
    restarts: int = 1
    random_start: bool = True
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
        fraction = self.step_fraction if self.step_fraction is not None else self.default_reach / self.steps
        return gradient_attack(
            model,
            x,
            y,
            threat,
            steps=self.steps,
            step_fraction=fraction,
            random_start=self.random_start,
            restarts=self.restarts,
            loss=self.loss,
            target=target,
            generator=generator,
            batch=self.batch,
        )
