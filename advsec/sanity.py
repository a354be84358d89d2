"""Attack-agnostic sanity checks: signs that an evaluation measured gradient masking rather than robustness.

They work with any attack plugin because they look at the model, at what the cascade broke and at the
objective each attack declares it raises, not at how an attack works (Carlini et al. 2019, "On evaluating
adversarial robustness"; Athalye et al. 2018):
- zero or non-finite input gradients on clean inputs: gradient attacks have nothing to follow;
- accuracy that survives an unbounded attack (eps spanning the whole input range), which any classifier
  must lose: if it does not, the attack is not reaching the model;
- predictions that differ between two identical queries of a defense that declares itself deterministic,
  or that change after other queries of one that declares itself stateless;
- an iterative gradient attack that leaves the objective it follows (its loss, towards the class it aimed
  at) no higher than on the clean input;
- a query-only attack breaking samples every gradient attack before it left robust;
- a random defense attacked without EOT, where a short EOT attack breaks samples the evaluation left robust.
A flag is not a verdict; it says where to look (and which adaptive attack to add).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import Attack, gradient_attack, robust_accuracy
from advsec.keys import seeded
from advsec.records import SanityCheck
from advsec.threat import ThreatModel, random_tensor

ZERO_GRADIENT_LIMIT = 0.1  # share of samples with no usable input gradient before it is flagged
UNBOUNDED_ACCURACY_LIMIT = 0.05  # accuracy an attack with an unlimited budget may leave before it is flagged
UNBOUNDED_SAMPLES, UNBOUNDED_STEPS = 64, 20
QUERY_BEATS_GRADIENT_LIMIT = 0.02  # share of samples only a query attack broke before it is flagged
LOSS_STALL_LIMIT = 0.1  # share of attacked samples whose loss a gradient attack did not raise
EOT_PROBE_SAMPLES, EOT_PROBE_STEPS = 64, 20
EOT_PROBE_LIMIT = 0.05  # share of probed samples an EOT attack broke though the evaluation left them robust


def model_checks(
    deployed: nn.Module,
    attacked: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    stochastic: bool,
    stateful: bool,
    batch: int,
    bounds: tuple[float, float],
) -> list[SanityCheck]:
    """Checks of the model on clean inputs: its gradients as the evaluation's attacks see them (through
    ``attacked``, the deployed model or the adaptive view they differentiate), its flags as deployed."""
    zero = zero_gradient_rate(attacked, x, y, batch)
    unbounded = unbounded_accuracy(attacked, x[:UNBOUNDED_SAMPLES], y[:UNBOUNDED_SAMPLES], bounds)
    checks = [
        SanityCheck(
            "zero or non-finite input gradient",
            zero,
            zero > ZERO_GRADIENT_LIMIT,
            "samples whose loss gradient is all zero or not finite: gradient attacks are blind there",
        ),
        SanityCheck(
            "accuracy under an unbounded attack",
            unbounded,
            unbounded > UNBOUNDED_ACCURACY_LIMIT,
            f"PGD-{UNBOUNDED_STEPS} with eps spanning the whole input range; every model must fall to ~0",
        ),
    ]
    if not stochastic:
        differs = undeclared_randomness(deployed, x[:batch])
        checks.append(
            SanityCheck(
                "undeclared randomness",
                differs,
                differs > 0,
                "samples whose logits differ between two identical queries, though the defense "
                "declares itself deterministic",
            )
        )
    if not stateful:
        changed = undeclared_state(deployed, x[:batch], bounds)
        checks.append(
            SanityCheck(
                "undeclared statefulness",
                changed,
                changed > 0,
                "fresh queries answered differently once the model has seen them, with its randomness "
                "replayed, though the defense declares itself stateless",
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
    """Accuracy left by PGD whose linf budget covers the whole input box: any input can become any other.

    It measures whether the gradients reach the model at all, so the attack takes every step and is scored
    at its last iterate, not at the first one that fooled a query: with no budget to stay within, each step
    pushes further from the class. Stopping early kept examples that one draw of a random model had barely
    let go, and the fresh draw that scores them could hand them back (a flag by chance, near the limit).
    """
    threat = ThreatModel("linf", bounds[1] - bounds[0], bounds)
    generator = torch.Generator(device=x.device).manual_seed(0)
    return robust_accuracy(
        model, x, y, threat, steps=UNBOUNDED_STEPS, step_size=threat.eps / 8, generator=generator,
        keep_worst=False,
    )  # fmt: skip


@torch.no_grad()
def undeclared_randomness(model: nn.Module, x: torch.Tensor) -> float:
    """Share of samples whose logits differ between two identical queries."""
    return _share_differing(model(x), model(x)) if len(x) else 0.0


@torch.no_grad()
def undeclared_state(model: nn.Module, x: torch.Tensor, bounds: tuple[float, float]) -> float:
    """Share of fresh queries answered differently by copies of the model, one of which saw them before.

    Both answers start from the same state of torch's global generator, so a stateless model, random or
    not, answers alike; one that counts queries, remembers them or keeps a generator of its own need not.
    The queries are uniform noise within the bounds: inputs no earlier query can have matched. Each is
    asked again and also nudged by 1 % of the input range, as an attack's next iterate would be: a model
    that answers near-repeats from memory gives itself away on the nudged one.
    """
    if not len(x):
        return 0.0
    low, high = bounds
    generator = torch.Generator(device=x.device).manual_seed(0)
    fresh = low + (high - low) * random_tensor(x.shape, x, generator)
    nudge = 0.01 * (high - low) * (2 * (random_tensor(x.shape, x, generator) > 0.5) - 1)
    near = (fresh + nudge).clamp(low, high)
    unseen, unseen_near, seen = (copy.deepcopy(model) for _ in range(3))
    with seeded(1, x.device):  # the history only one copy has
        seen(fresh)
        seen(fresh)
    differing = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for reference, query in ((unseen, fresh), (unseen_near, near)):
        with seeded(0, x.device):
            first = reference(query)
        with seeded(0, x.device):
            differing |= _differing(first, seen(query))
    return differing.float().mean().item()


def _share_differing(first: torch.Tensor, second: torch.Tensor) -> float:
    """Share of samples whose two answers differ by more than float noise."""
    return _differing(first, second).float().mean().item()


def _differing(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return (first - second).abs().flatten(1).amax(dim=1).gt(1e-5)


@torch.no_grad()
def loss_not_raised(
    attack: Attack,
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None = None,
) -> int:
    """Samples where the attack's output ``x_adv`` of ``x`` is no higher than the clean input on the
    objective the attack follows (:meth:`~advsec.attack.Attack.objective`), towards ``target`` or, for an
    attack that picked its targets itself, the class it aimed each output at. An output left equal to its
    input by an attack that hands back the clean input where it fails is not judged."""
    aim = target if target is not None else attack.aimed
    before = attack.objective(model(x), y, aim)
    unraised = attack.objective(model(x_adv), y, aim) <= before
    if attack.unchanged_when_failing:
        unraised &= (x_adv != x).flatten(1).any(dim=1)
    return int(unraised.sum())


def loss_check(label: str, stalled: int, attacked: int) -> SanityCheck:
    share = stalled / max(attacked, 1)
    return SanityCheck(
        f"loss not raised: {label}",
        share,
        share > LOSS_STALL_LIMIT,
        "attacked samples whose loss the gradient attack follows (towards its target if it aims; on the view "
        "it differentiates, the expectation for a random model) is no higher after it: it is not climbing",
    )


def eot_probe(
    expectation: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    robust: torch.Tensor,
    threat: ThreatModel,
    correct: Callable[[torch.Tensor], torch.Tensor],
) -> SanityCheck:
    """PGD through the expectation over a random model's draws on the first samples the evaluation scored.

    ``robust`` is the evaluation's per-sample verdict on ``x``; ``correct(x_adv)`` scores the probe's
    examples on the deployed model as the evaluation scores its own. Samples the probe breaks that the
    evaluation left robust mean its attacks were blunted by the randomness.
    """
    generator = torch.Generator(device=x.device).manual_seed(0)
    x_adv = gradient_attack(expectation, x, y, threat, steps=EOT_PROBE_STEPS, step_fraction=1 / 8,
                            generator=generator)  # fmt: skip
    share = (robust & ~correct(x_adv)).float().mean().item() if len(x) else 0.0
    return SanityCheck(
        "EOT attack beat the evaluation",
        share,
        share > EOT_PROBE_LIMIT,
        f"samples a PGD-{EOT_PROBE_STEPS} through the expected prediction (EOT) broke though the "
        "evaluation's attacks left them robust: a random defense needs EOT attacks",
    )


def cascade_check(broken_by_kind: list[tuple[str, int]], n: int) -> SanityCheck | None:
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
    return SanityCheck(
        "query attack beat gradient attacks",
        share,
        share > QUERY_BEATS_GRADIENT_LIMIT,
        "samples only a query attack broke after the gradient attacks had failed: gradient masking suspected",
    )


def certificate_check(certified: torch.Tensor, correct: torch.Tensor, robust: torch.Tensor) -> SanityCheck:
    """The defense's own certificate scored against the attacks: the share of samples it certifies and
    classifies right (certified accuracy, a floor under robust accuracy), flagged where an attack broke one
    of them, which a sound certificate, a sound attack and a sound evaluation together rule out."""
    held = certified & correct
    broken = int((held & ~robust).sum())
    share = held.float().mean().item() if len(held) else 0.0
    return SanityCheck(
        "certified accuracy",
        share,
        broken > 0,
        f"samples the defense classifies right and certifies against every input within the budget "
        f"({int(held.sum())} of {len(held)}); {broken} of them broken by the attacks, which a sound "
        "certificate rules out",
    )
