"""DP-SGD (Abadi et al. 2016) through Opacus: per-sample gradients clipped, Gaussian noise, Poisson batches.

Each training step draws every sample independently with probability batch_size / n (Poisson sampling),
clips each sample's gradient to ℓ2 norm ``max_grad_norm``, adds N(0, (noise_multiplier · max_grad_norm)²)
to their sum, and steps; Opacus' accountant turns the steps taken into the (ε, δ) spent, which every epoch's
history record carries (and so the store, the model cache and the scorecard).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import advsec.registry as registry
from advsec.defense import Bounds, Defense, Trainer
from advsec.errors import InputError
from advsec.spec import make_plugin

INSTALL = 'pip install -e ".[privacy]"'
DEFAULT_NOISE = 1.0  # noise_multiplier when neither it nor a target epsilon is given


@dataclass
class DPSGD(Defense):
    """Differentially private training, of cross-entropy or of an adversarial training's loss.

    ``noise_multiplier`` sets the noise, or ``epsilon`` asks Opacus for the least noise whose ε after the
    ``[train]`` epochs stays within it, at ``delta``. ``adversarial`` names a defense that only trains
    (``"pgd-at"``, or a table with its parameters: ``{ name = "pgd-at", eps = 0.1 }``); its loss is the one
    made private. Its examples are crafted in eval mode, as advsec's adversarial trainings all do, and
    Opacus records per-sample gradients of training-mode passes only. Its overfitting guard is off: it would
    choose epochs on held-out samples outside the accounting.
    """

    noise_multiplier: float | None = None
    epsilon: float | None = None
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: Literal["prv", "rdp", "gdp"] = "prv"
    adversarial: str | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        opacus()  # before any compute: a spec naming dp-sgd fails at once without it
        if self.noise_multiplier is not None and self.epsilon is not None:
            raise ValueError("give noise_multiplier or epsilon (a target), not both")
        for name in ("noise_multiplier", "epsilon", "max_grad_norm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        self.base = self._base()
        self.fixed: list[str] = []  # what network() changed for Opacus, said in the training log

    def _base(self) -> Defense:
        """The defense whose loss is made private; ``adversarial`` becomes its full table, defaults
        included, so that the model cache's key changes with any of them."""
        if self.adversarial is None:
            return Defense()
        table = {"name": self.adversarial} if isinstance(self.adversarial, str) else dict(self.adversarial)
        name = table.pop("name", None)
        if not isinstance(name, str):
            raise ValueError('adversarial needs a name, e.g. { name = "pgd-at", eps = 0.1 }')
        cls = registry.defenses.get(name)
        if not _only_trains(cls):
            raise ValueError(
                f"adversarial: {name!r} does more than train (it changes the deployed model, its network or "
                "its training steps); dp-sgd makes the loss of one that only trains private: "
                "standard, fgsm-at, fast-at, pgd-at, trades"
            )
        base = make_plugin(cls, table, "adversarial")
        self.adversarial = {
            "name": name,
            **{f.name: _plain(getattr(base, f.name)) for f in fields(base) if f.init},
        }
        return base

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
        if not len(x):  # an empty Poisson batch: no sample's gradient; the step adds noise alone
            return model(x).sum()
        return self.base.loss(model, x, y, bounds=bounds, generator=generator, progress=progress)

    def network(self, build: Callable[[int], nn.Module]) -> nn.Module:
        """The model with what Opacus cannot train replaced by Opacus' own fix (batch norm, which mixes the
        samples of a batch, by group norm); done here so that the cached model is built the same way."""
        from opacus.validators import ModuleValidator

        model = build(0)
        errors = ModuleValidator.validate(model, strict=False)
        if not errors:
            return model
        fixed = ModuleValidator.fix(model)
        before, after = dict(model.named_modules()), dict(fixed.named_modules())
        changed = [name for name in before if name in after and type(before[name]) is not type(after[name])]
        self.fixed = [
            f"{name}: {type(before[name]).__name__} -> {type(after[name]).__name__}" for name in changed
        ]
        return fixed

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
        return PrivateTrainer(self, model, optimizer, samples=samples, batch_size=batch_size, epochs=epochs,
                              generator=generator, log=log)  # fmt: skip


