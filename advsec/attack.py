"""Attacks: the plugin contract and the one gradient loop every iterative attack is built on.

An attack plugin is a dataclass subclass of :class:`Attack`; its fields are the parameters a spec may set,
its class attributes declare capabilities. It implements :meth:`Attack.perturb` and nothing else: budget and
bounds come from the :class:`~advsec.threat.ThreatModel`, losses and the loop from this module.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, get_args

import torch
import torch.nn.functional as F
from torch import nn

from advsec.data import Dataset
from advsec.defense import Expectation
from advsec.precision import confirmed
from advsec.progress import Progress
from advsec.threat import ThreatModel

Loss = Literal["ce", "cw", "dlr"]
Kind = Literal["gradient", "query", "generator"]
Source = Literal["carrier", "test"]  # inputs of the attack's own (carriers()), or the test inputs


class Attack:
    """Base class of attack plugins. Subclass as a ``@dataclass``; override :meth:`perturb`."""

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2", "db", "snr")  # db, snr: relative (audio)
    targeted: ClassVar[bool] = False  # can aim at a chosen class
    needs_target: ClassVar[bool] = False  # only aims: a spec must give it a target
    # Makes inputs of its own rather than perturbing test inputs within a budget: scored apart from robust
    # accuracy (advsec.unrestricted), never mixed into it.
    unrestricted: ClassVar[bool] = False
    source: ClassVar[Source] = "carrier"  # what an unrestricted attack makes its inputs from
    # "gradient" needs input gradients, "query" only forward passes, "generator" learns first (generator.py)
    kind: ClassVar[Kind] = "gradient"
    modalities: ClassVar[tuple[str, ...]] = ("image", "audio")
    # Takes any number of samples, attacking ``batch`` at a time itself (the harness sets it): an attack
    # that stops early on each sample can then keep its batch full (gradient_attack's refill).
    streams: ClassVar[bool] = False
    batch: int | None = None
    # Decides in float32 what its search finds (advsec.precision: gradient_attack confirms every fooled
    # sample), so the harness may run its passes in bfloat16.
    reduced_search: ClassVar[bool] = False
    # Hands back the clean input where it fails (the original AutoAttack's APGD and FAB, torchattacks' CW):
    # such an output says nothing about what the attack climbed, so the loss check does not judge it.
    unchanged_when_failing: ClassVar[bool] = False
    # The class each output of the last ``perturb`` call was aimed at, for an attack that picks its targets
    # itself (APGD-T without a spec target): the loss check judges the output by it. Read per call, so an
    # attack that streams does not set it.
    aimed: torch.Tensor | None = None

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

    def objective(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Per sample, what this attack raises (higher is better for it), towards ``target`` if given.

        The loss check (:mod:`advsec.sanity`) asks whether the attack's outputs raised it above the clean
        inputs': judged on a loss the attack does not follow, a healthy attack looks stalled. Default: the
        plugin's ``loss`` field where it names one of :data:`Loss`, else cross-entropy.
        """
        loss = getattr(self, "loss", "ce")
        return attack_objective(logits, y, target, loss if loss in get_args(Loss) else "ce")

    def prepare(self, dataset: Dataset, *, seed: int, device: torch.device, progress: Progress) -> float:
        """Fit what the attack needs that does not depend on the attacked model (``natural-gan``'s GAN);
        returns the seconds that fit took. Called for unrestricted attacks only; nothing by default."""
        return 0.0


def attack_objective(
    logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, loss: Loss
) -> torch.Tensor:
    """Per-sample value the attacker maximizes: push away from ``y``, or towards ``target``.

    ``ce``: cross-entropy; ``cw``: the logit margin (Carlini & Wagner); ``dlr``: the margin divided by the
    spread of the top logits (Croce & Hein 2020), which makes it invariant to rescaling the logits.
    """
    if loss == "ce":
        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")
    aim = y if target is None else target
    aimed = logits.gather(1, aim[:, None]).squeeze(1)
    others = logits.scatter(1, aim[:, None], float("-inf")).amax(dim=1)
    if loss == "cw":
        return others - aimed if target is None else aimed - others
    if logits.shape[1] < (3 if target is None else 4):  # DLR's denominator needs that many classes
        return attack_objective(logits, y, target, "cw")
    top = logits.sort(dim=1, descending=True).values
    if target is None:  # -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)
        return (others - aimed) / (top[:, 0] - top[:, 2] + 1e-12)
    true = logits.gather(1, y[:, None]).squeeze(1)  # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    return (aimed - true) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12)


