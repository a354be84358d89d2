"""DeepFool (Moosavi-Dezfooli et al. 2016): step to the nearest boundary of the linearized classifier.

Each iteration linearizes the logit differences f_k = Z_k − Z_y around the current point and takes the
smallest step that crosses the nearest linearized boundary: |f_k| / ‖∇f_k‖_q along the steepest direction
of the threat's norm (q is the dual norm: 2 for l2, 1 for linf). A sample stops as soon as its label
flips; the budget is applied once, at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from advsec.attack import Attack
from advsec.threat import ThreatModel

NUDGE = 1e-4  # added to each step's length (times the bounds' width), so a tie with y cannot stall a sample


@dataclass
class DeepFool(Attack):
    """Minimal-norm DeepFool among the top ``candidates`` classes, then projected onto the budget."""

    norms = ("l2", "linf", "snr", "db")
    steps: int = 50
    overshoot: float = 0.02
    candidates: int = 10  # y and the classes ranked highest at the clean input, as the reference does

    def __post_init__(self) -> None:
        if self.candidates < 2:
            raise ValueError(
                f"candidates: expected at least 2 (y and one other class), got {self.candidates}"
            )

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
        x = x.detach()
        # Iterates stay inside the bounds but ignore the budget: DeepFool looks for the nearest boundary,
        # however far, and only the result is projected onto the eps-ball.
        box = replace(threat, eps=math.inf)
        dual = 1 if threat.geometry == "linf" else 2
        low, high = threat.bounds
        with torch.no_grad():
            clean = model(x)
        k = min(self.candidates, clean.shape[1])
        classes = clean.scatter(1, y[:, None], math.inf).topk(k, dim=1).indices  # y first
        x_adv = x.clone()
        active = torch.arange(len(x), device=x.device)
        for _ in range(self.steps):
            point = x_adv[active].requires_grad_(True)
            logits = model(point)
            keep = logits.argmax(dim=1) == y[active]
            if not keep.any():
                break
            picked = logits.gather(1, classes[active])
            f = picked[:, 1:] - picked[:, :1]  # negative while y still leads
            # One backward per candidate over the whole batch: samples are independent, so the gradient
            # of the summed difference holds each sample's own gradient.
            w = torch.stack(
                [torch.autograd.grad(f[:, j].sum(), point, retain_graph=j < k - 2)[0] for j in range(k - 1)],
                dim=1,
            )[keep]
            f, active = f.detach()[keep], active[keep]
            distance = f.abs() / w.flatten(2).norm(p=dual, dim=2).clamp_min(1e-12)
            nearest = distance.argmin(dim=1)
            rows = torch.arange(len(active), device=x.device)
            length = distance[rows, nearest] + NUDGE * (high - low)
            # Overshooting each step equals the reference's x + (1 + overshoot)·r_total: the steps add up.
            step = ((1 + self.overshoot) * length).view(-1, *[1] * (x.dim() - 1))
            x_adv[active] = box.project(x[active], threat.ascend(x_adv[active], w[rows, nearest], step))
        return threat.project(x, x_adv)
