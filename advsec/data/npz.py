"""Your own arrays from an ``.npz`` file (``numpy.savez``): the inputs ``x`` and labels ``y`` to evaluate,
optionally a training split ``x_train``, ``y_train`` and the class names ``classes``.

The file is read with ``numpy.load(path, allow_pickle=False)``: an array that needs unpickling is refused,
never run. Inputs are floats within the declared ``bounds``, or ``uint8`` pixels, which are scaled to
[0, 1] when the bounds are [0, 1] (the default) and kept as 0..255 when they are [0, 255]. Images are
``(N, C, H, W)`` (or ``(N, H, W)``, one channel); audio ``(N, T)`` or ``(N, C, T)``. Without a training
split, the training split is empty: evaluating a checkpoint needs none.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from advsec.data import Dataset, DatasetSource
from advsec.data.download import sha256_file
from advsec.data.files import check_labels, content_fingerprint, empty_split
from advsec.errors import DataError, ParameterError

ARRAYS = ("x", "y", "x_train", "y_train", "classes")
CHANNELS = (1, 2, 3, 4)  # the channel counts a 4-D image array plausibly has on either axis


@dataclass(frozen=True)
class Npz(DatasetSource):
    """Your own arrays from an .npz file: x, y (evaluated), optionally x_train, y_train and classes."""

    path: str
    bounds: tuple[float, float] = (0.0, 1.0)
    classes: tuple[str, ...] = ()  # default: the file's `classes` array, else "0".."K-1" from the labels
    domain: Literal["image", "audio"] = "image"
    sample_rate: int | None = None  # audio: samples per second

    def __post_init__(self) -> None:
        if len(self.bounds) != 2 or not self.bounds[0] < self.bounds[1]:
            raise ParameterError("bounds", f"expected [low, high] with low < high, got {list(self.bounds)}")
        object.__setattr__(self, "bounds", (float(self.bounds[0]), float(self.bounds[1])))
        object.__setattr__(self, "classes", tuple(self.classes))
        if len(set(self.classes)) != len(self.classes):
            raise ParameterError("classes", "a class name appears twice")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ParameterError("sample_rate", f"expected a positive rate, got {self.sample_rate}")

    def load(self, root: Path | None = None) -> Dataset:
        file = Path(self.path)
        arrays = read_npz(file)
        x_test = self._inputs(file, "x", arrays["x"])
        y_test = _labels(file, "y", arrays["y"], len(x_test), "x")
        if ("x_train" in arrays) != ("y_train" in arrays):
            given, missing = ("x_train", "y_train") if "x_train" in arrays else ("y_train", "x_train")
            raise DataError(f"{file}: holds {given} but no {missing}; a training split needs both")
        if "x_train" in arrays:
            x_train = self._inputs(file, "x_train", arrays["x_train"])
            y_train = _labels(file, "y_train", arrays["y_train"], len(x_train), "x_train")
            if x_train.shape[1:] != x_test.shape[1:]:
                raise DataError(
                    f"{file}: x_train samples are shaped {tuple(x_train.shape[1:])} but x samples "
                    f"{tuple(x_test.shape[1:])}; both splits must hold inputs of one shape"
                )
        else:
            x_train, y_train = empty_split(x_test.shape[1:])
        classes = self._classes(file, arrays.get("classes"), y_test, y_train)
        order = (
            "the file's classes array" if "classes" in arrays
            else "given by classes" if self.classes else "the labels' own numbers (no names given)"
        )  # fmt: skip
        for name, labels in (("y", y_test), ("y_train", y_train)):
            check_labels(str(file), name, labels.numpy(), classes)
        facts = {"bounds": self.bounds, "classes": classes, "domain": self.domain, "rate": self.sample_rate}
        return Dataset(
            name="npz",
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            bounds=self.bounds,
            classes=classes,
            domain=self.domain,
            sample_rate=self.sample_rate,
            fingerprint=content_fingerprint([sha256_file(file)], facts),
            class_order=order,
        )

    def _inputs(self, file: Path, name: str, array: np.ndarray) -> torch.Tensor:
        """``array`` as float32 shaped ``(N, C, ...)``, checked finite and within the bounds."""
        low, high = self.bounds
        array = self._shaped(file, name, array)
        if not len(array):
            raise DataError(f"{file}: {name} holds no samples")
        if array.dtype == np.uint8:
            if self.bounds not in ((0.0, 1.0), (0.0, 255.0)):
                raise DataError(
                    f"{file}: {name} is uint8 (8-bit pixels), read as [0, 1] for bounds [0, 1] or as 0..255 "
                    f"for bounds [0, 255], but the declared bounds are {[low, high]}; store floats instead"
                )
            values = array.astype(np.float32) / (255.0 if high == 1.0 else 1.0)
        elif array.dtype.kind == "f":
            bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
            if bad.any():
                raise DataError(
                    f"{file}: {name} holds NaN or Inf (samples {np.flatnonzero(bad)[:5].tolist()})"
                )
            values = array.astype(np.float32)
        else:
            raise DataError(
                f"{file}: {name} is {array.dtype}; expected floats within the bounds {[low, high]}, "
                "or uint8 pixels"
            )
        if values.min() < low or values.max() > high:
            seen = f"{values.min():.4g}..{values.max():.4g}"
            hint = " (pixels in 0..255? divide by 255, or store uint8)" if 1 < values.max() <= 255 else ""
            raise DataError(
                f"{file}: {name} runs {seen}, outside the declared bounds {[low, high]}{hint}; "
                "declare its bounds = [low, high] in the spec's [dataset] table"
            )
        return torch.from_numpy(values)

    def _shaped(self, file: Path, name: str, values: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` images or ``(N, C, T)`` audio, a channel axis added where there is none."""
        shape = tuple(values.shape)
        if self.domain == "audio" and values.ndim in (2, 3):
            return values if values.ndim == 3 else values[:, None]
        if self.domain == "image" and values.ndim == 3:
            return values[:, None]
        if self.domain == "image" and values.ndim == 4:
            if shape[1] not in CHANNELS and shape[-1] in CHANNELS:
                raise DataError(
                    f"{file}: {name} is shaped {shape}, channels last; advsec reads images as "
                    f"(N, C, H, W): store {name}.transpose(0, 3, 1, 2)"
                )
            return values
        expected = "(N, T) or (N, C, T)" if self.domain == "audio" else "(N, C, H, W) or (N, H, W)"
        raise DataError(f"{file}: {name} is shaped {shape}; expected {self.domain} inputs shaped {expected}")

    def _classes(self, file: Path, stored: np.ndarray | None, *labels: torch.Tensor) -> tuple[str, ...]:
        """The declared class names, the file's, or "0".."K-1" for the largest label K-1 in either split."""
        if stored is not None:
            if stored.ndim != 1 or stored.dtype.kind not in "US":
                raise DataError(
                    f"{file}: classes is {stored.dtype} shaped {stored.shape}; expected a 1-D array of names"
                )
            items = stored.tolist()
            names = tuple(n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in items)
            if self.classes and names != self.classes:
                raise DataError(
                    f"{file}: classes lists {list(names)}, but the spec declares {list(self.classes)}; "
                    "drop one of them"
                )
            return names
        if self.classes:
            return self.classes
        largest = max(int(y.max()) for y in labels if len(y))
        return tuple(str(c) for c in range(max(largest, 0) + 1))


