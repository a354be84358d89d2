"""The records a run writes and a report reads: plain dataclasses of numbers, strings and numpy arrays.

They are what the harness and the protocols hand to the store, and nothing here imports torch, so reading
a finished run never loads the attack engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SanityCheck:
    """One sanity check's finding (:mod:`advsec.sanity`): a flag says where to look, not a verdict."""

    name: str
    value: float
    flagged: bool
    detail: str


@dataclass(frozen=True)
class MembershipInference:
    """One membership-inference signal's standing (:mod:`advsec.privacy`): a score per sample, higher
    meaning "a member", read at low false-positive rates (Carlini et al. 2022) and as one balanced figure."""

    signal: str  # "loss", "adversarial loss" or "lira"
    members: int  # training samples scored
    nonmembers: int  # test samples scored
    accuracy: float  # balanced accuracy of a threshold fit on one half, scored on the other
    advantage: float  # TPR − FPR of that threshold on the held-back half: 0 is chance
    auc: float  # area under the ROC curve over all samples: 0.5 is chance
    auc_low: float  # DeLong's 95 % interval
    auc_high: float
    # TPR at the threshold that lets through at most 0.1 % of the non-members (none, when fewer than 1,000
    # were scored), with its Clopper–Pearson 95 % interval over the members
    tpr_001: float
    tpr_001_low: float
    tpr_001_high: float
    tpr_01: float  # the same at 1 % FPR
    tpr_01_low: float
    tpr_01_high: float
    shadows: int = 0  # LiRA's shadow models (trained without any scored sample); 0 for the loss signals
    shadow_seconds: float = 0.0  # their training time (as stored with them when they came from the cache)


@dataclass
class AttackRecord:
    """One attack's share of a cell: how many samples it attacked and broke, and at what cost."""

    label: str
    name: str
    params: dict[str, Any]
    target: str
    adaptive: bool = False
    attacked: int = 0
    broken: int = 0
    forwards: int = 0
    backwards: int = 0
    wall_seconds: float = 0.0
    # A generator's fit (advsec.generator), charged once apart from the per-sample cost; None for others.
    fit_seconds: float | None = None
    fit_cached: bool = False
    escalation: str | None = None  # the flags that added this attack (advsec.escalate); None: the spec's
    # What a generator learned (advsec.generator.Generator.learned: a universal patch, a perturbation) in
    # input units, for the report to draw; None for any other attack, or a generator with nothing to show.
    learned: np.ndarray | None = None
    # (sample, prediction, distance, the class aimed at or None)
    attempts: list[tuple[int, int, float, int | None]] = field(default_factory=list)


@dataclass
class CellResult:
    """Everything one cell (defense × norm × eps × attack cascade) produced."""

    cell: str
    defense: str
    norm: str
    eps: float
    cascade: bool
    labels: np.ndarray
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    robust: np.ndarray
    clean_single: np.ndarray  # correct on the first of the evaluation draws (all draws for `robust`)
    robust_single: np.ndarray
    broken_by: list[str | None]
    attacks: list[AttackRecord]
    wall_seconds: float
    examples: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)  # (sample, clean, adv)
    checks: list[SanityCheck] = field(default_factory=list)
    privacy: list[MembershipInference] = field(default_factory=list)  # the clean cell's


def across_classes(labels: Sequence[int], count: int) -> list[int]:
    """The positions of ``count`` samples taken in turn from each class: the first sample of each class (in
    class order), then the second of each, and so on. Examples chosen so show every class a cell has, where
    the first samples of a file may all be one class."""
    by_class: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(position)
    rounds = itertools.zip_longest(*(by_class[label] for label in sorted(by_class)))
    return [position for taken in rounds for position in taken if position is not None][:count]


@dataclass
class CertificationResult:
    """One defense's certificates (Cohen et al.'s CERTIFY, per sample) and the settings behind them."""

    defense: str
    key: str  # a hash of the model and the settings: a certification already stored under it is skipped
    settings: dict[str, Any]  # sigma, n0, n, alpha, samples, batch_size, seed
    labels: np.ndarray
    predictions: np.ndarray  # the smoothed classifier's class; -1 where it abstains
    counts: np.ndarray  # estimation draws (of n) on the selected class
    p_lower: np.ndarray  # the lower confidence bound on that class's probability
    radii: np.ndarray  # certified ℓ2 radius; NaN where it abstains
    forwards: int
    wall_seconds: float


@dataclass
class Craft:
    """One attacker of the sitting-duck protocol: how it crafted, and what its examples did when replayed."""

    attack: str  # the attack's label
    mode: str  # "snapshot", "eot" or "queries" (advsec.replay)
    samples: int
    crafted_fooled: int | None  # samples the crafted-against snapshot got wrong; None for the live modes
    queries: int  # samples the attacker pushed through the network while crafting
    wall_seconds: float
    # Per replay: (delay, repeat, adversarial examples that fooled the model, clean inputs it got wrong).
    trials: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class ReplayResult:
    """One defense's sitting-duck protocol: its attackers, and the transfer between its members."""

    defense: str
    key: str  # a hash of the model and the settings: a defense already replayed under it is skipped
    crafts: list[Craft]
    transfers: list[tuple[int, int, int, int]] = field(default_factory=list)  # (source, target, fooled, n)


@dataclass
class UnrestrictedResult:
    """One unrestricted attack's made inputs against one defense (:mod:`advsec.unrestricted`)."""

    key: str  # a hash of everything that determines the run: a run already stored under it is skipped
    defense: str
    attack: str
    listener: str  # the listener's architecture
    source: str  # "carrier" or "test": what the inputs were made from
    norm: str  # what the rows' distance measures
    fit_seconds: float
    wall_seconds: float
    # Per made input: (index, target or -1, the test input's label or -1, what the model made of what it was
    # made from, what it makes of the made input, what the listener does, distance from what it was made from)
    rows: list[tuple[int, int, int, int, int, int, float]]
    examples: list[tuple[int, np.ndarray, np.ndarray]]  # the first few: (index, source, made input)
