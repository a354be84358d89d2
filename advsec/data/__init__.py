"""Datasets: tensors plus the facts an attack must respect (domain, bounds, classes).

A dataset is registered in the ``advsec.datasets`` entry-point group as a :class:`DatasetSource` subclass.
Images are ``float32`` tensors shaped ``(N, C, H, W)``; audio waveforms ``(N, 1, T)``. Inputs live in
``bounds`` (the dataset's, not an assumed [0, 1]); labels are ``int64`` class indices.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn

Domain = Literal["image", "audio", "tabular"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split with the input domain and bounds every attack must stay inside."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    bounds: tuple[float, float]
    classes: tuple[str, ...]
    domain: Domain = "image"
    sample_rate: int | None = None
    fingerprint: str = field(default="")
    class_order: str = "the data set's own"  # how class indices were given their names, for the report
    warnings: tuple[str, ...] = ()  # what the run should say about how the data was read (an assumed order)
    # The GAN a class of its inputs came from (the ``fakes`` data set's): attacks may search its codes.
    gan: nn.Module | None = field(default=None, repr=False)  # an advsec.gan.Gan

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class DatasetSource:
    """Base class of a dataset plugin: declares its facts, then ``load`` builds the :class:`Dataset`."""

    domain: ClassVar[Domain] = "image"
    bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    shape: ClassVar[tuple[int, ...]] = ()
    embedded: ClassVar[bool] = False  # ships with an installed package: needs no files, never downloads

    def load(self, root: Path | None = None) -> Dataset:
        raise NotImplementedError


def data_root() -> Path:
    """Where dataset files live: ``$ADVSEC_DATA`` if set, else ``~/.cache/advsec/data``."""
    env = os.environ.get("ADVSEC_DATA")
    return Path(env) if env else Path.home() / ".cache" / "advsec" / "data"


def fingerprint(*arrays: torch.Tensor) -> str:
    """A content hash of tensors, so a cached model is never reused with different data."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(tuple(array.shape)).encode())
        digest.update(array.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
