"""Patch PGD: projected gradient ascent inside one window per sample, the white-box upper bound of the
``patch`` threat model (Brown et al. 2017; placed by saliency as in LaVAN, Karmon, Zoran & Goldberg 2018).

The window is placed once per sample before the loop: where the input gradient of the attack's objective is
largest in magnitude (``salient``), uniformly at random (``random``, from the run's seeded generator), or at
a given pixel (``fixed``, its top-left corner at ``row``, ``column``, pushed inside the image). The loop is
the shared one (:func:`~advsec.attack.gradient_attack`), with sign steps of ``step_fraction`` of the bounds'
span, each projected into that sample's window. A patch is unbounded inside, so its steps are large and
few. Each restart after the first moves the samples still unfooled to a random window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import Attack, Loss, attack_objective, fooled, gradient_attack
from advsec.threat import ThreatModel, as_plane

Placement = Literal["salient", "random", "fixed"]


@dataclass
class InsideWindow:
    """Steepest ascent projected into one fixed window per sample (a stepper of the shared loop)."""

    threat: ThreatModel
    step_size: float
    region: torch.Tensor  # (N, 1, H, W), one window per sample in flight

    def step(
        self, t: int, x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        return self.threat.project(x, self.threat.ascend(x_adv, grad, self.step_size), region=self.region)

    def keep(self, mask: torch.Tensor) -> None:
        self.region = self.region[mask]


@dataclass
class PatchPGD(Attack):
    """PGD confined to one window per sample; the window placed by saliency, at random, or fixed."""

    targeted = True
    norms = ("patch",)
    modalities = ("image",)
    steps: int = 40
    step_fraction: float = 0.1  # each step, as a fraction of the bounds' span
    restarts: int = 1  # restarts after the first put the samples still unfooled in a random window
    placement: Placement = "salient"
    row: int = 0  # the window's top-left corner, for placement "fixed"
    column: int = 0
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
        best = x.detach().clone()
        value = torch.full((len(x),), float("-inf"), device=x.device)
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        step = self.step_fraction * (threat.bounds[1] - threat.bounds[0])
        for restart in range(self.restarts):
            todo = (~done).nonzero().squeeze(1)
            if not len(todo):
                break
            clean, labels, aim = x[todo], y[todo], None if target is None else target[todo]
            placement = self.placement if restart == 0 else "random"
            corners = self.corners(placement, model, clean, labels, aim, threat, generator)
            region = threat.window(clean, corners)
            x_adv = gradient_attack(
                model, clean, labels, threat, steps=self.steps, loss=self.loss, target=aim,
                stepper=lambda _, region=region: InsideWindow(threat, step, region), generator=generator,
            )  # fmt: skip
            with torch.no_grad():
                logits = model(x_adv)
            hit, score = fooled(logits, labels, aim), attack_objective(logits, labels, aim, self.loss)
            better = hit | (score > value[todo])
            best[todo[better]], value[todo[better]] = x_adv[better], score[better]
            done[todo[hit]] = True
        return best

    def corners(
        self,
        placement: Placement,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        aim: torch.Tensor | None,
        threat: ThreatModel,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Each sample's window, as its top-left corner ``(N, 2)``."""
        height, width = threat.window_shape(x)
        plane = as_plane(x)  # a 1-D input is one row high
        free = (plane.shape[2] - height, plane.shape[3] - width)
        if placement == "fixed":
            corner = torch.tensor([min(max(self.row, 0), free[0]), min(max(self.column, 0), free[1])])
            return corner.to(x.device).expand(len(x), 2)
        if placement == "random" or height == 0 or width == 0:
            return threat.random_corners(x, generator)
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(attack_objective(model(x), y, aim, self.loss).sum(), x)
        mass = F.avg_pool2d(as_plane(grad).abs().sum(dim=1, keepdim=True), (height, width), stride=1).flatten(
            1
        )
        best = mass.argmax(dim=1)
        return torch.stack([best // (free[1] + 1), best % (free[1] + 1)], dim=1)
