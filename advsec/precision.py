"""Cheaper network passes for a gradient attack's search, exact ones for everything it decides.

A gradient attack spends nearly all its time in passes whose results only steer it: a gradient's
direction, a step size's bookkeeping. On CPUs that compute bfloat16 natively (AVX512-BF16 or AMX), those
passes run under ``torch.autocast``: they cost less, and on this project's machine APGD-CE and APGD-T
searching so were no weaker than in float32 (``benchmarks/pass_cost.py`` times a gradient pass in each
precision: docs/results.md, pass_cost). The backward pass gains least (oneDNN's input gradient of a strided
convolution is about as slow in either precision). What the search decides is decided in float32:

- a sample a reduced pass finds fooled is fooled only if a float32 pass agrees (:func:`confirmed`), so an
  attack never stops on a point that does not fool the model as deployed;
- every verdict the harness records comes from float32 passes outside the search.

Query attacks stay in float32: Square's progress is many small improvements, finer than bfloat16 resolves
in a margin of logits around 10. Searching in it (keeping only proposals a float32 pass confirmed) left
more samples robust and their margins wider, for little time saved.

A network is searched at reduced precision only where the harness allows it (a model that draws no
randomness and keeps no state: a confirming pass must see the same function) and only after a check on
its first search batch: the reduced logits must stay within a tenth of the logits' scale of the float32
ones, or the network is searched in float32. ``[evaluation] search_precision = "float32"`` turns it off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

import torch
from torch import nn

_TOLERANCE = 0.1  # of the logits' scale: bfloat16 keeps 8 bits of mantissa, a few layers lose a few more
_CHECKED_SAMPLES = 64

_ACTIVE: ContextVar[ReducedPrecision | None] = ContextVar("advsec_reduced_precision", default=None)


def native_bfloat16() -> bool:
    """Whether this machine's CPU computes bfloat16 in hardware (emulated, it is slower than float32)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


class ReducedPrecision:
    """A network's bfloat16 search passes; :meth:`__call__` returns None for "pass in float32"."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.refused = not native_bfloat16()
        self.checked = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.refused or _ACTIVE.get() is not self or x.device.type != "cpu":
            return None
        if not self.checked:
            self._check(x)
            if self.refused:
                return None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.network(x).float()

    def searching(self) -> AbstractContextManager[None]:
        """Inside, this network's passes (on this thread) are search passes."""
        return _active(None if self.refused else self)

    def _check(self, x: torch.Tensor) -> None:
        self.checked = True
        sample = x[:_CHECKED_SAMPLES].detach()
        try:
            with torch.no_grad():
                exact = self.network(sample)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    reduced = self.network(sample).float()
        except RuntimeError:  # an operation without a bfloat16 kernel: search in float32
            self.refused = True
            return
        scale = max(1.0, float(exact.abs().max()))
        error = float((reduced - exact).abs().max()) if reduced.shape == exact.shape else float("inf")
        self.refused = not error <= _TOLERANCE * scale  # NaN and inf included


def reduced() -> bool:
    """Whether this thread's passes are search passes at reduced precision (once a network's check has
    refused it, its passes are float32 and this is False)."""
    active = _ACTIVE.get()
    return active is not None and not active.refused


def exact() -> AbstractContextManager[None]:
    """Inside, every pass is a float32 pass."""
    return _active(None)


@contextmanager
def _active(search: ReducedPrecision | None) -> Iterator[None]:
    token = _ACTIVE.set(search)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def confirmed(hit: torch.Tensor, fools: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``hit`` (samples a search pass found fooled) where float32 passes agree: ``fools(rows)`` is their
    exact verdict for the rows ``rows``; asked only when search passes are reduced and something was hit."""
    if not reduced() or not hit.any():
        return hit
    rows = hit.nonzero().squeeze(1)
    with exact(), torch.no_grad():
        agreed = fools(rows)
    kept = hit.clone()
    kept[rows] = agreed
    return kept
