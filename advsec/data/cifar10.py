"""CIFAR-10 from its *binary* batches (``cifar-10-batches-bin``): plain bytes, never a pickle.

Each batch file is a run of 3,073-byte records: one label byte (0-9), then a 32x32 image as 1,024 red,
1,024 green and 1,024 blue bytes, row by row (Krizhevsky 2009). ``data_batch_1.bin`` to ``data_batch_5.bin``
are the training split (50,000), ``test_batch.bin`` the test split (10,000), ``batches.meta.txt`` the class
names, one a line. A folder with ``test_batch.bin`` alone is evaluation data with an empty training split.

The batches are read from ``$ADVSEC_DATA/cifar10/cifar-10-batches-bin`` or from the folder ``path`` names.
``advsec download cifar10`` fetches the published archive, checks its sha256 before opening it, extracts
only the batches folder (``tarfile`` with the ``data`` filter: no links, no paths outside the folder) and
writes a ``SHA256SUMS`` of the extracted files beside them; a load then refuses any file changed since.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from advsec.data import Dataset, DatasetSource, data_root
from advsec.data.download import fetch, sha256_file
from advsec.data.files import content_fingerprint, empty_split
from advsec.errors import DataError

BATCHES = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
MANIFEST = "SHA256SUMS"
SHAPE = (3, 32, 32)
RECORD = 1 + 3 * 32 * 32  # label byte + channel-major pixels
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# The archive the dataset's author publishes (https://www.cs.toronto.edu/~kriz/cifar.html, which lists its
# md5 c32a1d4ab5d03f1284b67883e8d87530). The page gives no sha256; this one is the archive's as pinned
# independently by JuliaML's MLDatasets.jl and gomlx's CIFAR loader, for the same 170,052,171 bytes.
ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
HOW = (
    "Fetch them with `advsec download cifar10`, set ADVSEC_DATA to a folder holding "
    f"cifar10/{BATCHES}/, or name the folder with path = ... in the spec's [dataset] table."
)


@dataclass(frozen=True)
class CIFAR10(DatasetSource):
    """CIFAR-10 binary batches: 32x32 colour images in [0, 1], 10 classes; 50,000 train / 10,000 test."""

    shape: ClassVar[tuple[int, ...]] = SHAPE
    path: str | None = None  # the batches folder; default $ADVSEC_DATA/cifar10/cifar-10-batches-bin

    def load(self, root: Path | None = None) -> Dataset:
        folder = self.folder(root)
        published = read_manifest(folder)
        classes = read_classes(folder / META_FILE) if (folder / META_FILE).is_file() else CLASSES
        if not (folder / TEST_FILE).is_file():
            raise DataError(f"{folder / TEST_FILE}: missing; the test split is required. {HOW}")
        present = [name for name in TRAIN_FILES if (folder / name).is_file()]
        if present and len(present) < len(TRAIN_FILES):
            missing = ", ".join(name for name in TRAIN_FILES if name not in present)
            raise DataError(f"{folder}: holds {', '.join(present)} but not {missing}. {HOW}")
        sums: list[str] = []

        def read(names: tuple[str, ...] | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            xs, ys = [], []
            for name in names:
                x, y, sha256 = read_batch(folder / name, len(classes), published.get(name))
                xs.append(x)
                ys.append(y)
                sums.append(f"{sha256}  {name}")
            return torch.cat(xs), torch.cat(ys)

        x_test, y_test = read((TEST_FILE,))
        x_train, y_train = read(present) if present else empty_split(SHAPE)
        return Dataset(
            name="cifar10",
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            bounds=self.bounds,
            classes=classes,
            fingerprint=content_fingerprint(sums, {"classes": classes}),
        )

    def folder(self, root: Path | None = None) -> Path:
        """The batches folder: ``path`` (or its ``cifar-10-batches-bin``), else the data root's."""
        if self.path is None:
            folder = (root if root is not None else data_root()) / "cifar10" / BATCHES
        else:
            given = Path(self.path)
            folder = given / BATCHES if (given / BATCHES).is_dir() else given
        if not folder.is_dir():
            raise DataError(f"CIFAR-10 binary batches not found: {folder} is not a folder. {HOW}")
        return folder


