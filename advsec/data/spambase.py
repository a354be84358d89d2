"""UCI Spambase: 4,601 e-mails × 57 features, ham (0) or spam (1), and the add-only constraint on them.

Features, kept raw so that an attack's budget is addressable in the data's own units:

- 0-47, word frequencies: percent of the e-mail's words that are ``make``, ``address``, … ``conference``;
- 48-53, character frequencies: percent of its characters that are ``;`` ``(`` ``[`` ``!`` ``$`` ``#``;
- 54-56, capital runs: their average length, the longest, and the total number of capitals (each ≥ 1).

No scaling is applied here: a model normalizes inside (``tabular-mlp`` takes log1p of each feature), so
adding 1 % of an e-mail's length in words is a rise of 1 percentage point in the word features.

**The add-only constraint** (norm ``words``, ``eps`` the added words as a fraction of the e-mail's length):
the attacker appends words from the 48-word vocabulary to a spam e-mail. Then

- word frequencies only rise, and their rises total at most ``100 · eps`` percentage points (a first-order
  count: adding ``A = eps · W`` words to a ``W``-word e-mail raises a word's share by at most ``100 · eps``
  points; the dilution of the other words by ``W / (W + A)`` is ignored, so no feature is ever lowered);
  no word frequency exceeds 100 and the 48 together never exceed 100;
- character frequencies stay fixed: the added words hold none of the six characters (their dilution is
  ignored, as the words');
- capital runs stay fixed: the added words are lower-case, so no run lengthens, starts or ends.

The data are checked against the sha256 of ``spambase.csv`` (from Debian's ``r-cran-kernlab``, the UCI
values with a header) before they are read; ``advsec download spambase`` fetches it from the mirrors in
:data:`advsec.data.download.FILE_SETS` when one is listed, else the file is put in ``$ADVSEC_DATA/spambase``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from advsec.data import Dataset, DatasetSource
from advsec.data.download import FileSet
from advsec.errors import DataError, InputError

FILES = FileSet(
    name="spambase",
    files={
        "spambase.csv": (1147401, "118eb7ac6537494ccbff79fed03ec084f9f435b6e80fe7834fe8b6eee6d7253e"),
    },
    mirrors=(),  # no mirror serves these exact bytes; the UCI archive's spambase.data is laid out differently
)
ROWS = 4601
FEATURES = 57
WORDS = slice(0, 48)
CHARACTERS = slice(48, 54)
CAPITALS = slice(54, 57)
# Each feature's valid range: frequencies are percentages, capital runs count at least one capital.
LOW = torch.tensor([0.0] * 54 + [1.0] * 3)
HIGH = torch.tensor([100.0] * 54 + [float("inf")] * 3)
BOUNDS = (0.0, 1e5)  # a box holding every feature; the per-feature ranges above are the norm's to enforce


@dataclass(frozen=True)
class Spambase(DatasetSource):
    """UCI Spambase, raw features; a stratified split of ``test_fraction`` drawn with ``split_seed``."""

    domain: ClassVar[str] = "tabular"
    bounds: ClassVar[tuple[float, float]] = BOUNDS
    shape: ClassVar[tuple[int, ...]] = (FEATURES,)
    classes: ClassVar[tuple[str, ...]] = ("ham", "spam")
    test_fraction: float = 0.25
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {self.test_fraction}")

    def load(self, root: Path | None = None) -> Dataset:
        path = FILES.verify(root) / "spambase.csv"
        x, y = read_csv(path)
        test = stratified_test_mask(y, self.test_fraction, self.split_seed)
        return Dataset(
            name="spambase",
            x_train=x[~test],
            y_train=y[~test],
            x_test=x[test],
            y_test=y[test],
            bounds=self.bounds,
            classes=self.classes,
            domain="tabular",
            fingerprint=f"{FILES.fingerprint[:8]}{self.split_seed:04d}{round(self.test_fraction * 1e4):04d}",
        )


def read_csv(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 57 features (float32) and labels (1 = spam) of a verified ``spambase.csv``."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    if len(header) != FEATURES + 1 or header[-1] != "type" or len(body) != ROWS:
        raise DataError(f"{path}: expected {ROWS} rows of {FEATURES} features and 'type', got {len(body)}")
    x = torch.tensor(np.array([row[:FEATURES] for row in body], dtype=np.float32))
    labels = [row[FEATURES] for row in body]
    if set(labels) != {"spam", "nonspam"}:
        raise DataError(f"{path}: labels {sorted(set(labels))}; expected 'spam' and 'nonspam'")
    return x, torch.tensor([label == "spam" for label in labels], dtype=torch.int64)


def stratified_test_mask(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """A test mask holding ``fraction`` of each class (rounded), drawn with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(y), dtype=torch.bool)
    for label in y.unique():
        members = (y == label).nonzero().squeeze(1)
        chosen = members[torch.randperm(len(members), generator=generator)[: round(fraction * len(members))]]
        test[chosen] = True
    return test


