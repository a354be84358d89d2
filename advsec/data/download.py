"""Dataset files: their published sizes and sha256 sums, where to fetch them, and a verified download.

A new file-backed dataset (CIFAR-10, audio) adds one :class:`FileSet` to :data:`FILE_SETS`; its source then
calls :meth:`FileSet.verify` before reading, and ``advsec download <name>`` works with no further code.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from advsec.data import data_root
from advsec.errors import DataError, UsageError

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = "advsec (dataset download)"


@dataclass(frozen=True)
class FileSet:
    """The files of one dataset, kept in ``<root>/<name>/``: each file's size and sha256, and mirrors."""

    name: str
    files: Mapping[str, tuple[int, str]]  # file name -> (bytes, sha256)
    mirrors: tuple[str, ...]  # base URLs; a file's URL is the base plus its name

    def directory(self, root: Path | None = None) -> Path:
        return (root if root is not None else data_root()) / self.name

    @property
    def fingerprint(self) -> str:
        """A short hash of the files' sha256 sums: verified files need no rehash of their tensors."""
        digest = hashlib.sha256()
        for name, (_, sha256) in sorted(self.files.items()):
            digest.update(f"{name} {sha256}\n".encode())
        return digest.hexdigest()[:16]

    def verify(self, root: Path | None = None) -> Path:
        """The folder holding every file with its published sha256; :class:`DataError` otherwise."""
        directory = self.directory(root)
        how = (
            f"Fetch them with `advsec download {self.name}`, "
            f"or set ADVSEC_DATA to a folder holding {self.name}/."
        )
        if not directory.is_dir():
            raise DataError(
                f"{self.name} files not found: looked in {directory}, which does not exist. {how}"
            )
        for filename, (size, sha256) in self.files.items():
            path = directory / filename
            if not path.is_file():
                raise DataError(f"{self.name} file missing: {path} (expected {size:,} bytes). {how}")
            actual = sha256_file(path)
            if actual != sha256:
                found = path.stat().st_size
                state = "truncated" if found < size else "corrupt"
                raise DataError(
                    f"{path}: sha256 {actual}, expected {sha256} ({found:,} bytes, expected {size:,}); "
                    f"the file is {state}. Fetch it again with `advsec download {self.name}`."
                )
        return directory


FILE_SETS: dict[str, FileSet] = {
    fs.name: fs
    for fs in (
        FileSet(
            name="mnist",
            files={
                "train-images-idx3-ubyte.gz": (
                    9_912_422,
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                ),
                "train-labels-idx1-ubyte.gz": (
                    28_881,
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                ),
                "t10k-images-idx3-ubyte.gz": (
                    1_648_877,
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                ),
                "t10k-labels-idx1-ubyte.gz": (
                    4_542,
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                ),
            },
            mirrors=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ),
        ),
        FileSet(
            name="fashion-mnist",
            files={
                "train-images-idx3-ubyte.gz": (
                    26_421_880,
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                ),
                "train-labels-idx1-ubyte.gz": (
                    29_515,
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                ),
                "t10k-images-idx3-ubyte.gz": (
                    4_422_102,
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                ),
                "t10k-labels-idx1-ubyte.gz": (
                    5_148,
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                ),
            },
            mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ),
    )
}


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def download(
    name: str, root: Path | None = None, *, mirrors: list[str] | None = None, progress: bool = True
) -> Path:
    """Fetch dataset ``name`` into ``<root>/<name>/`` (root: :func:`data_root`) and return that folder.

    Files already present with the right sha256 are kept; the others are fetched from the first mirror that
    serves them intact (``mirrors`` replaces the published list) and only then moved into place.
    """
    if name not in FILE_SETS:
        raise UsageError(f"no download for dataset {name!r}; known: {', '.join(sorted(FILE_SETS))}")
    file_set = FILE_SETS[name]
    directory = file_set.directory(root)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    for filename, (_, sha256) in file_set.files.items():
        target = directory / filename
        if target.is_file() and sha256_file(target) == sha256:
            if progress:
                print(f"{name}/{filename}: present, sha256 ok", file=sys.stderr)
            continue
        fetch(target, sha256, mirrors if mirrors is not None else file_set.mirrors, progress=progress)
    return directory


def fetch(target: Path, sha256: str, mirrors: Sequence[str], *, progress: bool = True) -> None:
    """Write ``target`` from the first mirror whose copy of ``target.name`` has ``sha256``.

    Bytes go to a temporary file beside ``target``, renamed over it only once verified, so an interrupted or
    corrupt download never leaves a file a later load could mistake for the real one.
    """
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + target.name
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        except OSError as exc:
            raise DataError(f"cannot write to {target.parent}: {exc.strerror or exc}") from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                actual = _copy_url(url, out, label=target.name if progress else None)
            if actual == sha256:
                os.replace(tmp, target)
                return
            failures.append(f"{url}: sha256 {actual}, expected {sha256} (truncated or corrupt)")
        except (OSError, ValueError, http.client.HTTPException) as exc:
            failures.append(f"{url}: {_reason(exc)}")
        finally:
            tmp.unlink(missing_ok=True)
    tried = "; ".join(failures) if failures else "no mirrors given"
    raise DataError(f"could not download {target.name} (sha256 {sha256}) to {target.parent}: {tried}")


def _copy_url(url: str, out: BinaryIO, label: str | None) -> str:
    """Stream ``url`` into ``out``, showing progress under ``label`` if given; return the bytes' sha256."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while chunk := response.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if label:
                of = f"/{total / 1e6:.1f}" if total else ""
                print(f"\r{label}: {done / 1e6:.1f}{of} MB", end="", file=sys.stderr, flush=True)
    if label:
        print(file=sys.stderr)
    return digest.hexdigest()


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