def read_batch(
    path: Path, num_classes: int = len(CLASSES), sha256: str | None = None
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A batch file's images (float32 in [0, 1], ``(N, 3, 32, 32)``), labels, and the file's sha256,
    checked against ``sha256`` when given (the manifest written at download)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    actual = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and actual != sha256:
        raise DataError(
            f"{path}: sha256 {actual}, expected {sha256} (its {MANIFEST} at download); the file is "
            "truncated or corrupt. Fetch it again with `advsec download cifar10`."
        )
    if not raw or len(raw) % RECORD:
        raise DataError(
            f"{path}: {len(raw):,} bytes is not a whole number of {RECORD:,}-byte records (a label byte and "
            "3,072 pixel bytes); the file is truncated or not a CIFAR-10 binary batch"
        )
    records = np.frombuffer(raw, np.uint8).reshape(-1, RECORD)
    labels = records[:, 0]
    if labels.max() >= num_classes:
        index = int(np.argmax(labels >= num_classes))
        raise DataError(
            f"{path}: record {index} has label {labels[index]}; labels are 0..{num_classes - 1}, one per "
            "class; the file is corrupt or not a CIFAR-10 binary batch"
        )
    x = torch.from_numpy(records[:, 1:].reshape(-1, *SHAPE).astype(np.float32)) / 255.0
    return x, torch.from_numpy(labels.astype(np.int64)), actual


def read_classes(path: Path) -> tuple[str, ...]:
    """The class names of ``batches.meta.txt``: one a line, blank lines skipped."""
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the class names ({exc})") from exc
    if len(names) != len(CLASSES) or len(set(names)) != len(names):
        raise DataError(f"{path}: lists {len(names)} distinct class names {list(names)}; CIFAR-10 has 10")
    return names


def read_manifest(folder: Path) -> dict[str, str]:
    """The ``SHA256SUMS`` a download wrote (file name -> sha256), or nothing for a folder without one."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        sha256, _, name = line.partition("  ")
        if len(sha256) != 64 or not name:
            raise DataError(f"{path}: malformed line {line!r}; expected '<sha256>  <file name>'")
        sums[name] = sha256
    return sums


def download(root: Path | None = None, *, mirrors: list[str] | None = None, progress: bool = True) -> Path:
    """Fetch the published archive into ``<root>/cifar10/`` (root: :func:`data_root`), verify its sha256,
    extract its batches safely and return their folder. Batches already there and intact are kept."""
    directory = (root if root is not None else data_root()) / "cifar10"
    target = directory / BATCHES
    if _intact(target):
        if progress:
            print(f"cifar10/{BATCHES}: present, sha256 ok", file=sys.stderr)
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    archive = directory / ARCHIVE
    if not (archive.is_file() and sha256_file(archive) == ARCHIVE_SHA256):
        fetch(archive, ARCHIVE_SHA256, mirrors if mirrors is not None else MIRRORS, progress=progress)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=directory) as scratch:
        staged = extract(archive, Path(scratch))
        sums = "".join(f"{sha256_file(staged / name)}  {name}\n" for name in (*TRAIN_FILES, TEST_FILE))
        for name in (*TRAIN_FILES, TEST_FILE):
            read_batch(staged / name)  # every record whole, every label 0-9
        (staged / MANIFEST).write_text(sums)
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
    archive.unlink()
    return target


def extract(archive: Path, into: Path) -> Path:
    """Extract the batches folder of ``archive`` into ``into`` with tarfile's ``data`` filter, which refuses
    links and paths leaving ``into``; return the extracted folder, checked to hold every batch."""
    if not hasattr(tarfile, "data_filter"):
        raise DataError("extracting an archive safely needs Python 3.11.4 or later (tarfile filters)")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.split("/", 1)[0] == BATCHES]
            tar.extractall(into, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: cannot extract it safely ({exc})") from exc
    folder = into / BATCHES
    missing = [name for name in (*TRAIN_FILES, TEST_FILE) if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"{archive}: holds no {BATCHES}/{', '.join(missing)}; not the CIFAR-10 binary archive"
        )
    return folder


def _intact(folder: Path) -> bool:
    """Whether ``folder`` holds every batch, each with the sha256 its download's manifest recorded."""
    try:
        sums = read_manifest(folder)
    except (DataError, OSError, UnicodeDecodeError):
        return False
    return all(
        name in sums and (folder / name).is_file() and sha256_file(folder / name) == sums[name]
        for name in (*TRAIN_FILES, TEST_FILE)
    )