class PrivateTrainer(Trainer):
    """Opacus' Poisson batches, clipping and noise on ``model`` (hooked, not wrapped), and its accountant."""

    def __init__(
        self,
        defense: DPSGD,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        samples: int,
        batch_size: int,
        epochs: int,
        generator: torch.Generator,
        log: Callable[[str], None],
    ) -> None:
        from opacus import PrivacyEngine
        from opacus.validators import ModuleValidator

        errors = ModuleValidator.validate(model, strict=False)
        if errors:
            raise InputError(
                "dp-sgd cannot train this model: Opacus needs per-sample gradients, and "
                + "; ".join(str(e) for e in errors)
                + " (dp-sgd fixes advsec's own models, batch norm to group norm; retrain yours without it)"
            )
        if defense.fixed:
            log(f"DP-SGD: Opacus' ModuleValidator.fix replaced {', '.join(defense.fixed)}")
        if defense.delta >= 1 / samples:
            log(f"DP-SGD: delta {defense.delta:g} is not below 1/n = {1 / samples:.2g}: a weak guarantee")
        self.delta = defense.delta
        with warnings.catch_warnings():  # seeded, as every advsec run: Opacus' secure_mode is off on purpose
            warnings.filterwarnings("ignore", "Secure RNG turned off")
            self.engine = PrivacyEngine(accountant=defense.accountant)
        device = next(model.parameters()).device
        noise = torch.Generator(device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        # Opacus samples the batches: a loader of sample indices, which make_private makes a Poisson one
        indices = DataLoader(TensorDataset(torch.arange(samples)), batch_size=batch_size, generator=generator)
        common = {"module": model, "optimizer": optimizer, "data_loader": indices, "wrap_model": False,
                  "max_grad_norm": defense.max_grad_norm, "noise_generator": noise}  # fmt: skip
        if defense.epsilon is None:
            noise_multiplier = defense.noise_multiplier or DEFAULT_NOISE
            made = self.engine.make_private(noise_multiplier=noise_multiplier, **common)
        else:
            made = self.engine.make_private_with_epsilon(
                target_epsilon=defense.epsilon, target_delta=defense.delta, epochs=epochs, **common
            )
        self.hooks, private, self.loader = made
        super().__init__(private, samples, batch_size, generator)
        self.batches = len(self.loader)
        self.noise_multiplier = private.noise_multiplier
        # Adversarial examples are crafted in eval mode: their input-gradient passes must not reach the
        # per-sample gradients, which Opacus computes in backward hooks; each pass switches them for its mode.
        self.switch = model.register_forward_pre_hook(
            lambda module, _: setattr(self.hooks, "hooks_enabled", module.training)
        )
        log(f"DP-SGD at noise multiplier {self.noise_multiplier:.4g}, clipping at {defense.max_grad_norm:g}, "
            f"sampling rate {1 / self.batches:.4g}, {self.batches} steps an epoch")  # fmt: skip

    def epoch(self) -> Iterator[torch.Tensor]:
        return (batch for (batch,) in self.loader)

    def record(self) -> dict[str, float]:
        return {
            "epsilon": float(self.engine.get_epsilon(self.delta)),
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
        }

    def close(self) -> None:
        self.switch.remove()
        self.hooks.cleanup()


def opacus() -> Any:
    """The opacus module, or a message naming the extra that installs it."""
    try:
        import opacus
    except ImportError as exc:
        raise InputError(
            f"dp-sgd trains with Opacus, which is not installed: {INSTALL} (or pip install opacus==1.6.0)"
        ) from exc
    return opacus


def _only_trains(cls: type) -> bool:
    """Whether a defense class changes nothing but the training loss (so its loss can be made private)."""
    same = ("wrap", "network", "prepare", "trainer", "adaptive", "snapshot")
    flags = cls.stochastic or cls.stateful or not cls.differentiable or cls.trained_like is not None
    return (
        issubclass(cls, Defense) and not flags and all(getattr(cls, m) is getattr(Defense, m) for m in same)
    )


def _plain(value: Any) -> Any:
    """A field's value as a spec would give it (lists, not tuples), so the table builds the same defense."""
    return list(value) if isinstance(value, tuple) else value
