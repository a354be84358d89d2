"""Defenses: the plugin contract. A defense changes how a model is trained, how it predicts, or both.

A defense plugin is a dataclass subclass of :class:`Defense`; its fields are the parameters a spec may set.
The core training loop (:mod:`advsec.train`) asks it for the loss of each batch; the harness asks it to
``wrap`` the trained model for inference-time behaviour. Class flags tell the harness how far a single,
naive evaluation can be trusted: a ``stochastic`` or non-``differentiable`` defense is attacked a second
time adaptively (Athalye, Carlini & Wagner 2018), through :meth:`Defense.adaptive` and an
:class:`Expectation` over its randomness.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from advsec.data import Dataset
from advsec.norms import Norm
from advsec.progress import Progress
from advsec.spec import EOT_AUTO as AUTO
from advsec.spec import EOT_MOST_DRAWS as MOST_DRAWS
from advsec.threat import ThreatModel

Bounds = tuple[float, float]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardCheck:
    """What the overfitting guard learns from one held-out check of a model in training."""

    robust: float  # accuracy under the check's attack
    overfit: bool = False  # the defense sees catastrophic overfitting's sign, drop or no drop


class Defense:
    """Base class of defense plugins. The default is standard training and an unchanged model."""

    stochastic: ClassVar[bool] = False  # predictions vary from call to call
    stateful: ClassVar[bool] = False  # predictions depend on the queries seen so far
    differentiable: ClassVar[bool] = True  # the deployed model's input gradient is the one to follow
    # Deployed as a base classifier under N(0, sigma²) input noise, so Cohen et al.'s certificate applies
    # to its smoothed classifier (:mod:`advsec.certify`); such a defense has a ``sigma`` field.
    certifiable: ClassVar[bool] = False
    modalities: ClassVar[tuple[str, ...]] = ("image", "audio")
    # The defense whose training this one's is, exactly (same loss, no fields of its own that matter): the
    # trained network is shared with it through the cache. None: trained as itself.
    trained_like: ClassVar[str | None] = None

    # Training samples held out for a per-epoch robustness check (see :meth:`check`); 0 turns it off.
    # A check more than `guard_drop` below the best epoch's means training collapsed: the best epoch is
    # restored, at most `guard_retries` times before training stops (advsec.train.OverfittingGuard).
    guard_samples: int = 0
    guard_drop: float = 0.2
    guard_retries: int = 2

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        generator: torch.Generator | None = None,
        progress: float = 1.0,
    ) -> torch.Tensor:
        """The training loss of one batch (mean over the batch); standard cross-entropy by default.

        ``progress`` is the fraction of training done (0 to 1), for defenses that ramp up, e.g. their eps.
        """
        return F.cross_entropy(model(x), y)

    def check(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        generator: torch.Generator,
    ) -> GuardCheck:
        """Robust accuracy on held-out samples after an epoch; a sharp drop means training collapsed."""
        raise NotImplementedError(f"{type(self).__name__} sets guard_samples but has no check")

    def prepare(self, dataset: Dataset, *, seed: int, device: torch.device, progress: Progress) -> float:
        """Fit what the deployed model needs besides the trained network (``defense-gan``'s GAN), before
        :meth:`wrap`; returns the seconds that fit took. Nothing by default."""
        return 0.0

    def network_passes_per_query(self, input_shape: tuple[int, ...]) -> int:
        """Network passes one pass of the deployed model costs on a sample shaped ``input_shape``, for the
        cost estimate: more than one for a defense that computes before classifying (``defense-gan``'s
        projection) or classifies many views of each input (``derandomized-smoothing``'s bands)."""
        return 1

    def trainer(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        samples: int,
        batch_size: int,
        epochs: int,
        generator: torch.Generator,
        log: Callable[[str], None],
    ) -> Trainer:
        """How training takes its steps on ``samples`` training samples: the batches and the optimizer.

        Shuffled batches of ``batch_size`` and ``optimizer`` as it is by default; ``dp-sgd`` draws Poisson
        batches and clips and noises per-sample gradients (Opacus), and counts the privacy spent.
        """
        return Trainer(optimizer, samples, batch_size, generator)

    def network(self, build: Callable[[int], nn.Module]) -> nn.Module:
        """The network this defense trains; ``build(i)`` makes the i-th freshly initialized model.

        One model by default; an ensemble defense builds several and trains them side by side.
        """
        return build(0)

    def wrap(self, model: nn.Module, *, bounds: Bounds) -> nn.Module:
        """The model as deployed (inference-time defenses replace or wrap it); unchanged by default."""
        return model

    def snapshot(self, deployed: nn.Module) -> nn.Module | None:
        """The deployed model held still as it is now: what an attacker who copied it at this moment holds.

        A static model is its own snapshot. A moving one (``stochastic`` or ``stateful``) can be held still
        when its deployed module has a ``snapshot()`` method; None when it cannot.
        """
        if hasattr(deployed, "snapshot"):
            return deployed.snapshot()
        return None if self.stochastic or self.stateful else deployed

    def certified(self, deployed: nn.Module, x: torch.Tensor, threat: ThreatModel) -> torch.Tensor | None:
        """Per sample of ``x``, whether ``deployed``'s prediction provably holds for every input within
        ``threat`` (an exact certificate, like (de)randomized smoothing's against a patch); None for a
        threat this defense certifies nothing against, the default. The harness scores it in every cell and
        flags a certified sample that an attack broke."""
        return None

    def adaptive(self, deployed: nn.Module) -> nn.Module:
        """The deployed model as an adaptive attacker differentiates it; the deployed model by default.

        Non-differentiable defenses return a view with a usable surrogate gradient (BPDA). Randomness is
        handled by the harness, which averages this view over draws (:class:`Expectation`).
        """
        return deployed


class Trainer:
    """How training takes its steps: the batches of each epoch and the optimizer stepping on their loss.

    The default: each epoch a fresh permutation of the samples cut into batches of ``batch_size``, and the
    optimizer as given. A context manager: leaving it undoes what training added to the model.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, samples: int, batch_size: int, generator: torch.Generator
    ) -> None:
        self.optimizer = optimizer
        self.samples, self.batch_size, self.generator = samples, batch_size, generator
        self.batches = -(-samples // batch_size)  # per epoch

    def epoch(self) -> Iterator[torch.Tensor]:
        """The sample indices of each batch of one epoch."""
        return iter(torch.randperm(self.samples, generator=self.generator).split(self.batch_size))

    def record(self) -> dict[str, float]:
        """What an epoch's history record gains (``dp-sgd``: the privacy spent so far); nothing here."""
        return {}

    def close(self) -> None:
        """Undo what training added to the model; nothing here."""

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class AdversarialTraining(Defense):
    """Base of defenses that train on adversarial examples within an ``eps``-ball of the training data.

    ``warmup`` is the fraction of training over which the budget grows linearly from 0 to ``eps``:
    training at the full budget from the first batch can collapse into a constant classifier or into
    catastrophic overfitting (seen on MNIST at eps 0.3; docs/results.md, reproductions, trains PGD-AT so
    with a warm-up).
    """

    eps: float = 0.3
    norm: Norm = "linf"
    warmup: float = 0.0

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup}")

    def threat(self, bounds: Bounds, progress: float) -> ThreatModel | None:
        """The training threat model at this point of training; None while the budget is still 0.

        The warm-up grows the radius linearly, so a relative (dB) budget starts silent and rises to ``eps``.
        """
        full = ThreatModel(self.norm, self.eps, bounds)
        if progress >= self.warmup:
            return full
        return full.scaled(progress / self.warmup) if progress > 0 else None

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        generator: torch.Generator | None = None,
        progress: float = 1.0,
    ) -> torch.Tensor:
        threat = self.threat(bounds, progress)
        if threat is None:
            return F.cross_entropy(model(x), y)
        return self.adversarial_loss(model, x, y, threat, generator)

    def adversarial_loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """The batch loss at the current training budget ``threat``: what each method defines."""
        raise NotImplementedError


