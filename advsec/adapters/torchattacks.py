"""torchattacks (Kim 2020) served through advsec's attack registry as ``torchattacks:NAME``.

Each torchattacks attack class becomes an advsec attack plugin: a dataclass whose fields are the
torchattacks constructor's parameters, typed from their defaults, so a spec's ``[[attacks]]`` table is
validated like any other plugin's. advsec keeps what decides whether a result is valid:

- **Budget**: ``eps`` (PIFGSM's ``max_epsilon``) and ``norm`` come from the threat model, never from a spec.
  ``seed`` comes from advsec's generator, ``n_classes`` from the model, and ``verbose`` stays off.
- **Domain**: torchattacks assumes inputs in [0, 1]. It attacks u ↦ model(low + (high − low)·u) at
  u = (x − low)/(high − low), with eps and every *length* parameter (:data:`_LENGTHS`: step sizes, noise
  scales, finite-difference widths) divided by (high − low), so a value means the same distance in the
  dataset's units whatever its bounds. Weights, rates and ratios (``c``, ``kappa``, CW's ``lr``, ``decay``)
  are unitless and used as given.
- **Randomness**: torchattacks draws from torch's and numpy's global generators; each call runs in a fork
  of both, seeded from the generator advsec passes, so runs reproduce and the caller's streams are untouched.
- **Result**: projected onto the threat model (minimum-norm attacks such as CW or DeepFool have no budget
  of their own) and checked to be finite.

Capabilities: ``norms`` are those of a ``norm`` parameter (APGD, FAB, Square, AutoAttack: linf and l2),
else l2 for l2 attacks (name contains ``L2``) and for minimum-norm, l1 and l0 attacks (:data:`_MINIMUM_NORM`),
else linf. advsec enforces no l1 or l0 ball, and projecting a sparse or minimal perturbation onto an l2 ball
keeps its direction, where linf clipping would flatten it. ``targeted`` means torchattacks supports the
targeted mode (except :data:`_UNTARGETED`). ``kind`` is "query" for attacks that never take a gradient
(:data:`_QUERY`). ``modalities`` is image only, because torchattacks expects (N, C, H, W) batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import re
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from advsec.attack import Attack, attack_objective, best_targeted_objective
from advsec.errors import BudgetError, InputError, PluginError
from advsec.registry import unknown_name_message
from advsec.threat import ThreatModel

PREFIX = "torchattacks"
INSTALL_HINT = (
    "torchattacks is not installed: pip install --no-deps torchattacks==3.5.1 "
    "(its declared torchvision/requests pins are not needed)"
)

# Classes not served, and why. AutoAttack is served: its parts (APGD, APGD-T, FAB-T, Square) take eps,
# norm, seed and n_classes from advsec just as they do when served alone.
_EXCLUDED = {
    "MultiAttack": "combines already-built attack objects, which a spec cannot express",
    "LGV": "trains surrogate models on a DataLoader of training data before attacking",
}

# Constructor parameters advsec sets itself (see the module docstring); never fields a spec could set.
_BUDGET = {"eps", "max_epsilon"}  # PIFGSM and PIFGSMPP call their budget max_epsilon
_SET_BY_ADVSEC = {"model", "norm", "seed", "verbose", "n_classes", *_BUDGET}
_TORCHATTACKS_NORM = {"linf": "Linf", "l2": "L2"}

# Lengths in input space, divided by (high − low) on the way to torchattacks' [0, 1] inputs. `alpha` is
# every iterative attack's step size (linf or l2), `noise_sd` PGDRS's smoothing noise, `delta` SPSA's
# finite-difference width, `theta` JSMA's per-pixel change. `std` and `lr` are lengths only in GN (noise)
# and SPSA (Adam steps on the perturbation); elsewhere they are output noise (Jitter) or optimizer rates.
_LENGTHS = {"alpha", "noise_sd", "delta", "theta"}
_CLASS_LENGTHS = {"GN": {"std"}, "SPSA": {"lr"}}

# Real-valued parameters that torchattacks writes with integer defaults (CW's c=1, kappa=0, SparseFool's
# lam=3, Jitter's scale=10): typed float so that c = 0.5 is accepted.
_REAL = {"c", "kappa", "lam", "scale"}

# Minimum-norm (CW, DeepFool), elastic-net (EADEN; EADL1 is caught by its name) and l0 (JSMA, OnePixel,
# Pixle, SparseFool) attacks have no budget of their own: served for l2, where projection keeps their
# direction.
_MINIMUM_NORM = {"CW", "DeepFool", "EADEN", "JSMA", "OnePixel", "Pixle", "SparseFool"}
_BUDGET_FREE = {"VANILA", "GN"}  # the clean input and Gaussian noise: any ball, after projection
_QUERY = {"Square", "SPSA", "OnePixel", "Pixle", "GN", "VANILA"}  # forward passes only, never a gradient
# FAB lists "targeted" but indexes the batch's targets with positions within the subset of samples it still
# attacks (torchattacks 3.5.1), so once one sample is fooled the others aim at wrong classes.
_UNTARGETED = {"FAB"}
_RGB_ONLY = {"PIFGSM", "PIFGSMPP", "TIFGSM"}  # their convolution kernels are built for 3 channels
# What an attack raises where its `loss` field does not say, for the loss check (advsec.sanity): APGDT picks
# its own targets and climbs the targeted DLR towards each; minimum-norm attacks walk to the decision
# boundary, which raises the logit margin ("cw") and not always the cross-entropy.
_BOUNDARY = {"CW", "DeepFool", "FAB", "SparseFool"}
_UNCHANGED_WHEN_FAILING = {"APGD", "APGDT", "FAB", "CW"}  # measured: robust samples come back unmoved

_classes: dict[str, type[Attack]] = {}  # one adapted class per name, built on first use


def names() -> list[str]:
    """Every torchattacks attack a spec can name (imports torchattacks)."""
    library = _library()
    base = library.attack.Attack
    return sorted(
        name
        for name in library.__all__
        if name not in _EXCLUDED
        and isinstance(getattr(library, name), type)
        and issubclass(getattr(library, name), base)
    )


def load(name: str) -> type[Attack]:
    """The advsec plugin class serving ``torchattacks.<name>``."""
    if name in _EXCLUDED:
        raise PluginError(f"{PREFIX}:{name} is not served: it {_EXCLUDED[name]}")
    if name not in _classes:
        served = names()
        if name not in served:
            known = [f"{PREFIX}:{n}" for n in served]
            raise PluginError(unknown_name_message("attack", f"{PREFIX}:{name}", known))
        _classes[name] = _adapt(getattr(_library(), name))
    return _classes[name]


def _library() -> ModuleType:
    try:
        import torchattacks
    except ImportError as exc:
        raise PluginError(INSTALL_HINT) from exc
    return torchattacks


class TorchattacksAttack(Attack):
    """Base of the adapted classes: runs ``_source`` on [0, 1]-rescaled inputs inside the threat model."""

    modalities = ("image",)
    _source: ClassVar[type]  # the torchattacks class
    _lengths: ClassVar[frozenset[str]]  # its fields that are lengths in input units
    _controls: ClassVar[frozenset[str]]  # its constructor parameters that advsec sets

    def __post_init__(self) -> None:
        # torchattacks checks some values when constructed (Pixle's pixel_mapping, AutoAttack's version,
        # TIFGSM's kernel_name): construct it once now so a bad value fails when the spec is read.
        try:
            self._source(nn.Linear(1, 1), **self._fields())
        except Exception as exc:  # a third-party constructor may fail in any way
            raise ValueError(
                f"{PREFIX}:{self._source.__name__} rejects its parameters: {type(exc).__name__}: {exc}"
            ) from exc

    def objective(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        name = self._source.__name__
        if name == "APGDT":
            return best_targeted_objective(logits, y, target, "dlr")
        if name in _BOUNDARY or getattr(self, "loss", None) == "margin":  # UPGD's "margin" is advsec's "cw"
            return attack_objective(logits, y, target, "cw")
        return super().objective(logits, y, target)

    def _fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

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
        name = f"{PREFIX}:{self._source.__name__}"
        if x.dim() != 4:
            raise InputError(f"{name} attacks image batches shaped (N, C, H, W), got {tuple(x.shape)}")
        if self._source.__name__ in _RGB_ONLY and x.shape[1] != 3:
            raise InputError(f"{name} needs 3-channel images, got {x.shape[1]} channel(s)")
        if target is not None and not self.targeted:
            raise PluginError(f"{name} is untargeted here; it cannot aim at a target")
        if target is not None and self._source.__name__ == "UPGD" and self._fields()["loss"] == "dlr":
            # targeted runs hand torchattacks the targets as the labels; UPGD's targeted dlr loss needs the
            # true labels too, so it would compare each target with itself and never move
            raise PluginError(f"{name} cannot run targeted with loss = 'dlr'; use 'ce' or 'margin'")
        low, high = threat.bounds
        span = high - low
        unit = _UnitBox(model, low, span)
        u = (x - low) / span
        params = {k: v / span if k in self._lengths else v for k, v in self._fields().items()}
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=_device(generator)))
        given: dict[str, Any] = {
            "eps": threat.eps / span,
            "max_epsilon": threat.eps / span,
            "norm": _TORCHATTACKS_NORM[threat.norm],
            "seed": seed,
            "verbose": False,
        }
        # torchattacks prints notices (a model without parameters, mode changes): keep stdout for --json
        with _seeded(seed), contextlib.redirect_stdout(sys.stderr):
            if "n_classes" in self._controls:
                with torch.no_grad():
                    given["n_classes"] = unit(u[:1]).shape[1]
            attack = self._source(unit, **params, **{k: v for k, v in given.items() if k in self._controls})
            attack.set_device(x.device)
            if target is not None:
                attack.set_mode_targeted_by_label(quiet=True)  # the labels it is handed are the targets
            u_adv = attack(u, y if target is None else target)
        x_adv = threat.project(x, low + span * u_adv.detach())
        broken = ~torch.isfinite(x_adv.flatten(1)).all(dim=1)
        if broken.any():
            raise BudgetError(f"attack {name!r} returned NaN or Inf for {int(broken.sum())} samples")
        return x_adv


class _UnitBox(nn.Module):
    """The model seen on torchattacks' [0, 1] box: u ↦ model(low + span·u). Counting wrappers still count."""

    def __init__(self, model: nn.Module, low: float, span: float) -> None:
        super().__init__()
        self.model = model
        self.low, self.span = low, span
        self.training = model.training

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(self.low + self.span * u)

    def train(self, mode: bool = True) -> _UnitBox:
        # torchattacks switches the model to eval() around every call and back to train() after: the model
        # is attacked exactly as advsec hands it over (a deployed, possibly stochastic defense), untouched.
        return self


