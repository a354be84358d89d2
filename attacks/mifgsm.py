"""MI-FGSM (Dong et al. 2018): iterative FGSM along an accumulated gradient, to escape poor local maxima."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack, Loss, MomentumAscent, gradient_attack
from advsec.threat import ThreatModel


@dataclass
class MIFGSM(Attack):
    """Momentum iterative FGSM: g ← μ·g + ∇/‖∇‖₁, then a signed (linf) or normalized (l2) step along g."""

    reduced_search = True  # gradient_attack confirms every fooled sample in float32
    targeted = True
    steps: int = 10
    decay: float = 1.0  # μ
    step_fraction: float | None = None  # step size as a fraction of eps; default 1 / steps (Dong et al.)
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
        fraction = self.step_fraction if self.step_fraction is not None else 1 / self.steps
        return gradient_attack(
            model,
            x,
            y,
            threat,
            steps=self.steps,
            stepper=lambda x0: MomentumAscent(threat, fraction * threat.radius(x0), self.decay),
            loss=self.loss,
            target=target,
        )
