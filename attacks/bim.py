"""BIM (Kurakin, Goodfellow & Bengio 2016): iterated FGSM from the clean input, no random start."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack, Loss, gradient_attack
from advsec.threat import ThreatModel


@dataclass
class BIM(Attack):
    """Basic iterative method: small signed-gradient steps from x, projected after each."""

    targeted = True
    steps: int = 10
    step_fraction: float | None = (
        None  # step size as a fraction of eps; default 1.25 / steps (Kurakin et al.)
    )
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
        fraction = self.step_fraction if self.step_fraction is not None else 1.25 / self.steps
        return gradient_attack(
            model,
            x,
            y,
            threat,
            steps=self.steps,
            step_size=fraction * threat.eps,
            loss=self.loss,
            target=target,
        )
