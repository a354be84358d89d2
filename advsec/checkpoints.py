"""The model cache on disk: safetensors checkpoints under ``$ADVSEC_CACHE``, written atomically.

Loading a checkpoint never unpickles anything. Trained models (:mod:`advsec.train`), fitted generators
(:mod:`advsec.generator`) and the shared GAN (:mod:`advsec.gan`) all live here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from advsec.errors import DataError
from advsec.keys import seeded


def cache_dir() -> Path:
    """``$ADVSEC_CACHE`` if set, else ``~/.cache/advsec``; models live in its ``models/`` folder."""
    env = os.environ.get("ADVSEC_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "advsec") / "models"


def save_checkpoint(model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, partial, metadata={"advsec": json.dumps(meta)})
    partial.replace(path)  # atomic: a crash never leaves a half-written checkpoint under the real name


def load_or_fit(
    module: nn.Module, path: Path, fit: Callable[[], None], seed: int, device: torch.device
) -> tuple[dict[str, Any], bool]:
    """``module`` loaded from ``path``, or fitted in place by ``fit`` (torch's generators seeded with
    ``seed``) and saved there with its ``fit_seconds``; its metadata, and whether it came from the cache."""
    if path.exists():
        return load_checkpoint(module, path), True
    started = time.perf_counter()
    with seeded(seed, device):
        fit()
    meta = {"fit_seconds": time.perf_counter() - started}
    save_checkpoint(module, path, meta)
    return meta, False


def load_checkpoint(model: nn.Module, path: Path) -> dict[str, Any]:
    try:
        state = load_file(path)
        with safe_open(path, framework="pt") as handle:
            meta = json.loads(handle.metadata()["advsec"])
        model.load_state_dict(state)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
        raise DataError(f"cached model {path} is unreadable ({exc}); delete it to retrain") from exc
    return meta
