"""What the file-backed datasets (``npz``, ``image-folder``, ``cifar10``) share: label checks, an empty
training split, and a fingerprint of the content and the declared facts.

Every message names the file (or folder) it is about, so a user knows which one to fix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from advsec.errors import DataError


def check_labels(where: str, name: str, labels: np.ndarray, classes: Sequence[str]) -> None:
    """Refuse labels outside the classes: ``test.npz: y holds labels 0..12 but classes lists 10``."""
    if not len(labels):
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= len(classes):
        raise DataError(f"{where}: {name} holds labels {low}..{high} but classes lists {len(classes)}")


def empty_split(shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A training split of no samples, shaped like the evaluation inputs (a checkpoint needs none)."""
    return torch.empty((0, *shape), dtype=torch.float32), torch.empty(0, dtype=torch.int64)


def content_fingerprint(content: Sequence[str], facts: dict[str, Any]) -> str:
    """A short hash of the files' sha256 sums (or tensors' hashes) and the facts declared about them, so a
    cached model is never reused when either changes."""
    digest = hashlib.sha256()
    for part in content:
        digest.update(f"{part}\n".encode())
    digest.update(json.dumps(facts, sort_keys=True).encode())
    return digest.hexdigest()[:16]