# --- the add-only constraint (ThreatModel's ``words`` norm) -----------------------------------------------


def _check_shape(x: torch.Tensor) -> None:
    if x.dim() != 2 or x.shape[1] != FEATURES:
        shape = tuple(x.shape)
        raise InputError(f"norm 'words' is Spambase's: inputs must be shaped (N, {FEATURES}), got {shape}")


def word_budget(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Each e-mail's budget of word-frequency rises, percentage points shaped ``(N, 1)``: ``100 · eps``, less
    where the 48 words would pass 100 % of the e-mail together."""
    _check_shape(x)
    room = (100.0 - x[:, WORDS].sum(dim=1, keepdim=True)).clamp_min(0.0)
    return torch.minimum(torch.full_like(room, 100.0 * eps), room)


def added_share(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Words added, as a fraction of each e-mail's length: the word-frequency rises ÷ 100, shape ``(N,)``."""
    return (x_adv - x)[:, WORDS].clamp_min(0.0).sum(dim=1) / 100.0


def project_words(x: torch.Tensor, x_adv: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    """The nearest point (Euclidean) of ``x_adv`` that only adds: word rises in ``[0, 100 − x]`` totalling at
    most ``budget``; characters and capital runs as in ``x``.

    The nearest rises are ``clip(δ − τ, 0, room)`` with the smallest ``τ ≥ 0`` meeting the budget, found by
    bisection; the upper end of the bracket is kept, so the budget holds exactly, not within a tolerance.
    """
    _check_shape(x)
    delta = (x_adv - x)[:, WORDS]
    room = (100.0 - x[:, WORDS]).clamp_min(0.0)
    rises = torch.minimum(delta.clamp_min(0.0), room)
    over = rises.sum(dim=1, keepdim=True) > budget
    if over.any():
        low = torch.zeros_like(budget)
        high = delta.amax(dim=1, keepdim=True).clamp_min(0.0)
        for _ in range(60):
            mid = (low + high) / 2
            fits = torch.minimum((delta - mid).clamp_min(0.0), room).sum(dim=1, keepdim=True) <= budget
            high = torch.where(fits, mid, high)
            low = torch.where(fits, low, mid)
        shrunk = torch.minimum((delta - high).clamp_min(0.0), room)
        # Float rounding may leave the sum a hair over: scale it onto the budget.
        total = shrunk.sum(dim=1, keepdim=True)
        shrunk = shrunk * (budget / total.clamp_min(1e-30)).clamp(max=1.0)
        rises = torch.where(over, shrunk, rises)
    out = x.clone()
    out[:, WORDS] = torch.minimum(x[:, WORDS] + rises, torch.full_like(rises, 100.0))
    return out


def random_rises(x: torch.Tensor, budget: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """A perturbation drawn uniformly from ``{rises ≥ 0, Σ rises ≤ budget}`` on the word features, from
    ``uniform``: [0, 1) draws shaped (samples, word features + 1), made by the threat model's generator."""
    k = WORDS.stop - WORDS.start
    spread = -torch.log(uniform.clamp_min(1e-12))  # Dirichlet(1, …, 1)
    weights = (spread / spread.sum(dim=1, keepdim=True))[:, :k]  # the last share is the unused budget
    delta = torch.zeros_like(x)
    delta[:, WORDS] = weights * budget
    return delta


def word_violations(x: torch.Tensor, x_adv: torch.Tensor, eps: float, tol: float = 1e-6) -> torch.Tensor:
    """A per-sample mask of points that remove, change what may not change, pass the budget, or leave a
    feature's valid range."""
    _check_shape(x)
    slack = tol * 100.0
    delta = x_adv - x
    lowered = (delta[:, WORDS] < -slack).any(dim=1)
    changed = (delta[:, CHARACTERS].abs() > slack).any(dim=1) | (delta[:, CAPITALS].abs() > slack).any(dim=1)
    over = added_share(x, x_adv) * 100.0 > word_budget(x, eps).squeeze(1) * (1 + tol) + slack
    low, high = LOW.to(x_adv), HIGH.to(x_adv)
    outside = ((x_adv < low - slack) | (x_adv > high + slack)).any(dim=1)
    outside |= x_adv[:, WORDS].sum(dim=1) > 100.0 + slack
    return lowered | changed | over | outside | ~torch.isfinite(x_adv).all(dim=1)
