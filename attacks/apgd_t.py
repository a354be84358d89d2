"""APGD-T (Croce & Hein 2020): APGD on the targeted DLR loss, aimed in turn at the likeliest wrong classes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack, best_targeted_objective
from advsec.attacks.apgd import apgd
from advsec.threat import ThreatModel


@dataclass
class APGDTargeted(Attack):
    """Targeted APGD-DLR against each of the top-k other classes until the sample is misclassified.

    Given a ``target`` it aims at that class only; otherwise it is an untargeted attack built from targeted
    runs, which often succeed where untargeted losses stall (AutoAttack's second stage).
    """

    reduced_search = True  # gradient_attack confirms every fooled sample in float32
    targeted = True
    steps: int = 100
    targets: int = 9  # how many of the most likely wrong classes to try, most likely first
    eot: int = 1

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
        if target is not None:
            self.aimed = target
            return apgd(model, x, y, threat, steps=self.steps, restarts=1, loss="dlr", target=target,
                        generator=generator, eot=self.eot)  # fmt: skip
        with torch.no_grad():
            ranked = model(x).argsort(dim=1, descending=True)
        wrong = ranked[ranked != y[:, None]].view(len(x), -1)  # classes other than y, most likely first
        result, self.aimed = x.clone(), wrong[:, 0].clone()
        robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for k in range(min(self.targets, wrong.shape[1])):
            index = robust.nonzero().squeeze(1)
            if len(index) == 0:
                break
            adv = apgd(model, x[index], y[index], threat, steps=self.steps, restarts=1, loss="dlr",
                       target=wrong[index, k], generator=generator, eot=self.eot)  # fmt: skip
            result[index], self.aimed[index] = adv, wrong[index, k]
            with torch.no_grad():
                robust[index] = model(adv).argmax(dim=1) == y[index]
        return result

    def objective(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """The targeted DLR towards ``target``; without one, the best over the classes it may aim at.

        A run raises the margin towards its own target, not the cross-entropy of the true class, so an
        adversarially trained model's outputs often leave the latter no higher (tests/test_sanity.py).
        """
        return best_targeted_objective(logits, y, target, "dlr")
