"""Defenses: the plugin contract. A defense changes how a model is trained, how it predicts, or both.

A defense plugin is a dataclass subclass of :class:`Defense`; its fields are the parameters a spec may set.
The core training loop (:mod:`advsec.train`) asks it for the loss of each batch; the harness asks it to
``wrap`` the trained model for inference-time behaviour. Class flags tell the harness how far a single,
naive evaluation can be trusted: a ``stochastic`` or non-``differentiable`` defense is attacked a second
time adaptively (Athalye, Carlini & Wagner 2018), through :meth:`Defense.adaptive` and an
:class:`Expectation` over its randomness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from advsec.data import Dataset
from advsec.norms import Norm
from advsec.progress import Progress
from advsec.threat import ThreatModel

Bounds = tuple[float, float]


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

    def network_passes_per_query(self) -> int:
        """Network passes one pass of the deployed model costs, for the cost estimate: more than one for a
        defense that computes before classifying (``defense-gan``'s projection)."""
        return 1

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

    def adaptive(self, deployed: nn.Module) -> nn.Module:
        """The deployed model as an adaptive attacker differentiates it; the deployed model by default.

        Non-differentiable defenses return a view with a usable surrogate gradient (BPDA). Randomness is
        handled by the harness, which averages this view over draws (:class:`Expectation`).
        """
        return deployed


@dataclass
class AdversarialTraining(Defense):
    """Base of defenses that train on adversarial examples within an ``eps``-ball of the training data.

    ``warmup`` is the fraction of training over which the budget grows linearly from 0 to ``eps``:
    training at the full budget from the first batch can collapse into a constant classifier or into
    catastrophic overfitting (measured on MNIST at eps 0.3).
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


class Expectation(nn.Module):
    """EOT: the expected prediction of a random model, as log-probabilities averaged over ``draws`` calls.

    Differentiating it gives the gradient of the expected classifier, which is what an attacker who
    knows the defense's randomness optimizes. Each call runs the model ``draws`` times.
    """

    def __init__(self, model: nn.Module, draws: int) -> None:
        super().__init__()
        self.model = model
        self.draws = draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([F.softmax(self.model(x), dim=1) for _ in range(self.draws)]).mean(0)
        return probabilities.clamp_min(1e-12).log()


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
