"""The threat model: the one place that says how far an attacker may move an input.

Every attack steps through :meth:`ThreatModel.ascend`, starts from :meth:`ThreatModel.random_start` and ends
in :meth:`ThreatModel.project`, so the budget (``linf`` or ``l2`` ball of radius ``eps`` around the clean
input) and the input bounds (the dataset's, never an assumed [0, 1]) are enforced once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from advsec.errors import InputError, SpecError

Norm = Literal["linf", "l2"]
NORMS: tuple[Norm, ...] = ("linf", "l2")
_TINY = 1e-12  # keeps l2 directions finite where a gradient or perturbation is exactly zero


@dataclass(frozen=True)
class ThreatModel:
    """An ``eps``-ball in ``norm`` around each clean input, intersected with the box ``bounds``."""

    norm: Norm
    eps: float
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise SpecError(f"norm: expected one of {', '.join(NORMS)}, got {self.norm!r}")
        if not self.eps >= 0:  # also rejects NaN
            raise SpecError(f"eps: expected a number >= 0, got {self.eps!r}")
        low, high = self.bounds
        if not low < high:
            raise SpecError(f"bounds: expected low < high, got {self.bounds!r}")

    def distance(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Per-sample size of the perturbation in this threat model's norm."""
        delta = (x_adv - x).flatten(1)
        if self.norm == "linf":
            return delta.abs().amax(dim=1)
        return delta.norm(p=2, dim=1)

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """The feasible point nearest ``x_adv`` along the ball-then-box path: within budget and bounds.

        Clipping to the box after shrinking into the ball never leaves the ball, because ``x`` itself
        is inside the box: each coordinate of the perturbation only moves towards zero.
        """
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            norms = _per_sample_l2(delta)
            delta = delta * (self.eps / norms.clamp_min(_TINY)).clamp(max=1.0)
        return (x + delta).clamp(*self.bounds)

    def ascend(
        self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float | torch.Tensor
    ) -> torch.Tensor:
        """One steepest-ascent step of length ``step_size`` in this norm (sign for linf, unit for l2).

        ``step_size`` may be a per-sample tensor shaped ``(N, 1, ...)``.
        """
        if self.norm == "linf":
            return x_adv + step_size * grad.sign()
        return x_adv + step_size * grad / _per_sample_l2(grad).clamp_min(_TINY)

    def random_start(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A point drawn uniformly from the ball (then clipped to the box), as PGD's random start."""
        return self.project(x, x + self.random_delta(x, generator))

    def random_delta(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A perturbation drawn uniformly from the ball, one per sample of ``x``, not clipped to the box."""
        if self.norm == "linf":
            return (2 * random_tensor(x.shape, x, generator) - 1) * self.eps
        direction = random_tensor(x.shape, x, generator, normal=True)
        direction = direction / _per_sample_l2(direction).clamp_min(_TINY)
        radius = random_tensor((x.shape[0],), x, generator)
        return direction * (self.eps * radius ** (1.0 / x[0].numel())).view(-1, *[1] * (x.dim() - 1))

    def violations(self, x: torch.Tensor, x_adv: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
        """A per-sample mask of points outside the budget or the bounds (with float tolerance ``tol``)."""
        scale = max(1.0, abs(self.bounds[0]), abs(self.bounds[1]))
        slack = tol * scale
        outside_ball = self.distance(x, x_adv) > self.eps + slack
        flat = x_adv.flatten(1)
        outside_box = (flat < self.bounds[0] - slack).any(dim=1) | (flat > self.bounds[1] + slack).any(dim=1)
        return outside_ball | outside_box | ~torch.isfinite(flat).all(dim=1)


def random_tensor(
    shape: tuple[int, ...] | torch.Size,
    like: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    normal: bool = False,
) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) draws in ``like``'s dtype, on ``like``'s device.

    They are drawn where ``generator`` lives and then moved: training keeps a CPU generator, so a run
    reproduces whatever device the data sits on. Without a generator, torch's global one for ``like``'s
    device is used.
    """
    device = generator.device if generator is not None else like.device
    sample = torch.randn if normal else torch.rand
    return sample(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


def _per_sample_l2(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(p=2, dim=1).view(-1, *[1] * (t.dim() - 1))


def check_inputs(x: torch.Tensor, bounds: tuple[float, float], what: str = "inputs") -> None:
    """Reject NaN/Inf or out-of-bounds inputs before any attack runs, with a message saying which."""
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x.flatten(1))).any(dim=1).nonzero().flatten()[:5].tolist()
        raise InputError(f"{what} contain NaN or Inf (samples {bad})")
    low, high = bounds
    if x.numel() and (x.min() < low or x.max() > high):
        seen = f"min {x.min().item():.4g}, max {x.max().item():.4g}"
        raise InputError(f"{what} fall outside the bounds [{low}, {high}] ({seen})")
