"""TRADES (Zhang et al. 2019): clean cross-entropy plus beta times the KL to an adversarial neighbour."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import SteepestAscent
from advsec.defense import AdversarialTraining
from advsec.threat import ThreatModel, random_tensor


@dataclass
class TRADES(AdversarialTraining):
    """Trades clean accuracy for smoothness: larger ``beta`` weighs robustness more (the paper's 1/λ).

    The inner maximization pushes the prediction away from the clean one (KL), not from the label, so it
    needs no labels and cannot overfit to them.
    """

    beta: float = 6.0
    steps: int = 10
    step_fraction: float = 0.25  # step size as a fraction of eps

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")

    def adversarial_loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            clean = F.softmax(model(x), dim=1)
        noise = random_tensor(x.shape, x, generator, normal=True)
        x_adv = threat.project(x, x + 0.001 * noise)
        ascent = SteepestAscent(threat, self.step_fraction * threat.radius(x))
        for t in range(self.steps):
            x_adv.requires_grad_(True)
            divergence = F.kl_div(F.log_softmax(model(x_adv), dim=1), clean, reduction="sum")
            (grad,) = torch.autograd.grad(divergence, x_adv)
            x_adv = ascent.step(t, x, x_adv.detach(), grad, divergence)
        model.train()
        logits = model(x)
        robust = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
        return F.cross_entropy(logits, y) + self.beta * robust