def read_npz(file: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file read without unpickling; only the names advsec reads are allowed."""
    try:
        archive = np.load(file, allow_pickle=False)
    except FileNotFoundError as exc:
        raise DataError(f"{file}: no such file") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{file}: cannot read it as an .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{file}: holds a single array; expected an .npz archive (numpy.savez) with x and y")
    with archive:
        unknown = sorted(set(archive.files) - set(ARRAYS))
        if unknown:
            raise DataError(
                f"{file}: unexpected arrays {', '.join(unknown)}; an advsec .npz holds {', '.join(ARRAYS)}"
            )
        missing = [name for name in ("x", "y") if name not in archive.files]
        if missing:
            raise DataError(f"{file}: no array {' or '.join(missing)}; expected x (inputs) and y (labels)")
        arrays = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except ValueError as exc:  # an object array: it would need unpickling
                raise DataError(
                    f"{file}: array {name} holds Python objects, which only unpickling could read; advsec "
                    f"never unpickles. Store numeric arrays (and class names as a str array) ({exc})"
                ) from exc
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"{file}: array {name} is truncated or corrupt ({exc})") from exc
    return arrays


def _labels(file: Path, name: str, array: np.ndarray, count: int, inputs: str) -> torch.Tensor:
    if array.dtype.kind not in "iu" or array.shape != (count,):
        raise DataError(
            f"{file}: {name} is {array.dtype} shaped {array.shape}; expected {count} integer class labels, "
            f"one per sample of {inputs}"
        )
    if len(array) and array.min() < 0:
        raise DataError(f"{file}: {name} holds the negative label {int(array.min())}; labels are 0..K-1")
    return torch.from_numpy(array.astype(np.int64))
