"""Carlini & Wagner (2017) L2: the smallest perturbation that fools, found by Adam in tanh space.

Minimize ‖δ‖₂² + c·max(margin, −κ), margin = Z_y − max_{i≠y} Z_i (untargeted) or max_{i≠t} Z_i − Z_t
(targeted), over w with x + δ = low + (high − low)·(tanh(w) + 1)/2, so every iterate lies in the bounds
without clipping. A per-sample binary search sets c: a success lowers it, a failure raises it (×10 until the
first success). Each sample keeps its smallest successful perturbation over all rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack, attack_objective, fooled
from advsec.threat import ThreatModel

SHRINK = 0.999999  # keeps atanh finite for inputs on the bounds, as the original does
ABORT_TOLERANCE = 0.9999  # a sample whose loss fell by less than 0.01 % over a tenth of the steps stops


@dataclass
class CarliniWagnerL2(Attack):
    """Minimum-norm L2 attack with a per-sample binary search on c; the result is projected onto eps."""

    norms = ("l2", "snr")
    targeted = True
    steps: int = 100  # Adam steps per binary-search round
    search_steps: int = 5
    initial_const: float = 1.0
    lr: float = 0.01
    kappa: float = 0.0  # confidence: a success needs the margin below −κ

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
        low, high = threat.bounds
        w_clean = torch.atanh((2 * (x - low) / (high - low) - 1) * SHRINK)
        best = x.clone()
        best_norm = torch.full((len(x),), math.inf, dtype=x.dtype, device=x.device)
        with torch.no_grad():
            best_norm[self._success(model(x), y, target)] = 0.0
        # A sample the clean input already fools has nothing left to search for.
        active = (best_norm > 0).nonzero().squeeze(1)
        const = torch.full_like(best_norm, self.initial_const)
        lower, upper = torch.zeros_like(best_norm), torch.full_like(best_norm, math.inf)
        for _ in range(self.search_steps):
            if len(active) == 0:
                break
            hit = self._round(model, x, y, target, threat, w_clean, const, active, best, best_norm)
            c = const[active]
            upper[active] = torch.where(hit, torch.minimum(upper[active], c), upper[active])
            lower[active] = torch.where(hit, lower[active], torch.maximum(lower[active], c))
            const[active] = torch.where(upper[active].isfinite(), (lower[active] + upper[active]) / 2, 10 * c)
        # The smallest successful perturbation is the best this attack has: if any success lies within eps,
        # that one does. A larger one is shrunk onto the ball, which is still honest: the harness scores the
        # returned point, so the projection can turn a success into a failure but never fake a success.
        return threat.project(x, best)

    def objective(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """The logit margin it drives below −κ (the norm it minimizes too is not what the loss check asks)."""
        return attack_objective(logits, y, target, "cw")

    def _round(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        threat: ThreatModel,
        w_clean: torch.Tensor,
        const: torch.Tensor,
        active: torch.Tensor,
        best: torch.Tensor,
        best_norm: torch.Tensor,
    ) -> torch.Tensor:
        """Adam from the clean inputs at fixed c; improves ``best`` in place, says which samples succeeded."""
        low, high = threat.bounds
        hit = torch.zeros(len(active), dtype=torch.bool, device=x.device)
        rows = torch.arange(len(active), device=x.device)  # positions in ``active`` of the running samples
        w = w_clean[active].clone()
        adam = _Adam(w, self.lr)
        previous = torch.full((len(active),), math.inf, dtype=x.dtype, device=x.device)
        check = max(self.steps // 10, 1)
        for t in range(self.steps):
            index = active[rows]
            w.requires_grad_(True)
            x_adv = low + (high - low) * (torch.tanh(w) + 1) / 2
            aim = None if target is None else target[index]
            logits = model(x_adv)
            margin = -attack_objective(logits, y[index], aim, "cw")
            squared = (x_adv - x[index]).flatten(1).pow(2).sum(dim=1)
            loss = squared + const[index] * margin.clamp_min(-self.kappa)
            (grad,) = torch.autograd.grad(loss.sum(), w)
            with torch.no_grad():
                norm = squared.sqrt()
                success = self._success(logits, y[index], aim)
                hit[rows] |= success
                better = success & (norm < best_norm[index])
                best[index[better]] = x_adv[better].detach()
                best_norm[index[better]] = norm[better]
            if t % check == 0:  # the original's early abort, per sample rather than per batch
                going = loss.detach() <= ABORT_TOLERANCE * previous
                previous = loss.detach()[going]
                rows, w, grad = rows[going], w[going], grad[going]
                adam.keep(going)
                if len(rows) == 0:
                    break
            w = adam.step(w.detach(), grad)
        return hit

    def _success(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        margin = -attack_objective(logits, y, target, "cw")
        return fooled(logits, y, target) & (margin <= -self.kappa)


class _Adam:
    """Adam with PyTorch's defaults, on a per-sample parameter whose rows can leave as samples stop."""

    def __init__(self, w: torch.Tensor, lr: float) -> None:
        self.lr, self.t = lr, 0
        self.m, self.v = torch.zeros_like(w), torch.zeros_like(w)

    def step(self, w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        self.t += 1
        b1, b2 = 0.9, 0.999
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad**2
        m_hat, v_hat = self.m / (1 - b1**self.t), self.v / (1 - b2**self.t)
        return w - self.lr * m_hat / (v_hat.sqrt() + 1e-8)

    def keep(self, mask: torch.Tensor) -> None:
        self.m, self.v = self.m[mask], self.v[mask]
