"""Attack-agnostic sanity checks: signs that an evaluation measured gradient masking rather than robustness.

They work with any attack plugin because they look at the model and at what the cascade broke, not at how
an attack works (Carlini et al. 2019, "On evaluating adversarial robustness"; Athalye et al. 2018):
- zero or non-finite input gradients on clean inputs: gradient attacks have nothing to follow;
- accuracy that survives an unbounded attack (eps spanning the whole input range), which any classifier
  must lose: if it does not, the attack is not reaching the model;
- predictions that differ between two identical queries of a defense that declares itself deterministic;
- a query-only attack breaking samples every gradient attack before it left robust.
A flag is not a verdict; it says where to look (and which adaptive attack to add).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import robust_accuracy
from advsec.threat import ThreatModel

ZERO_GRADIENT_LIMIT = 0.1  # share of samples with no usable input gradient before it is flagged
UNBOUNDED_ACCURACY_LIMIT = 0.05  # accuracy an attack with an unlimited budget may leave before it is flagged
UNBOUNDED_SAMPLES, UNBOUNDED_STEPS = 64, 20
QUERY_BEATS_GRADIENT_LIMIT = 0.02  # share of samples only a query attack broke before it is flagged


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    flagged: bool
    detail: str


def model_checks(
    deployed: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    stochastic: bool,
    batch: int,
    bounds: tuple[float, float],
) -> list[Check]:
    """Checks of the deployed model itself, on clean inputs."""
    zero = zero_gradient_rate(deployed, x, y, batch)
    unbounded = unbounded_accuracy(deployed, x[:UNBOUNDED_SAMPLES], y[:UNBOUNDED_SAMPLES], bounds)
    checks = [
        Check(
            "zero or non-finite input gradient",
            zero,
            zero > ZERO_GRADIENT_LIMIT,
            "samples whose loss gradient is all zero or not finite: gradient attacks are blind there",
        ),
        Check(
            "accuracy under an unbounded attack",
            unbounded,
            unbounded > UNBOUNDED_ACCURACY_LIMIT,
            f"PGD-{UNBOUNDED_STEPS} with eps spanning the whole input range; every model must fall to ~0",
        ),
    ]
    if not stochastic:
        differs = undeclared_randomness(deployed, x[:batch])
        checks.append(
            Check(
                "undeclared randomness",
                differs,
                differs > 0,
                "samples whose logits differ between two identical queries, though the defense "
                "declares itself deterministic",
            )
        )
    return checks


def zero_gradient_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """Share of samples whose cross-entropy input gradient is identically zero or not finite."""
    blind = 0
    for xb, yb in zip(x.split(batch), y.split(batch), strict=True):
        xb = xb.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xb), yb, reduction="sum"), xb)
        flat = grad.flatten(1)
        blind += int(((flat == 0).all(dim=1) | ~torch.isfinite(flat).all(dim=1)).sum())
    return blind / max(len(x), 1)


def unbounded_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, bounds: tuple[float, float]
) -> float:
    """Accuracy left by PGD whose linf budget covers the whole input box: any input can become any other."""
    threat = ThreatModel("linf", bounds[1] - bounds[0], bounds)
    generator = torch.Generator(device=x.device).manual_seed(0)
    return robust_accuracy(
        model, x, y, threat, steps=UNBOUNDED_STEPS, step_size=threat.eps / 8, generator=generator
    )


@torch.no_grad()
def undeclared_randomness(model: nn.Module, x: torch.Tensor) -> float:
    """Share of samples whose logits differ between two identical queries."""
    first, second = model(x), model(x)
    return (first - second).abs().flatten(1).amax(dim=1).gt(1e-5).float().mean().item() if len(x) else 0.0


def cascade_check(broken_by_kind: list[tuple[str, int]], n: int) -> Check | None:
    """Samples a query attack broke after gradient attacks had their turn; None without that order.

    ``broken_by_kind`` is the cascade's (attack kind, samples it broke) in order.
    """
    seen_gradient = False
    after = 0
    for kind, broken in broken_by_kind:
        seen_gradient |= kind == "gradient"
        if kind == "query" and seen_gradient:
            after += broken
    if not seen_gradient or not any(kind == "query" for kind, _ in broken_by_kind[1:]):
        return None
    share = after / max(n, 1)
    return Check(
        "query attack beat gradient attacks",
        share,
        share > QUERY_BEATS_GRADIENT_LIMIT,
        "samples only a query attack broke after the gradient attacks had failed: gradient masking suspected",
    )