def _device(generator: torch.Generator | None) -> torch.device | None:
    return None if generator is None else generator.device


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """torch's and numpy's global generators seeded with ``seed``, and restored afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    state = np.random.get_state()  # Pixle and OnePixel draw from numpy
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(state)


def _adapt(source: type) -> type[Attack]:
    """A dataclass subclass of :class:`TorchattacksAttack` whose fields are ``source``'s parameters."""
    name = source.__name__
    parameters = list(inspect.signature(source.__init__).parameters.values())[1:]  # after self
    fields = []
    for p in parameters:
        if p.name not in _SET_BY_ADVSEC:
            annotation = _annotation(name, p)
            default = float(p.default) if annotation is float else p.default  # CW's c=1 becomes 1.0
            fields.append((p.name, annotation, dataclasses.field(default=default)))
    lengths = (_LENGTHS | _CLASS_LENGTHS.get(name, set())) & {field[0] for field in fields}
    doc = (source.__doc__ or name).strip().splitlines()[0].strip()
    summary = ", ".join(sorted(lengths)) or "none"
    namespace = {
        "__doc__": f"{doc}\n\ntorchattacks.{name}, run by advsec; parameters in input units: {summary}.",
        "__module__": __name__,
        "__qualname__": name,
        "norms": _norms(source, {p.name: p for p in parameters}),
        "targeted": "targeted" in source(nn.Linear(1, 1)).supported_mode and name not in _UNTARGETED,
        "kind": "query" if name in _QUERY else "gradient",
        "unchanged_when_failing": name in _UNCHANGED_WHEN_FAILING,
        "_source": source,
        "_lengths": frozenset(lengths),
        "_controls": frozenset(p.name for p in parameters if p.name in _SET_BY_ADVSEC),
    }
    return dataclasses.make_dataclass(name, fields, bases=(TorchattacksAttack,), namespace=namespace)


