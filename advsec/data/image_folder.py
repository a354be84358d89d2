"""Your own images in a folder: one subfolder per class, PNG or JPEG files, decoded by Pillow.

Class indices are the order of ``classes`` (a list of the class folders' names, or ``classes_file``, a text
file of one name per line), which must name every class folder once: the order the model was trained with.
Without either, classes are the folders' names sorted (class 0 is the first), as torchvision's
``ImageFolder`` numbers them, and the run warns that it assumed so. A folder holding ``train/`` and
``test/`` (each with the same class folders) gives both splits; a folder holding ``test/`` alone, or the
class folders themselves, is all evaluation data and the training split is empty. Images become float32
in [0, 1] shaped ``(N, C, H, W)``: RGB (3 channels), or one channel with ``grayscale``. Every image must
have one size, unless ``resize = [H, W]`` resizes them all (bilinear). Hidden files are skipped; any other
file that is not a ``.png``, ``.jpg`` or ``.jpeg`` is an error, never silently left out of the evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from advsec.data import Dataset, DatasetSource, fingerprint
from advsec.data.files import content_fingerprint, empty_split
from advsec.errors import DataError, ParameterError

SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")  # the only decoders Pillow may use on these files
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")  # 8-bit: convert exactly


@dataclass(frozen=True)
class ImageFolder(DatasetSource):
    """Your own images: one subfolder per class (PNG/JPEG), optionally inside train/ and test/."""

    path: str
    resize: tuple[int, int] | None = None  # (height, width)
    grayscale: bool = False
    classes: tuple[str, ...] = ()  # the class folders in the model's order; default: sorted by name
    classes_file: str | None = None  # the same order, one name per line

    def __post_init__(self) -> None:
        if self.resize is not None:
            if len(self.resize) != 2 or min(self.resize) < 1:
                raise ParameterError("resize", f"expected [height, width] in pixels, got {list(self.resize)}")
            object.__setattr__(self, "resize", (int(self.resize[0]), int(self.resize[1])))
        if self.classes and self.classes_file is not None:
            raise ParameterError("classes_file", "give the class order once: classes or classes_file")
        object.__setattr__(self, "classes", tuple(self.classes))

    def load(self, root: Path | None = None) -> Dataset:
        folder = Path(self.path)
        test_dir, train_dir = split_folders(folder)
        found = class_folders(test_dir)
        classes, order, warnings = self._class_order(folder, found)
        if train_dir is not None:
            train_classes = class_folders(train_dir)
            if train_classes != found:
                only = sorted(set(train_classes) ^ set(found))
                raise DataError(
                    f"{folder}: train/ and test/ must hold the same class folders; "
                    f"{', '.join(only)} {'is' if len(only) == 1 else 'are'} in only one of them"
                )
        files = {
            split: image_files(d, classes) for split, d in (("test", test_dir), ("train", train_dir)) if d
        }
        if not files["test"]:
            raise DataError(f"{test_dir}: the class folders hold no images (.png, .jpg, .jpeg)")
        reader = _Reader(self.resize, self.grayscale)
        x_test, y_test = reader.read(files["test"])
        x_train, y_train = (
            reader.read(files["train"]) if files.get("train") else empty_split(x_test.shape[1:])
        )
        facts = {"classes": classes, "resize": self.resize, "grayscale": self.grayscale}
        return Dataset(
            name="image-folder",
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            bounds=(0.0, 1.0),
            classes=classes,
            fingerprint=content_fingerprint([fingerprint(x_train, y_train, x_test, y_test)], facts),
            class_order=order,
            warnings=warnings,
        )

    def _class_order(
        self, folder: Path, found: tuple[str, ...]
    ) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
        """The class names in index order, how that order was decided, and a warning where it was assumed."""
        given = self.classes or (_read_classes(Path(self.classes_file)) if self.classes_file else ())
        if not given:
            numbered = ", ".join(f"{i} {name}" for i, name in enumerate(found))
            warning = (
                f"{folder}: classes numbered by their folders' names, sorted ({numbered}); if the model "
                "numbers them otherwise, give the order (classes = [...] or classes_file, --classes)"
            )
            return found, "the class folders' names, sorted (assumed: no order given)", (warning,)
        where = "classes_file " + self.classes_file if self.classes_file else "classes"
        twice = sorted({c for c in given if given.count(c) > 1})
        unknown, unnamed = sorted(set(given) - set(found)), sorted(set(found) - set(given))
        for problem, names in (("names twice", twice), ("names no folder", unknown), ("leaves out", unnamed)):
            if names:
                raise DataError(
                    f"{folder}: {where} {problem}: {', '.join(names)}; it must name each class folder "
                    f"({', '.join(found)}) once, in the order the model numbers them"
                )
        return tuple(given), f"given by {where}", ()


def _read_classes(path: Path) -> tuple[str, ...]:
    """A classes file's names, one per line, blank lines skipped."""
    try:
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except OSError as exc:
        raise DataError(f"{path}: cannot read the classes file ({exc.strerror})") from exc


