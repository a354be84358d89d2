"""Rekeying: a model that holds still between keys and changes its key when it is probed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.defense import Bounds
from advsec.defenses.weight_noise import FrozenWeights, NoisyWeights, WeightNoise


def new_key() -> int:
    """A fresh key from torch's global generator: unpredictable from the last one, reproducible per seed."""
    return int(torch.randint(2**62, ()))


class Rekeyed(nn.Module):
    """Weight noise fixed by a key; a new key after ``every`` queried samples or on a repeated query.

    A query repeats an earlier one when it rounds to the same grid of step ``tolerance`` as one of the last
    ``memory`` queried samples: an attacker replaying, or taking small steps, meets a new model.
    """

    def __init__(self, model: nn.Module, sigma: float, every: int, tolerance: float, memory: int) -> None:
        super().__init__()
        self.noisy = NoisyWeights(model, sigma)
        self.every, self.tolerance, self.memory = every, tolerance, memory
        self.key = new_key()
        self.since_rekey = 0
        self.seen: dict[bytes, None] = {}  # fingerprints of recent queries, oldest first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = torch.round(x.detach() / self.tolerance).flatten(1).cpu().numpy()
        fingerprints = [row.tobytes() for row in grid]
        repeated = any(f in self.seen for f in fingerprints)
        self.since_rekey += len(x)
        if repeated or self.since_rekey > self.every:
            self.key, self.since_rekey = new_key(), len(x)
        for fingerprint in fingerprints:
            self.seen[fingerprint] = None
        for stale in list(self.seen)[: max(len(self.seen) - self.memory, 0)]:
            del self.seen[stale]
        return self.noisy(x, self._key_generator())

    def snapshot(self) -> nn.Module:
        """The model under the current key, held still."""
        return FrozenWeights(self.noisy.model, self.noisy.draw(self._key_generator()))

    def _key_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.key)


@dataclass
class Rekey(WeightNoise):
    """Weight noise that stays fixed under one key and is re-drawn after ``every`` queried samples or when
    a query (nearly) repeats a recent one: stateful, so replayed or probing queries meet a new model."""

    stateful = True

    every: int = 1000
    tolerance: float = 1 / 255  # queries rounding to the same grid of this step count as repeats
    memory: int = 4096

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.every < 1 or self.memory < 1 or not self.tolerance > 0:
            raise ValueError("every and memory must be >= 1 and tolerance > 0")

    def wrap(self, model: nn.Module, *, bounds: Bounds) -> nn.Module:
        return Rekeyed(model, self.sigma, self.every, self.tolerance, self.memory)
