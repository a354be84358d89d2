"""Offline LiRA (Carlini et al. 2022, "Membership Inference Attacks From First Principles").

A global loss threshold cannot tell a sample the model memorized from one that is merely easy. LiRA asks,
per sample, how confident models that never saw it are: ``shadows`` models of the target's architecture,
defense and training config, each trained (and cached like any model) on the training split without the
scored members, topped up to the target's size with test samples that are not scored. The offline variant
needs only these OUT models. On each, the sample's confidence in its true class is taken on the logit scale,
φ = log p / (1 − p), where it is close to Gaussian; the target's φ is scored by how far it lies above the
shadows' mean, in their standard deviation: one-sided, so higher means "a member". With fewer than
``PER_SAMPLE_STD`` shadows the deviation is pooled over the samples (Carlini et al.'s global variance), as a
per-sample one from a handful of models is noise. No augmentations are queried.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from advsec.data import Dataset
from advsec.keys import content_key
from advsec.progress import Progress
from advsec.spec import TrainConfig

T = TypeVar("T")  # what ShadowRecipe._call returns: a key or a trained model
PER_SAMPLE_STD = 32  # shadows from which each sample gets its own standard deviation


@torch.no_grad()
def logit_confidence(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> torch.Tensor:
    """Per sample, log p / (1 − p) of its true class, computed stably from the logits as
    z_y − logsumexp_{j ≠ y} z_j."""
    out = []
    for xb, yb in zip(x.split(batch), y.split(batch), strict=True):
        logits = model(xb).double()
        true = logits.gather(1, yb[:, None]).squeeze(1)
        others = logits.scatter(1, yb[:, None], float("-inf")).logsumexp(1)
        out.append((true - others).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def lira_scores(target: torch.Tensor, shadows: torch.Tensor) -> torch.Tensor:
    """Offline LiRA's score of each sample from the target's φ (``[n]``) and the OUT shadows' (``[k, n]``):
    (φ − μ) / σ, monotone in the one-sided likelihood test's 1 − Pr[N(μ, σ²) > φ]."""
    if len(shadows) < 2:
        raise ValueError(f"LiRA needs at least 2 shadow models to estimate a spread, got {len(shadows)}")
    mean = shadows.mean(0)
    variance = shadows.var(0)
    if len(shadows) < PER_SAMPLE_STD:
        variance = variance.mean().expand_as(variance)
    return (target - mean) / variance.clamp_min(1e-12).sqrt()


def shadow_dataset(dataset: Dataset, members: torch.Tensor, nonmembers: int) -> Dataset:
    """The data a shadow model learns from: the training split without ``members`` (indices), topped up to
    its full size from the test split past the first ``nonmembers`` (the ones scored), as far as it goes.
    Its fingerprint names what it holds, so shadows are cached apart from the target."""
    kept = torch.ones(len(dataset.x_train), dtype=torch.bool)
    kept[members] = False
    filler = slice(nonmembers, nonmembers + int((~kept).sum()))
    x = torch.cat([dataset.x_train[kept], dataset.x_test[filler]])
    y = torch.cat([dataset.y_train[kept], dataset.y_test[filler]])
    return dataclasses.replace(
        dataset, x_train=x, y_train=y, fingerprint=_shadow_fingerprint(dataset, members, nonmembers)
    )


def _shadow_fingerprint(dataset: Dataset, members: torch.Tensor, nonmembers: int) -> str:
    content = {"dataset": dataset.fingerprint, "without": sorted(members.tolist()), "test_from": nonmembers}
    return content_key(content)[:16]


def shadow_seed(seed: int, index: int) -> int:
    """Shadow ``index``'s seed: apart from the target's ``seed`` and from every other shadow's."""
    return int(content_key({"shadow": index, "seed": seed})[:8], 16)


@dataclasses.dataclass(frozen=True)
class Shadows:
    models: list[nn.Module]  # as deployed, in eval mode
    train_seconds: float  # their training time, as stored with them when they came from the cache
    trained: int  # how many were trained now rather than loaded


@dataclasses.dataclass(frozen=True, eq=False)
class ShadowRecipe:
    """``count`` OUT shadow models of a target trained by :func:`advsec.train.load_or_train` with
    (``model_name``, ``defense_name``, ``params``, ``config``, ``seed``), none of which saw ``members``
    (training indices) or the first ``nonmembers`` test samples. One recipe serves the cost estimate, which
    asks which shadows are still to train, and the run that trains them: the two cannot disagree."""

    dataset: Dataset  # the target's
    model_name: str
    defense_name: str
    params: dict
    config: TrainConfig
    seed: int  # the target's
    members: torch.Tensor
    nonmembers: int
    count: int

    def cache_keys(self) -> list[str]:
        """The shadows' cache keys (:func:`advsec.train.model_key`), known without gathering their data."""
        from advsec.train import model_key  # train imports the attack engine; keep this module light

        # model_key reads the data set's name and fingerprint only, so the target's tensors can stand in
        fingerprint = _shadow_fingerprint(self.dataset, self.members, self.nonmembers)
        data = dataclasses.replace(self.dataset, fingerprint=fingerprint)
        return [self._call(model_key, data, index) for index in range(self.count)]

    def models(self, *, device: torch.device, progress: Progress, label: str | None = None) -> Shadows:
        """The shadows from the cache, or trained now (and cached)."""
        from advsec.train import load_or_train

        data = shadow_dataset(self.dataset, self.members, self.nonmembers)
        name = label or self.defense_name
        models, seconds, trained = [], 0.0, 0
        started = time.perf_counter()
        for index in range(self.count):
            model = self._call(load_or_train, data, index, device=device, progress=progress,
                              label=f"{name} shadow {index + 1}/{self.count}")  # fmt: skip
            models.append(model.model)
            seconds += model.train_seconds
            trained += not model.cached
        progress.log(
            f"{name}: {self.count} shadow models ({trained} trained, {self.count - trained} from cache) "
            f"in {time.perf_counter() - started:.1f} s, {seconds:.1f} s of training"
        )
        return Shadows(models, seconds, trained)

    def _call(self, call: Callable[..., T], data: Dataset, index: int, **options: Any) -> T:
        """``call`` with shadow ``index``'s training arguments, as model_key and load_or_train take them."""
        return call(data, self.model_name, self.defense_name, self.params, self.config,
                    shadow_seed(self.seed, index), **options)  # fmt: skip
