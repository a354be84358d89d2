"""APGD (Croce & Hein 2020): PGD whose step size adapts itself, so no step size needs tuning.

Start with step 2·eps and momentum 0.75. At checkpoints spaced by a shrinking schedule, halve a sample's
step and send it back to its best point so far if fewer than 75 % of the steps since the last checkpoint
raised its loss, or if neither its step nor its best loss changed since then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from advsec.attack import Attack, Loss, gradient_attack
from advsec.threat import ThreatModel

MOMENTUM = 0.75
RHO = 0.75  # the fraction of steps since the last checkpoint that must raise the loss


def checkpoints(steps: int) -> set[int]:
    """Iterations where step sizes are reconsidered.

    At fractions p0 = 0, p1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) of the budget.
    """
    fractions = [0.0, 0.22]
    while fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06) <= 1:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    return {math.ceil(round(p * steps, 9)) for p in fractions[1:]}  # round: 0.41 + 0.16 must not exceed 0.57


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *[1] * (like.dim() - 1))


@dataclass
class APGDStepper:
    """APGD moves: momentum steps, per-sample step sizes halved at checkpoints (back to the best point)."""

    threat: ThreatModel
    steps: int
    marks: set[int] = field(init=False)
    state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.marks = checkpoints(self.steps)

    def step(
        self, t: int, x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        s = self.state
        if not s:
            n = len(x)
            s.update(
                eta=2 * self.threat.radius(x).flatten(),
                best_value=value.clone(),
                x_best=x_adv.clone(),
                grad_best=grad.clone(),
                x_prev=x_adv.clone(),
                prev_value=value.clone(),
                increases=torch.zeros(n, device=x.device),
                eta_mark=2 * self.threat.radius(x).flatten(),
                best_mark=value.clone(),
                last_mark=torch.zeros((), device=x.device),
            )
        else:
            s["increases"] += (value > s["prev_value"]).float()
            s["prev_value"] = value
            better = value > s["best_value"]
            s["best_value"] = torch.where(better, value, s["best_value"])
            s["x_best"][better] = x_adv[better]
            s["grad_best"][better] = grad[better]
        if t in self.marks:
            window = t - s["last_mark"]
            stalled = s["increases"] < RHO * window
            unchanged = (s["eta"] == s["eta_mark"]) & (s["best_value"] == s["best_mark"])
            halve = stalled | unchanged
            s["eta"] = torch.where(halve, s["eta"] / 2, s["eta"])
            x_adv = torch.where(_per_sample(halve, x_adv), s["x_best"], x_adv)
            grad = torch.where(_per_sample(halve, grad), s["grad_best"], grad)
            s["x_prev"] = torch.where(
                _per_sample(halve, x_adv), x_adv, s["x_prev"]
            )  # no momentum across a reset
            s["increases"].zero_()
            s["eta_mark"], s["best_mark"] = s["eta"].clone(), s["best_value"].clone()
            s["last_mark"] = torch.tensor(float(t))
        z = self.threat.project(x, self.threat.ascend(x_adv, grad, _per_sample(s["eta"], x_adv)))
        if t == 0:
            following = z
        else:
            following = self.threat.project(
                x, x_adv + MOMENTUM * (z - x_adv) + (1 - MOMENTUM) * (x_adv - s["x_prev"])
            )
        s["x_prev"] = x_adv
        return following

    def keep(self, mask: torch.Tensor) -> None:
        for key, value in self.state.items():
            if value.dim() > 0:
                self.state[key] = value[mask]


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    restarts: int,
    loss: Loss,
    target: torch.Tensor | None,
    generator: torch.Generator | None,
    eot: int = 1,
) -> torch.Tensor:
    """One APGD run (with restarts) through the core gradient loop."""
    return gradient_attack(
        model,
        x,
        y,
        threat,
        steps=steps,
        stepper=lambda _: APGDStepper(threat, steps),
        random_start=True,
        restarts=restarts,
        loss=loss,
        target=target,
        generator=generator,
        eot=eot,
    )


@dataclass
class APGD(Attack):
    """Auto-PGD: step-size-free PGD with momentum (Croce & Hein 2020)."""

    reduced_search = True  # gradient_attack confirms every fooled sample in float32
    targeted = True
    steps: int = 100
    restarts: int = 1
    eot: int = 1  # gradient draws averaged per step, for stochastic models
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
        return apgd(
            model, x, y, threat, steps=self.steps, restarts=self.restarts, loss=self.loss, target=target,
            generator=generator, eot=self.eot,
        )  # fmt: skip


@dataclass
class APGDCE(APGD):
    """APGD on the cross-entropy loss (AutoAttack's first stage)."""

    loss: Loss = "ce"


@dataclass
class APGDDLR(APGD):
    """APGD on the difference-of-logits-ratio loss: scale-invariant, so it sees past some masking."""

    loss: Loss = "dlr"
