"""IDX files (the MNIST format) and the MNIST and Fashion-MNIST datasets read from them."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from advsec.data import Dataset, DatasetSource
from advsec.data.download import FILE_SETS
from advsec.errors import DataError
from advsec.keys import content_key

# The magic number's low bytes say the element type (0x08: unsigned byte) and the number of dimensions.
IMAGES_MAGIC = 0x0803  # 2051: count x rows x cols
LABELS_MAGIC = 0x0801  # 2049: count
_KIND = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array in a gzipped IDX file whose header must start with ``magic`` (2051 or 2049)."""
    kind = f"IDX {_KIND.get(magic, 'data')} file (magic {magic})"
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot decompress ({exc}); expected a gzipped {kind}") from exc
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(raw) >= 4 and (found := int.from_bytes(raw[:4], "big")) != magic:
        raise DataError(f"{path}: magic number {found}, expected an {kind}")
    if len(raw) < header:
        raise DataError(f"{path}: {len(raw)} bytes, too short for the {header}-byte header of an {kind}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims)
    payload = len(raw) - header
    if payload != expected:
        state = "truncated" if payload < expected else "has trailing bytes"
        shape = " x ".join(map(str, dims))
        raise DataError(
            f"{path}: header says {shape} = {expected:,} bytes of {_KIND.get(magic, 'data')}, "
            f"found {payload:,}; the file {state}"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_idx_pair(
    images_path: Path, labels_path: Path, *, image_size: tuple[int, ...], num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 in [0, 1] shaped ``(N, 1, H, W)`` and their int64 labels, checked to match."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != image_size:
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"expected {image_size[0]}x{image_size[1]}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds {len(labels):,} labels; "
            "expected one label per image"
        )
    if len(labels) and labels.max() >= num_classes:
        raise DataError(f"{labels_path}: label {labels.max()}, expected labels 0..{num_classes - 1}")
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    x /= 255.0
    return x, torch.from_numpy(labels.astype(np.int64))


@dataclass(frozen=True)
class IdxSource(DatasetSource):
    """Base of the datasets stored as the four standard gzipped IDX files in ``<root>/<name>/``.

    ``train_samples`` keeps only the first that many training samples (the files' order, already shuffled),
    e.g. a set small enough for a network to memorize, where membership inference has something to find;
    the test split stays whole. The fingerprint names the subset, so models trained on it are cached apart.
    """

    name: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    shape: ClassVar[tuple[int, ...]] = (1, 28, 28)
    train_samples: int | None = None

    def __post_init__(self) -> None:
        if self.train_samples is not None and self.train_samples < 1:
            raise ValueError(f"train_samples must be at least 1, got {self.train_samples}")

    def load(self, root: Path | None = None) -> Dataset:
        file_set = FILE_SETS[self.name]
        directory = file_set.verify(root)
        splits = [
            read_idx_pair(
                directory / f"{prefix}-images-idx3-ubyte.gz",
                directory / f"{prefix}-labels-idx1-ubyte.gz",
                image_size=self.shape[1:],
                num_classes=len(self.classes),
            )
            for prefix in ("train", "t10k")
        ]
        (x_train, y_train), (x_test, y_test) = splits
        fingerprint = file_set.fingerprint
        if self.train_samples is not None:
            if self.train_samples > len(x_train):
                raise DataError(
                    f"{self.name}: train_samples = {self.train_samples:,}, but the training split holds "
                    f"{len(x_train):,} samples"
                )
            x_train, y_train = x_train[: self.train_samples], y_train[: self.train_samples]
            fingerprint = content_key({"files": fingerprint, "train_samples": self.train_samples})[:16]
        return Dataset(
            name=self.name,
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            bounds=self.bounds,
            classes=self.classes,
            fingerprint=fingerprint,
        )


class MNIST(IdxSource):
    """MNIST handwritten digits, 28x28 greyscale in [0, 1]; 60,000 train / 10,000 test."""

    name = "mnist"
    classes = tuple(str(c) for c in range(10))


class FashionMNIST(IdxSource):
    """Fashion-MNIST (Zalando) clothing images, 28x28 greyscale in [0, 1]; 60,000 train / 10,000 test."""

    name = "fashion-mnist"
    classes = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
