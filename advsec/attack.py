"""Attacks: the plugin contract and the one gradient loop every iterative attack is built on.

An attack plugin is a dataclass subclass of :class:`Attack`; its fields are the parameters a spec may set,
its class attributes declare capabilities. It implements :meth:`Attack.perturb` and nothing else: budget and
bounds come from the :class:`~advsec.threat.ThreatModel`, losses and the loop from this module.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from advsec.threat import ThreatModel

Loss = Literal["ce", "cw"]
Kind = Literal["gradient", "query"]


class Attack:
    """Base class of attack plugins. Subclass as a ``@dataclass``; override :meth:`perturb`."""

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    targeted: ClassVar[bool] = False  # can aim at a chosen class
    kind: ClassVar[Kind] = "gradient"  # "gradient" needs input gradients; "query" only forward passes
    modalities: ClassVar[tuple[str, ...]] = ("image", "audio")

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
        """Adversarial versions of ``x`` (labels ``y``) inside ``threat``; aim at ``target`` if given."""
        raise NotImplementedError


def attack_objective(
    logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, loss: Loss
) -> torch.Tensor:
    """Per-sample value the attacker maximizes: push away from ``y``, or towards ``target``."""
    if loss == "ce":
        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")
    aim = y if target is None else target
    aimed = logits.gather(1, aim[:, None]).squeeze(1)
    others = logits.scatter(1, aim[:, None], float("-inf")).amax(dim=1)
    margin = others - aimed  # untargeted: best wrong class beats y
    return margin if target is None else -margin


def fooled(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Per-sample success: misclassified (untargeted) or classified as ``target``."""
    predicted = logits.argmax(dim=1)
    return predicted != y if target is None else predicted == target


def gradient_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float,
    random_start: bool,
    restarts: int = 1,
    loss: Loss = "ce",
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    keep_worst: bool = True,
) -> torch.Tensor:
    """Projected steepest ascent on ``loss``, keeping each sample's worst case over iterates and restarts.

    A sample's result is the first iterate that fools the model; a sample never fooled keeps its
    highest-loss iterate. Each restart attacks only the samples no earlier restart fooled. With
    ``keep_worst=False`` it returns the last iterate of one run, as adversarial training uses it.
    """
    if not keep_worst:
        x_adv = threat.random_start(x, generator) if random_start else x.detach().clone()
        for _ in range(steps):
            x_adv, _, _ = _ascent_step(model, x, y, target, threat, x_adv, step_size, loss)
        return x_adv

    best = x.detach().clone()
    best_value = torch.full((len(x),), float("-inf"), device=x.device)
    success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(restarts):
        active = (~success).nonzero().squeeze(1)
        if len(active) == 0:
            break
        x0, y0 = x[active], y[active]
        t0 = None if target is None else target[active]
        x_adv = threat.random_start(x0, generator) if random_start else x0.detach().clone()
        for _ in range(steps):
            x_next, logits, value = _ascent_step(model, x0, y0, t0, threat, x_adv, step_size, loss)
            _keep_worst(best, best_value, success, active, x_adv, value, fooled(logits, y0, t0))
            x_adv = x_next
        with torch.no_grad():
            logits = model(x_adv)
            value = attack_objective(logits, y0, t0, loss)
        _keep_worst(best, best_value, success, active, x_adv, value, fooled(logits, y0, t0))
    return best


def _ascent_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    threat: ThreatModel,
    x_adv: torch.Tensor,
    step_size: float,
    loss: Loss,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One projected step from ``x_adv``; also returns the logits and objective measured at ``x_adv``."""
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv)
    value = attack_objective(logits, y, target, loss)
    (grad,) = torch.autograd.grad(value.sum(), x_adv)
    stepped = threat.project(x, threat.ascend(x_adv.detach(), grad, step_size))
    return stepped, logits.detach(), value.detach()


def _keep_worst(
    best: torch.Tensor,
    best_value: torch.Tensor,
    success: torch.Tensor,
    active: torch.Tensor,
    candidate: torch.Tensor,
    value: torch.Tensor,
    is_fooled: torch.Tensor,
) -> None:
    """Update in place the running per-sample worst case with a new batch of iterates for ``active``."""
    was_fooled = success[active]
    better = ~was_fooled & (is_fooled | (value > best_value[active]))
    chosen = active[better]
    best[chosen] = candidate[better]
    best_value[chosen] = value[better]
    success[chosen] = is_fooled[better]