def best_targeted_objective(
    logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, loss: Loss
) -> torch.Tensor:
    """The targeted ``loss`` towards ``target``; without one, towards the most promising class other than
    ``y``: what an untargeted attack built from targeted runs (APGD-T) raises, since each run climbs the
    margin towards its own target."""
    if target is not None:
        return attack_objective(logits, y, target, loss)
    classes = torch.arange(logits.shape[1], device=y.device)
    every = torch.stack([attack_objective(logits, y, c.expand_as(y), loss) for c in classes], dim=1)
    return every.masked_fill(classes == y[:, None], float("-inf")).amax(dim=1)


def fooled(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Per-sample success: misclassified (untargeted) or classified as ``target``."""
    predicted = logits.argmax(dim=1)
    return predicted != y if target is None else predicted == target


class Stepper(Protocol):
    """How an iterate moves, given the gradient and objective measured at it.

    A stepper may keep per-sample state (momentum, step sizes); when the engine drops samples that are
    already fooled it calls :meth:`keep` so the state follows.
    """

    def step(
        self, t: int, x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        """Iterate ``t + 1`` from iterate ``t`` (``x`` are the clean inputs)."""
        ...

    def keep(self, mask: torch.Tensor) -> None:
        """Forget the samples where ``mask`` is False."""
        ...


@dataclass
class SteepestAscent:
    """Projected steepest ascent with a fixed step, one for all samples or one per sample: PGD, BIM, FGSM."""

    threat: ThreatModel
    step_size: float | torch.Tensor  # a tensor is per sample, shaped (N, 1, ...) like the threat's radius

    def step(
        self, t: int, x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        return self.threat.project(x, self.threat.ascend(x_adv, grad, self.step_size))

    def keep(self, mask: torch.Tensor) -> None:
        self.step_size = _keep_rows(self.step_size, mask)


@dataclass
class MomentumAscent:
    """Steepest ascent along an accumulated, L1-normalized gradient (Dong et al. 2018, MI-FGSM)."""

    threat: ThreatModel
    step_size: float | torch.Tensor
    decay: float
    velocity: torch.Tensor | None = field(default=None, repr=False)

    def step(
        self, t: int, x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        scale = grad.abs().flatten(1).mean(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
        self.velocity = grad / scale if self.velocity is None else self.decay * self.velocity + grad / scale
        return self.threat.project(x, self.threat.ascend(x_adv, self.velocity, self.step_size))

    def keep(self, mask: torch.Tensor) -> None:
        if self.velocity is not None:
            self.velocity = self.velocity[mask]
        self.step_size = _keep_rows(self.step_size, mask)


def _keep_rows(step_size: float | torch.Tensor, mask: torch.Tensor) -> float | torch.Tensor:
    return step_size[mask] if isinstance(step_size, torch.Tensor) else step_size


def gradient_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float | None = None,
    step_fraction: float | None = None,
    stepper: Callable[[torch.Tensor], Stepper] | None = None,
    random_start: bool = False,
    restarts: int = 1,
    loss: Loss = "ce",
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    eot: int = 1,
    early_stop: bool = True,
    keep_worst: bool = True,
    batch: int | None = None,
) -> torch.Tensor:
    """The iterative gradient loop every gradient attack is built on.

    Each iteration measures the objective and its input gradient at the current iterate (for a stochastic
    model, of its expected prediction over ``eot`` draws: :class:`~advsec.defense.Expectation`), records
    the per-sample worst case, and moves with the stepper (``stepper(x)`` makes one per restart; default:
    steepest ascent of ``step_size``, or of ``step_fraction`` of each sample's radius in the threat model).
    A sample's result is the first iterate that fools the model; a sample never fooled keeps the
    highest-loss final iterate of its restarts. With ``early_stop`` a fooled sample leaves the batch at
    once, and each restart attacks only the samples no earlier restart fooled. With ``keep_worst=False``
    it returns the last iterate of one run for every sample, as adversarial training uses it.

    With ``batch`` (default stepper only) at most that many samples are attacked at once, and a row whose
    sample leaves is refilled with the next one at once: the batch stays full while samples wait, instead
    of the last few survivors of each batch iterating at sizes where per-step fixed costs dominate.
    """
    if batch is not None and stepper is not None:
        raise ValueError("gradient_attack refills its batch only with the default stepper")
    if eot > 1:
        model = Expectation(model, eot)
    if stepper is None:
        if (step_size is None) == (step_fraction is None):
            raise ValueError("gradient_attack needs one of step_size, step_fraction or a stepper")
        size, fraction = step_size, step_fraction

        def stepper(x0: torch.Tensor) -> Stepper:
            return SteepestAscent(threat, size if fraction is None else fraction * threat.radius(x0))

    if not keep_worst:
        x_adv = _start(x, threat, random_start, generator)
        moves = stepper(x)
        for t in range(steps):
            _, value, grad = _measure(model, x_adv, y, target, loss)
            x_adv = moves.step(t, x, x_adv, grad, value)
        return x_adv

    worst = WorstCase(x)
    for _ in range(restarts):
        queue = worst.unfooled()
        if len(queue) == 0:
            break
        rows = Rows(x, y, target, queue)
        rows.start(batch or len(queue), threat, random_start, generator)
        moves = stepper(rows.x0)
        for t in itertools.count():
            final = rows.taken == steps
            if (final | ~rows.live).all():  # the last iterates need no gradient
                with torch.no_grad():
                    logits = model(rows.x_adv)
                    value, grad = attack_objective(logits, rows.y, rows.target, loss), None
            else:
                logits, value, grad = _measure(model, rows.x_adv, rows.y, rows.target, loss)
            hit = confirmed(fooled(logits, rows.y, rows.target) & rows.live, rows.fools(model))
            # Keep only fooling or final iterates: copying every iterate costs a step's worth.
            if (seen := hit | (final & rows.live)).any():
                worst.update(rows.index[seen], rows.x_adv[seen], value[seen], hit[seen])
            rows.live &= ~(final | hit) if early_stop else ~final
            if not rows.live.any() and not len(rows.queue):
                break
            if not len(rows.queue) and (keep := _rows_to_keep(rows.live)) is not None:
                rows.keep(keep)
                grad, value = (None if grad is None else grad[keep]), value[keep]
                moves.keep(keep)
            if grad is not None:
                rows.x_adv = moves.step(t, rows.x0, rows.x_adv, grad, value)
                rows.taken += 1
            if rows.refill(threat, random_start, generator):
                moves = stepper(rows.x0)
    return worst.best


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The share of ``x`` that ``model`` labels ``y``."""
    return (model(x).argmax(1) == y).float().mean().item()


def robust_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, **settings: Any
) -> float:
    """The accuracy :func:`gradient_attack` with ``settings`` leaves on ``x`` (0 when ``x`` is empty)."""
    if not len(x):
        return 0.0
    return accuracy(model, gradient_attack(model, x, y, threat, **settings), y)


def _rows_to_keep(live: torch.Tensor) -> torch.Tensor | None:
    """Which rows the shrunk batch keeps once samples drop out, or None to leave the batch as it is.

    The batch shrinks only to a few sizes (eight per octave above 16 rows), padded with finished rows
    that ride along unrecorded. CPU kernels are set up once per batch shape, and a new shape costs
    noticeably more than a seen one (oneDNN): shrinking to every exact count made early exit on an
    adversarially trained model no faster than torchattacks' full batches. benchmarks/attack_speed.py
    measures both side by side (docs/results.md).
    """
    count = int(live.sum())
    grain = 1 << max(count.bit_length() - 4, 0)  # eight sizes per octave: at most 1/8 of the rows ride along
    size = -(-count // grain) * grain
    if size >= len(live):
        return None
    keep = live.clone()
    keep[(~live).nonzero().squeeze(1)[: size - count]] = True
    return keep


def _measure(
    model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, loss: Loss
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, objective and input gradient at ``x_adv``."""
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv)
    value = attack_objective(logits, y, target, loss)
    (grad,) = torch.autograd.grad(value.sum(), x_adv)
    return logits.detach(), value.detach(), grad


@dataclass
class Rows:
    """The samples in flight (``index`` into the attacked inputs ``x``, ``y``, ``aims``), the ones in
    ``queue`` waiting for a free row, and each row's steps taken. Rows no longer ``live`` ride along
    unrecorded until refilled or dropped."""

    x: torch.Tensor
    y_all: torch.Tensor
    aims: torch.Tensor | None
    queue: torch.Tensor
    index: torch.Tensor = field(init=False)
    x0: torch.Tensor = field(init=False)
    y: torch.Tensor = field(init=False)
    target: torch.Tensor | None = field(init=False)
    x_adv: torch.Tensor = field(init=False)
    taken: torch.Tensor = field(init=False)
    live: torch.Tensor = field(init=False)

    def start(self, size: int, threat: ThreatModel, random_start: bool, gen: torch.Generator | None) -> None:
        """Make ``size`` rows (fewer if fewer wait) and fill them with waiting samples, at their start."""
        size = min(size, len(self.queue))
        self.index, self.taken = self.queue.new_empty(size), self.queue.new_zeros(size)
        self.x0, self.y = self.x.new_empty((size, *self.x.shape[1:])), self.y_all.new_empty(size)
        self.target = None if self.aims is None else self.aims.new_empty(size)
        self.x_adv = torch.empty_like(self.x0)
        self.live = torch.zeros(size, dtype=torch.bool, device=self.x.device)
        self.refill(threat, random_start, gen)

    def fools(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """Whether ``model`` is fooled at the current iterates of the rows it is given."""

        def verdict(rows: torch.Tensor) -> torch.Tensor:
            aims = None if self.target is None else self.target[rows]
            return fooled(model(self.x_adv[rows]), self.y[rows], aims)

        return verdict

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the rows where ``mask`` is False."""
        for name in ("index", "x0", "y", "target", "x_adv", "taken", "live"):
            if (value := getattr(self, name)) is not None:
                setattr(self, name, value[mask])

    def refill(self, threat: ThreatModel, random_start: bool, gen: torch.Generator | None) -> bool:
        """Put waiting samples into the rows no longer live, at their start; whether any came in."""
        if not len(self.queue):
            return False
        free = (~self.live).nonzero().squeeze(1)[: len(self.queue)]
        if not len(free):
            return False
        incoming, self.queue = self.queue[: len(free)], self.queue[len(free) :]
        self.index[free] = incoming
        self.x0[free] = self.x[incoming]
        self.y[free] = self.y_all[incoming]
        if self.target is not None:
            self.target[free] = self.aims[incoming]
        self.x_adv[free] = _start(self.x[incoming], threat, random_start, gen)
        self.taken[free] = 0
        self.live[free] = True
        return True


def _start(
    x: torch.Tensor, threat: ThreatModel, random_start: bool, generator: torch.Generator | None
) -> torch.Tensor:
    return threat.random_start(x, generator) if random_start else x.detach().clone()


class WorstCase:
    """Each sample's worst case so far: its first fooling point, else its highest-objective point."""

    def __init__(self, x: torch.Tensor) -> None:
        self.best = x.detach().clone()
        self.value = torch.full((len(x),), float("-inf"), device=x.device)
        self.success = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def unfooled(self) -> torch.Tensor:
        return (~self.success).nonzero().squeeze(1)

    def update(
        self, index: torch.Tensor, candidate: torch.Tensor, value: torch.Tensor, hit: torch.Tensor
    ) -> None:
        better = ~self.success[index] & (hit | (value > self.value[index]))
        chosen = index[better]
        self.best[chosen] = candidate[better].detach()
        self.value[chosen] = value[better]
        self.success[chosen] = hit[better]
