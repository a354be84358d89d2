"""PGD adversarial training (Madry et al. 2018): minimize the loss on PGD examples only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import gradient_attack
from advsec.defense import AdversarialTraining
from advsec.threat import ThreatModel


@dataclass
class PGDAdversarialTraining(AdversarialTraining):
    """Madry et al.: every training batch is replaced by its PGD adversarial examples."""

    steps: int = 10
    step_fraction: float | None = None  # step size as a fraction of eps; default 2.5 / steps
    random_start: bool = True

    def adversarial_loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        fraction = self.step_fraction if self.step_fraction is not None else 2.5 / self.steps
        model.eval()  # craft against the deployed behaviour (dropout off, batch-norm statistics frozen)
        x_adv = gradient_attack(
            model,
            x,
            y,
            threat,
            steps=self.steps,
            step_fraction=fraction,
            random_start=self.random_start,
            generator=generator,
            keep_worst=False,
        )
        model.train()
        return F.cross_entropy(model(x_adv), y)