def split_folders(folder: Path) -> tuple[Path, Path | None]:
    """The evaluation folder and the training folder (None without one) of an image folder."""
    if not folder.is_dir():
        state = "is a file" if folder.exists() else "does not exist"
        raise DataError(f"{folder}: {state}; expected a folder with one subfolder of images per class")
    if not (folder / "test").is_dir():
        if (folder / "train").is_dir():
            raise DataError(
                f"{folder}: holds train/ but no test/; put the images to evaluate in test/<class>/, "
                "or the class folders directly in the folder"
            )
        return folder, None
    others = sorted(p.name for p in _children(folder) if p.is_dir() and p.name not in ("train", "test"))
    if others:
        raise DataError(
            f"{folder}: holds test/ beside other folders ({', '.join(others)}); with train/ and test/, "
            "put the class folders inside them"
        )
    train = folder / "train"
    return folder / "test", train if train.is_dir() else None


def class_folders(folder: Path) -> tuple[str, ...]:
    """The class names of a split: its subfolders' names, sorted."""
    stray = [p for p in _children(folder) if p.is_file() and p.suffix.lower() in SUFFIXES]
    if stray:
        raise DataError(f"{stray[0]}: an image outside any class folder; move it into {folder}/<class>/")
    classes = tuple(p.name for p in _children(folder) if p.is_dir())
    if not classes:
        raise DataError(f"{folder}: no class folders; expected one subfolder of images per class")
    return classes


def image_files(folder: Path, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    """Every image of a split with its class index, class by class, files sorted by name."""
    files = []
    for label, name in enumerate(classes):
        for path in _children(folder / name):
            if path.is_dir():
                raise DataError(f"{path}: a folder inside a class folder; images must lie directly in it")
            if path.suffix.lower() not in SUFFIXES:
                raise DataError(
                    f"{path}: not a PNG or JPEG file ({', '.join(SUFFIXES)}); convert it or move it out"
                )
            files.append((path, label))
    return files


class _Reader:
    """Decodes images to one size, remembering the first one's, so a mismatch names both files."""

    def __init__(self, resize: tuple[int, int] | None, grayscale: bool) -> None:
        self.resize, self.mode = resize, "L" if grayscale else "RGB"
        self.first: tuple[Path, tuple[int, int]] | None = None

    def read(self, files: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = np.stack([self.image(path) for path, _ in files])
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)  # (N, C, H, W)
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)) / 255.0
        return x, torch.tensor([label for _, label in files], dtype=torch.int64)

    def image(self, path: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path, formats=FORMATS) as image:
                image.load()  # decode now: a truncated file fails here, naming itself
                if image.mode not in MODES:
                    raise DataError(
                        f"{path}: pixel mode {image.mode} (16-bit or float); only 8-bit images are read"
                    )
                size = (image.height, image.width)
                converted = image.convert(self.mode)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: cannot read it as a PNG or JPEG image ({exc})") from exc
        if self.resize is not None:
            height, width = self.resize
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        elif self.first is None:
            self.first = (path, size)
        elif size != self.first[1]:
            (other, (h, w)) = self.first
            raise DataError(
                f"images of different sizes: {other} is {h}x{w} but {path} is {size[0]}x{size[1]} "
                "(height x width); set resize = [height, width] in the spec's [dataset] table"
            )
        return np.asarray(converted)


def _children(folder: Path) -> list[Path]:
    """A folder's entries, sorted by name, without hidden ones (``.DS_Store``, ``.ipynb_checkpoints``)."""
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