def _annotation(attack: str, parameter: inspect.Parameter) -> Any:
    """The type a spec value must have, from the parameter's default."""
    default = parameter.default
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return float if parameter.name in _REAL else int
    if isinstance(default, float | str):
        return type(default)
    if isinstance(default, tuple):
        return tuple[int | float, ...]  # Pixle's patch sizes: pixel counts or fractions of the image
    if default is None:
        return Any  # nothing to infer a type from: torchattacks checks the value itself
    raise PluginError(
        f"{PREFIX}:{attack}: parameter {parameter.name!r} has no default a spec can express ({default!r})"
    )


def _norms(source: type, parameters: dict[str, inspect.Parameter]) -> tuple[str, ...]:
    name = source.__name__
    if "norm" in parameters:  # its values are listed in the docstring: "norm (str): ... ['Linf', 'L2']"
        listed = re.search(r"norm \(str\)\s*:[^\[\n]*\[([^\]]*)\]", source.__doc__ or "")
        values = re.findall(r"'(\w+)'", listed.group(1)) if listed else [parameters["norm"].default]
        return tuple(norm for norm, spelled in _TORCHATTACKS_NORM.items() if spelled in values)
    if name in _BUDGET_FREE:
        return ("linf", "l2")
    if "L2" in name or "L1" in name or name in _MINIMUM_NORM:
        return ("l2",)
    return ("linf",)
