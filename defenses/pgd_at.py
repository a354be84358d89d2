"""PGD adversarial training (Madry et al. 2018): minimize the loss on PGD examples only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import gradient_attack
from advsec.defense import Defense
from advsec.threat import Norm, ThreatModel


@dataclass
class PGDAdversarialTraining(Defense):
    """Madry et al.: every training batch is replaced by its PGD adversarial examples."""

    eps: float = 0.3
    norm: Norm = "linf"
    steps: int = 10
    step_fraction: float | None = None  # step size as a fraction of eps; default 2.5 / steps
    random_start: bool = True
    # Fraction of training over which the training eps grows linearly from 0 to `eps`. Training at the full
    # budget from the first batch can collapse into a constant classifier or catastrophic overfitting.
    warmup: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup}")

    def training_eps(self, progress: float) -> float:
        """The budget at this point of training (see ``warmup``)."""
        return self.eps if progress >= self.warmup else self.eps * progress / self.warmup

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: tuple[float, float],
        generator: torch.Generator | None = None,
        progress: float = 1.0,
    ) -> torch.Tensor:
        fraction = self.step_fraction if self.step_fraction is not None else 2.5 / self.steps
        eps = self.training_eps(progress)
        if eps == 0:
            return F.cross_entropy(model(x), y)
        threat = ThreatModel(self.norm, eps, bounds)
        model.eval()  # craft against the deployed behaviour (dropout off, batch-norm statistics frozen)
        x_adv = gradient_attack(
            model,
            x,
            y,
            threat,
            steps=self.steps,
            step_size=fraction * eps,
            random_start=self.random_start,
            generator=generator,
            keep_worst=False,
        )
        model.train()
        return F.cross_entropy(model(x_adv), y)
