"""Content keys, and the randomness derived from them.

Cached models, cells and each defense's certificates or replays are named by a hash of everything that
determines them, so a result is reused exactly when nothing it depends on changed. Each also draws its
randomness from a seed derived from its own key, so results reproduce in any order and after a resume.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def content_key(content: dict[str, Any]) -> str:
    """A short hash of JSON-able ``content``, independent of key order."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def key_seed(key: str, seed: int) -> int:
    """The seed of the work named ``key`` in a run seeded with ``seed``."""
    return int(key[:12], 16) ^ seed


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's global generators (CPU, and ``device``'s) seeded with ``seed`` inside, as they were after:
    for models that draw from them (random defenses, augmentation) without disturbing anyone else."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