AGREEMENT = 0.9  # median cosine two independent gradient estimates must reach for their draws to suffice
ESTIMATES = 4  # independent gradient estimates compared pairwise per number of draws tried
PROBE = 32  # samples of the first differentiated batch the draws are measured on
PROVISIONAL = 10  # draws averaged before any input was differentiated (no-gradient calls only)


class Expectation(nn.Module):
    """EOT: the expected prediction of a random model, as log-probabilities averaged over ``draws`` calls.

    Differentiating it gives the gradient of the expected classifier, which is what an attacker who
    knows the defense's randomness optimizes. Each call runs the model ``draws`` times.

    With ``draws="auto"`` the number is measured for the model, on the first input an attack
    differentiates (its first iterate): ``ESTIMATES`` independent estimates of the expected loss's input
    gradient, each over n draws, are compared on up to ``PROBE`` samples, and n doubles from 1 until their
    cosine similarity (the median over samples, averaged over the pairs) reaches ``AGREEMENT`` or n
    reaches ``MOST_DRAWS``. Several pairs, not one: a defense that draws once per call for the whole batch
    (a random ensemble's member) gives two one-draw estimates the same draw, and so full agreement, a
    third of the time with three members. A model whose randomness barely
    moves its gradient keeps one draw; a very noisy one gets many. The measuring passes run through the
    model like any other, so whatever counts the attack's passes counts them too; they draw from the same
    generators as the attack, so a seeded evaluation repeats them exactly. ``measured`` keeps each
    (n, agreement) tried.
    """

    def __init__(self, model: nn.Module, draws: int | str) -> None:
        super().__init__()
        if draws != AUTO and not (isinstance(draws, int) and draws >= 1):
            raise ValueError(f"draws must be a positive int or {AUTO!r}, got {draws!r}")
        self.model = model
        self.auto = draws == AUTO
        self.draws: int | None = None if self.auto else int(draws)
        self.measured: list[tuple[int, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.draws is None and x.requires_grad and torch.is_grad_enabled():
            self.draws = self.choose(x.detach())
        return self.expected(x, self.draws or PROVISIONAL)

    def expected(self, x: torch.Tensor, draws: int) -> torch.Tensor:
        probabilities = torch.stack([F.softmax(self.model(x), dim=1) for _ in range(draws)]).mean(0)
        return probabilities.clamp_min(1e-12).log()

    def choose(self, x: torch.Tensor) -> int:
        """The fewest draws (a power of two, at most ``MOST_DRAWS``) whose gradient estimates agree."""
        x = x[:PROBE]
        draws = 1
        while True:
            first, label = self._gradient(x, draws, None)
            estimates = [first] + [self._gradient(x, draws, label)[0] for _ in range(ESTIMATES - 1)]
            flat = [g.flatten(1) for g in estimates]
            seen = torch.stack([g.norm(dim=1) > 0 for g in flat]).all(0)  # blind samples agree at no draws
            pairs = [(a, b) for i, a in enumerate(flat) for b in flat[i + 1 :]]
            medians = [F.cosine_similarity(a[seen], b[seen], dim=1).median() for a, b in pairs]
            agreement = float(torch.stack(medians).mean()) if seen.any() else 1.0
            self.measured.append((draws, agreement))
            if agreement >= AGREEMENT or draws >= MOST_DRAWS:
                log.info("EOT: %d draws (median gradient agreement %.3f; tried %s)", draws, agreement,
                         ", ".join(f"{n}: {a:.3f}" for n, a in self.measured))  # fmt: skip
                return draws
            draws = min(2 * draws, MOST_DRAWS)

    def _gradient(
        self, x: torch.Tensor, draws: int, label: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The input gradient of the expected cross-entropy over ``draws`` draws, towards leaving ``label``
        (the expected prediction's own class when None), and that label."""
        with torch.enable_grad():
            x = x.clone().requires_grad_(True)
            log_probabilities = self.expected(x, draws)
            label = log_probabilities.argmax(1).detach() if label is None else label
            loss = F.nll_loss(log_probabilities, label, reduction="sum")
            (gradient,) = torch.autograd.grad(loss, x)
        return gradient, label


class InputTransform(Defense):
    """A defense that transforms every input before the model sees it, in training as when deployed."""

    def transform(
        self, x: torch.Tensor, bounds: Bounds, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The transformed batch; random transforms draw from ``generator`` (torch's global one if None)."""
        raise NotImplementedError

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        generator: torch.Generator | None = None,
        progress: float = 1.0,
    ) -> torch.Tensor:
        """Cross-entropy on transformed inputs: the model learns the inputs it will be deployed on."""
        return F.cross_entropy(model(self.transform(x, bounds, generator)), y)

    def wrap(self, model: nn.Module, *, bounds: Bounds) -> nn.Module:
        return Transformed(model, self, bounds)

    def adaptive(self, deployed: nn.Module) -> nn.Module:
        if self.differentiable or not isinstance(deployed, Transformed):
            return deployed
        return Transformed(deployed.model, self, deployed.bounds, straight_through=True)


class Transformed(nn.Module):
    """``model(transform(x))``; with ``straight_through`` the backward pass treats the transform as the
    identity (BPDA), so gradients reach the input through a non-differentiable step."""

    def __init__(
        self, model: nn.Module, defense: InputTransform, bounds: Bounds, *, straight_through: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.defense = defense
        self.bounds = bounds
        self.straight_through = straight_through

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        transformed = self.defense.transform(x, self.bounds)
        if self.straight_through:
            transformed = x + (transformed - x).detach()
        return self.model(transformed)
