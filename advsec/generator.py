"""Generators: attacks that learn before they attack.

A generator plugin is an :class:`~advsec.attack.Attack` that first fits a small network (or a single
perturbation) against the target model on the training split, then perturbs any input in one cheap pass.
The harness fits it once per model, budget and target, caches what it learned like a trained model
(safetensors), and records the fit apart from the per-sample cost: a report can then say after how many
samples the generator is cheaper than an iterative attack (its break-even point).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import ClassVar

import torch
from torch import nn

from advsec.attack import Attack, Kind
from advsec.checkpoints import cache_dir, load_or_fit
from advsec.data import Dataset
from advsec.keys import content_key
from advsec.progress import Progress
from advsec.threat import ThreatModel

FIT_FORMAT = 4  # part of every fit's cache key: raised when fitting changes


class Generator(Attack):
    """Base class of generator plugins: implement :meth:`build`, :meth:`fit` and :meth:`perturb`.

    :meth:`perturb` reads the fitted network from ``self.network``, which the harness sets (fitted now or
    loaded from the cache) before the first call.
    """

    kind: ClassVar[Kind] = "generator"
    network: nn.Module | None = None

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """A fresh, untrained network: what :meth:`fit` trains and the cache stores."""
        raise NotImplementedError

    def fit(
        self,
        network: nn.Module,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        target: int | None,
        progress: Progress,
    ) -> None:
        """Train ``network`` in place against ``model`` on training inputs ``x`` (labels ``y``), to push them
        out of their class or, with ``target``, into that class. Randomness comes from torch's global
        generator, seeded by the caller."""
        raise NotImplementedError

    def learned(self, threat: ThreatModel, input_shape: tuple[int, ...]) -> torch.Tensor | None:
        """What the fitted generator learned, as one tensor in input units worth showing beside its numbers
        (a universal patch, a universal perturbation), or None: a network mapping each input to its own
        perturbation has no single thing to show. The harness stores it with the cell; the report draws it.
        """
        return None

    def fitted(self) -> nn.Module:
        if self.network is None:
            raise RuntimeError(f"{type(self).__name__} perturbs only after fit (the harness fits it)")
        return self.network


def fit_generator(
    attack: Generator,
    name: str,
    model: nn.Module,
    dataset: Dataset,
    threat: ThreatModel,
    *,
    target: int | None,
    view: str,
    model_key: str,
    seed: int,
    progress: Progress,
) -> tuple[float, bool]:
    """Fit ``attack`` against ``model`` (the one under ``model_key``, as ``view`` names how it is seen: as
    deployed, or through an adaptive attack's BPDA/EOT view), or load that fit from the cache.

    Returns the fit's seconds (as measured when it was fitted) and whether it came from the cache.
    """
    device = next(model.parameters(), torch.empty(0)).device
    key = content_key(
        {
            "format": FIT_FORMAT,
            "model": [model_key, view],
            "generator": [name, asdict(attack)],
            "threat": [threat.norm, threat.eps] + [threat.aspect] * (threat.aspect != 1.0),
            "target": target,
            "seed": seed,
        }
    )
    network = attack.build(dataset.input_shape, dataset.num_classes)
    path = cache_dir() / f"fit-{key}.safetensors"

    def fit() -> None:
        network.to(device).train()
        attack.fit(network, model, dataset.x_train.to(device), dataset.y_train.to(device), threat,
                   target=target, progress=progress)  # fmt: skip

    meta, cached = load_or_fit(network, path, fit, seed, device)
    attack.network = network.to(device).eval()
    return meta["fit_seconds"], cached
