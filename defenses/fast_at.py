"""Fast adversarial training (Wong, Rice & Kolter 2020): FGSM from a random start, guarded from collapse."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import gradient_attack
from advsec.defense import Bounds
from advsec.defenses.pgd_at import PGDAdversarialTraining
from advsec.threat import ThreatModel


@dataclass
class FastAdversarialTraining(PGDAdversarialTraining):
    """One random-start FGSM step of 1.25 eps per batch; a PGD check each epoch catches a collapse.

    Single-step training can suddenly learn to defeat FGSM alone while PGD accuracy falls to zero. The
    check attacks ``guard_samples`` held-out training samples with PGD-``guard_steps``; a drop of more than
    ``guard_drop`` below the best epoch restores that epoch and stops (their early stopping).
    Pair it with ``schedule = "cyclic"`` in ``[train]``, as the paper does.
    """

    steps: int = 1
    step_fraction: float | None = 1.25
    random_start: bool = True
    guard_samples: int = 256
    guard_steps: int = 10
    guard_drop: float = 0.2

    def check(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        generator: torch.Generator,
    ) -> float:
        threat = ThreatModel(self.norm, self.eps, bounds)
        x_adv = gradient_attack(
            model,
            x,
            y,
            threat,
            steps=self.guard_steps,
            step_size=2.5 * self.eps / self.guard_steps,
            random_start=True,
            generator=generator,
        )
        with torch.no_grad():
            return (model(x_adv).argmax(1) == y).float().mean().item()
