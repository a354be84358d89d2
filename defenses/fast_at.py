"""Fast adversarial training (Wong, Rice & Kolter 2020): FGSM from a random start, guarded from collapse."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import robust_accuracy
from advsec.defense import AdversarialTraining, Bounds
from advsec.threat import ThreatModel


@dataclass
class FastAdversarialTraining(AdversarialTraining):
    """One FGSM step of step_fraction · eps from a random start; a PGD check per epoch catches a collapse.

    The start is drawn from the whole eps-ball and, as in Wong et al.'s code, not clipped to the input
    bounds before the gradient is taken (only the final example is). Single-step training can suddenly
    learn to defeat FGSM alone while PGD accuracy falls to zero: the check attacks ``guard_samples``
    held-out training samples with PGD-``guard_steps``, and a drop of more than ``guard_drop`` below the
    best epoch restores that epoch; after ``guard_retries`` restores the next collapse also stops training.
    Pair it with ``schedule = "cyclic"`` in ``[train]``.
    """

    step_fraction: float = 1.25
    guard_samples: int = 256
    guard_steps: int = 10
    guard_drop: float = 0.2
    guard_retries: int = 2

    def adversarial_loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        start = (x + threat.random_delta(x, generator)).requires_grad_(True)
        model.eval()
        (grad,) = torch.autograd.grad(F.cross_entropy(model(start), y), start)
        model.train()
        step = self.step_fraction * threat.radius(x)
        x_adv = threat.project(x, threat.ascend(start.detach(), grad, step))
        return F.cross_entropy(model(x_adv), y)

    def check(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        generator: torch.Generator,
    ) -> float:
        return robust_accuracy(
            model,
            x,
            y,
            self.threat(bounds, progress=1.0),
            steps=self.guard_steps,
            step_size=2.5 * self.eps / self.guard_steps,
            random_start=True,
            generator=generator,
        )
