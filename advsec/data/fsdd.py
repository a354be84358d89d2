"""The Free Spoken Digit Dataset: 3,000 recordings of the digits 0-9 by 6 speakers, 8 kHz mono.

Files are ``recordings/{digit}_{speaker}_{index}.wav``; recordings 0-4 of each speaker and digit are the
test split (300), the rest train (2,700), as the dataset's authors suggest. Waveforms are scaled from 16-bit
PCM to [-1, 1) and padded with silence or cut to one second, so every input has the same length.

The 3,000 files are checked against one pinned hash: the sha256 of their ``sha256sum`` manifest (each
file's sha256 and path, sorted by path), recomputed from the files themselves before they are read.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from scipy.io import wavfile

from advsec.data import Dataset, DatasetSource, data_root
from advsec.data.download import TIMEOUT_S, USER_AGENT, sha256_file
from advsec.errors import DataError

RATE = 8000
MANIFEST_SHA256 = "04e1baae96c6a26e39c623f2b01d0182ddae627ba0ac02a3cdc17ba2af99fd9b"
RECORDINGS = 3000
ARCHIVE = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip"
NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")


def manifest(recordings: Path) -> str:
    """The ``sha256sum`` manifest of a recordings folder: a line per WAV, sorted by path."""
    files = sorted(recordings.glob("*.wav"))
    return "".join(f"{sha256_file(path)}  recordings/{path.name}\n" for path in files)


def verify(directory: Path) -> Path:
    """The verified ``recordings`` folder of ``directory``, or a :class:`DataError` saying what is wrong."""
    how = "Fetch them with `advsec download fsdd`, or set ADVSEC_DATA to a folder holding fsdd/recordings/."
    recordings = directory / "recordings"
    count = len(list(recordings.glob("*.wav"))) if recordings.is_dir() else 0
    if count != RECORDINGS:
        raise DataError(f"fsdd: found {count} recordings in {recordings}, expected {RECORDINGS}. {how}")
    found = manifest(recordings)
    if hashlib.sha256(found.encode()).hexdigest() != MANIFEST_SHA256:
        which = _naming_differences(found, directory / "SHA256SUMS")
        raise DataError(
            f"fsdd: the recordings in {recordings} do not match the published sha256 sums{which}; "
            f"they are corrupt or another release. {how}"
        )
    return recordings


def _naming_differences(found: str, published: Path) -> str:
    """`` (recordings/x.wav, … differ)`` when the published manifest lies beside the recordings, else ""."""
    if not (published.is_file() and sha256_file(published) == MANIFEST_SHA256):
        return ""
    differing = sorted(set(found.splitlines()) - set(published.read_text().splitlines()))[:3]
    return f" ({', '.join(line.split()[1] for line in differing)} differ)"


def read_recordings(recordings: Path, length: int) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Every waveform (cut or padded to ``length``), its digit, and its index within speaker and digit."""
    waves, digits, indices = [], [], []
    for path in sorted(recordings.glob("*.wav")):
        match = NAME.fullmatch(path.name)
        if match is None:
            raise DataError(f"fsdd: unexpected file name {path.name}; expected digit_speaker_index.wav")
        rate, pcm = wavfile.read(path)
        if rate != RATE or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise DataError(
                f"{path}: {rate} Hz {pcm.dtype} with {pcm.ndim} channels; expected 8 kHz 16-bit mono"
            )
        wave = np.zeros(length, dtype=np.float32)
        clip = pcm[:length].astype(np.float32) / 32768.0
        wave[: len(clip)] = clip
        waves.append(wave)
        digits.append(int(match[1]))
        indices.append(int(match[3]))
    return waves, digits, indices


class FSDD(DatasetSource):
    """Free Spoken Digit Dataset: spoken digits, 1 s of 8 kHz waveform in [-1, 1]; 2,700 train / 300 test."""

    domain = "audio"
    bounds = (-1.0, 1.0)
    shape = (1, RATE)
    classes: ClassVar[tuple[str, ...]] = tuple(str(c) for c in range(10))
    test_indices = range(5)  # recordings 0-4 of every speaker and digit

    def load(self, root: Path | None = None) -> Dataset:
        recordings = verify((root if root is not None else data_root()) / "fsdd")
        waves, digits, indices = read_recordings(recordings, self.shape[-1])
        x = torch.from_numpy(np.stack(waves)).unsqueeze(1)
        y = torch.tensor(digits)
        test = torch.tensor([i in self.test_indices for i in indices])
        return Dataset(
            name="fsdd",
            x_train=x[~test],
            y_train=y[~test],
            x_test=x[test],
            y_test=y[test],
            bounds=self.bounds,
            classes=self.classes,
            domain="audio",
            sample_rate=RATE,
            fingerprint=MANIFEST_SHA256[:16],
        )


def download(root: Path | None = None, *, url: str = ARCHIVE) -> Path:
    """Fetch the FSDD release archive, keep its recordings, and verify them before moving them into place."""
    directory = (root if root is not None else data_root()) / "fsdd"
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    print(f"fsdd: fetching {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            archive = zipfile.ZipFile(io.BytesIO(response.read()))
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"could not download {url}: {exc}") from exc
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / "fsdd"
        (staged / "recordings").mkdir(parents=True)
        for member in archive.namelist():
            if "/recordings/" in member and NAME.fullmatch(Path(member).name):
                (staged / "recordings" / Path(member).name).write_bytes(archive.read(member))
        (staged / "SHA256SUMS").write_text(manifest(staged / "recordings"))
        verify(staged)
        directory.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
        shutil.move(staged, directory)
    return directory
