"""Audio targeted: make the model hear a chosen class, then make the perturbation as quiet as it can be.

After Carlini & Wagner (2018, "Audio Adversarial Examples"): projected gradient descent towards the target
inside the budget; each time a sample is heard as its target, that sample's bound shrinks by ``shrink`` and
the search goes on inside the smaller ball. A sample's result is the quietest point heard as the target,
so the distance a report shows is how loud the attack had to be, not merely the budget it was allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack, Loss, attack_objective, fooled
from advsec.threat import ThreatModel


@dataclass
class AudioTargeted(Attack):
    """Targeted PGD that keeps shrinking each sample's bound once it is heard as its target."""

    targeted = True
    needs_target = True
    modalities = ("audio",)

    steps: int = 200
    step_fraction: float = 0.05  # of the sample's current bound, per step
    shrink: float = 0.8  # the bound after a success, as a fraction of the one that succeeded; 1 keeps it
    loss: Loss = "ce"

    def __post_init__(self) -> None:
        if not 0 < self.shrink <= 1:
            raise ValueError(f"shrink must be in (0, 1], got {self.shrink}")

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
        if target is None:
            raise ValueError("audio-targeted needs a target class for every sample")
        bound = threat.radius(x)  # each sample's current bound, shrinking on every success
        best = x.detach().clone()  # the quietest point heard as the target so far
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        x_adv = x.detach().clone()
        for t in range(self.steps + 1):
            x_adv.requires_grad_(t < self.steps)  # the last iterate is only checked
            logits = model(x_adv)
            with torch.no_grad():
                hit = fooled(logits, y, target)
                best[hit], found = x_adv[hit].detach(), found | hit
            if t == self.steps:
                break
            (grad,) = torch.autograd.grad(attack_objective(logits, y, target, self.loss).sum(), x_adv)
            with torch.no_grad():
                bound[hit] *= self.shrink
                x_adv = threat.ascend(x_adv.detach(), grad, self.step_fraction * bound)
                x_adv = threat.project(x, x_adv, bound)
        best[~found] = x_adv[~found].detach()  # never heard as the target: the last try, at the full budget
        return best
