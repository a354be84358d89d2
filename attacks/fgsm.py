"""FGSM (Goodfellow, Shlens & Szegedy 2014): one step of size eps along the loss gradient's sign."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack, Loss, gradient_attack
from advsec.threat import ThreatModel


@dataclass
class FGSM(Attack):
    """Fast gradient sign method: a single full-budget gradient step (l2: along the normalized gradient)."""

    reduced_search = True  # gradient_attack confirms every fooled sample in float32
    targeted = True
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
        return gradient_attack(
            model,
            x,
            y,
            threat,
            steps=1,
            step_fraction=1.0,
            random_start=False,
            loss=self.loss,
            target=target,
        )
