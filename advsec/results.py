"""Aggregates recomputed from the store's per-sample rows: typed records for reports, ``show`` and ``--json``.

Nothing here is stored pre-aggregated; every figure is counted from samples and attempts, so a number
in a report can always be traced to the rows behind it. :class:`RunResults` gathers them for a whole run;
:meth:`RunResults.to_json` is the shape ``--json`` prints (its ``format`` says which shape).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from advsec.records import MembershipInference, SanityCheck
from advsec.store import Store

RADIUS_STEP = 0.25  # certified accuracy is reported at ℓ2 radii 0, 0.25, 0.5, …, at least up to 1
CERTIFIED_RADIUS = "0.5"  # the scorecard's certified column: Cohen et al.'s usual reference radius
JSON_FORMAT = 3  # raised whenever the shape of RunResults.to_json changes

Interval = tuple[float, float]


@dataclass(frozen=True)
class AttackSummary:
    """One attack's stage in a cell."""

    attack: str  # its label
    adaptive: bool
    robust_after: float  # worst case over the attacks up to and including this one
    robust_alone: float | None  # this attack by itself (unknown for later stages of a cascade)
    attacked: int
    broken: int
    forwards: int
    backwards: int
    wall_seconds: float
    targeted_success: float | None  # of the samples aimed at a class, the share now in it; None: untargeted
    targeted_interval: Interval | None
    fit_seconds: float | None  # a generator's one-off training (None for other attacks)
    fit_cached: bool
    escalation: str | None  # the sanity flags that added this attack (advsec.escalate); None: the spec's


@dataclass(frozen=True)
class CellSummary:
    """One cell (defense × norm × eps × cascade), every figure counted from its per-sample rows."""

    cell: str
    defense: str
    norm: str
    eps: float
    n: int
    clean_accuracy: float
    robust_accuracy: float
    robust_interval: Interval
    clean_accuracy_single: float  # each sample scored on one draw of a random defense instead of all
    robust_accuracy_single: float
    naive_robust_accuracy: float | None  # before any adaptive attack: what a naive evaluation would claim
    # After the spec's own attacks, before the ones its sanity flags added; None when none were added.
    unescalated_robust_accuracy: float | None
    attacks: list[AttackSummary]
    checks: list[SanityCheck]
    privacy: list[MembershipInference]  # membership inference, in the clean cell
    wall_seconds: float
    forwards: int
    backwards: int


@dataclass(frozen=True)
class GuardEvent:
    """One time the overfitting guard fired during training."""

    epoch: int  # the collapsed epoch
    check: float  # its robust accuracy on the held-out check
    restored: int  # the epoch restored; 0: none, training started over from fresh weights
    best: float | None  # the restored epoch's check
    overfit: bool  # the defense saw catastrophic overfitting's sign
    constant: bool  # the model had collapsed to one answer for all


@dataclass(frozen=True)
class DefenseSummary:
    """One defense across the run: clean accuracy from its clean cell, robust accuracy per budget
    (keys like ``linf:0.3``), its sanity flags, privacy cost and costs."""

    defense: str
    family: str
    name: str | None
    params: dict[str, Any]
    clean_accuracy: float
    robust: dict[str, float]
    robust_interval: dict[str, Interval]
    robust_single: dict[str, float]
    clean_interval: Interval
    clean_accuracy_single: float
    naive_robust: dict[str, float]
    guard: list[GuardEvent]
    train_seconds: float | None
    attack_seconds: float
    forwards: int
    backwards: int
    stochastic: bool
    privacy: dict[str, MembershipInference]  # by signal: how far training samples can be told from others
    flags: list[str]  # the names of the flagged sanity checks
    privacy_budget: tuple[float, float] | None = None  # (ε, δ) a differentially private training spent


@dataclass(frozen=True)
class ModelSummary:
    """What a defense's deployed model is (:func:`advsec.runtime.describe_model`; empty in a store written
    before models were described) and the warnings recorded about its numbers."""

    defense: str
    description: dict[str, Any]
    warnings: list[str]


@dataclass(frozen=True)
class CertifiedSummary:
    """One smoothed defense's certification: settings, abstentions, certified accuracy per radius."""

    defense: str
    sigma: float
    n0: int
    n: int
    alpha: float
    samples: int
    batch_size: int
    seed: int
    abstained: float
    certified: dict[str, float]  # radius (as text, e.g. "0.5") -> certified accuracy
    wall_seconds: float
    forwards: int


@dataclass(frozen=True)
class ReplayAtDelay:
    success: float  # the share of replayed adversarial examples the model got wrong, pooled over repeats
    interval: Interval
    clean_error: float  # its error on the clean inputs at the same moment


@dataclass(frozen=True)
class ReplaySummary:
    """One defense and attacker of the sitting-duck protocol (:mod:`advsec.replay`)."""

    defense: str
    attack: str
    mode: str
    samples: int
    repeats: int
    crafted: float | None  # success against the snapshot crafted on (snapshot mode only)
    queries_per_sample: float
    wall_seconds: float
    replay: dict[int, ReplayAtDelay]


@dataclass(frozen=True)
class UnrestrictedSummary:
    """One unrestricted attack against one defense (:mod:`advsec.unrestricted`); ``rates`` holds the three
    rates of its source (:data:`UNRESTRICTED_RATES`), ``intervals`` their Wilson intervals."""

    defense: str
    attack: str
    source: str
    listener: str
    samples: int
    aimed: int  # made inputs whose source the model did not already answer as wanted
    chance: float | None  # the listener's rate were it guessing
    norm: str
    median_distance: float | None
    fit_seconds: float
    wall_seconds: float
    rates: dict[str, float | None] = field(default_factory=dict)
    intervals: dict[str, Interval | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Flat, as ``--json`` has always printed it: each rate and ``<rate>_interval`` beside the rest."""
        out = {k: v for k, v in asdict(self).items() if k not in ("rates", "intervals")}
        for name, value in self.rates.items():
            out[name] = value
            out[f"{name}_interval"] = self.intervals[name]
        return out


@dataclass(frozen=True)
class DetectionSummary:
    """A fake detector deployed at a false-alarm rate (``[detection]``, :mod:`advsec.detection`) against one
    attack: a grid cell at its budget, or an unrestricted attack (natural-gan's latent search). Counted from
    the rows: ``caught`` fakes were flagged before attack, ``still_caught`` of those after it; the intervals
    are Clopper–Pearson 95 %."""

    defense: str
    attack: str  # a budget key (``linf:0.03``) or the unrestricted attack's label
    false_alarm: float
    threshold: float
    reals: int
    false_alarms: int  # of the evaluated real images, flagged before attack
    fakes: int
    caught: int
    still_caught: int
    detection_rate: float  # caught / fakes: the detection rate at the false-alarm rate
    detection_interval: Interval
    rate_after_attack: float  # still_caught / caught: measured on the fakes caught before
    interval_after_attack: Interval

    @property
    def passing_before(self) -> int:
        return self.fakes - self.caught

    @property
    def passing_after(self) -> int:
        return self.fakes - self.still_caught


@dataclass(frozen=True)
class RunResults:
    """Everything a finished run's report, ``show`` and ``--json`` say, read once from its store."""

    meta: dict[str, Any]
    cells: list[CellSummary]
    defenses: list[DefenseSummary]
    certified: list[CertifiedSummary]
    replays: list[ReplaySummary]
    unrestricted: list[UnrestrictedSummary]
    detection: list[DetectionSummary] = field(default_factory=list)
    models: list[ModelSummary] = field(default_factory=list)

    @classmethod
    def read(cls, store: Store) -> RunResults:
        cells = cell_summaries(store)
        certified, replays = certified_summaries(store), replay_summaries(store)
        unrestricted = unrestricted_summaries(store)
        reported = [r.defense for r in [*cells, *certified, *replays, *unrestricted]]
        return cls(
            meta=store.meta(),
            cells=cells,
            defenses=defense_summaries(store, cells),
            certified=certified,
            replays=replays,
            unrestricted=unrestricted,
            detection=detection_summaries(store, cells),
            models=model_summaries(store, reported),
        )

    @property
    def warnings(self) -> list[str]:
        """Every warning recorded about the run: its data's, then each model's, named by its row."""
        models = [f"{m.defense}: {warning}" for m in self.models for warning in m.warnings]
        return [*self.meta.get("warnings", []), *models]

    def to_json(self) -> dict[str, Any]:
        """The results as ``--json`` prints them."""
        return {
            "format": JSON_FORMAT,
            "estimated_cost": self.meta.get("estimated_cost"),
            "plugins": self.meta.get("plugins"),
            "defenses": [asdict(d) for d in self.defenses],
            "cells": [asdict(c) for c in self.cells],
            "certified": [asdict(c) for c in self.certified],
            "replay": [asdict(r) for r in self.replays],
            "unrestricted": [u.to_json() for u in self.unrestricted],
            "detection": [asdict(d) for d in self.detection],
            "models": [asdict(m) for m in self.models],
            # What the run says about its data: how the classes were numbered, which samples were scored.
            "data": {key: self.meta.get(key) for key in ("classes", "class_order", "evaluated", "warnings")},
        }


def cell_summaries(store: Store) -> list[CellSummary]:
    """One summary per finished cell of the current plan, in plan order."""
    return [_summarize(store, cell) for cell in store.cells()]


def _summarize(store: Store, cell: dict[str, Any]) -> CellSummary:
    samples = store.samples(cell["cell"])
    label = {s["idx"]: s["label"] for s in samples}
    clean_correct = {s["idx"] for s in samples if s["clean_pred"] == s["label"]}
    n = len(samples)
    broken_by_position: dict[int, set[int]] = {}
    aimed: dict[int, list[bool]] = {}  # per targeted attack, whether each sample went where it was aimed
    for attempt in store.attempts(cell["cell"]):
        if attempt["pred"] != label[attempt["idx"]]:
            broken_by_position.setdefault(attempt["position"], set()).add(attempt["idx"])
        if attempt["target"] is not None:
            aimed.setdefault(attempt["position"], []).append(attempt["pred"] == attempt["target"])
    attacks = []
    broken_so_far: set[int] = set()
    for position, record in enumerate(store.cell_attacks(cell["cell"])):
        broken = broken_by_position.get(position, set())
        hits = aimed.get(position)
        broken_so_far |= broken
        attacks.append(
            AttackSummary(
                attack=record["attack"],
                adaptive=bool(record["adaptive"]),
                robust_after=len(clean_correct - broken_so_far) / n,
                robust_alone=None if cell["cascade"] and position > 0 else len(clean_correct - broken) / n,
                attacked=record["attacked"],
                broken=len(broken & clean_correct),
                forwards=record["forwards"],
                backwards=record["backwards"],
                wall_seconds=record["wall_seconds"],
                targeted_success=sum(hits) / len(hits) if hits else None,
                targeted_interval=wilson_interval(sum(hits), len(hits)) if hits else None,
                fit_seconds=record["fit_seconds"],
                fit_cached=bool(record["fit_cached"]),
                escalation=record["escalation"],
            )
        )
    robust = sum(s["robust"] for s in samples)
    own = [a for a in attacks if a.escalation is None]
    # The spec's attacks on the model as deployed, up to the first adaptive one (a gradient-free search that
    # follows BPDA also queries the deployed model, but no naive evaluation would have run it)
    naive = [a.robust_after for a in itertools.takewhile(lambda a: not a.adaptive, own)]
    return CellSummary(
        cell=cell["cell"],
        defense=cell["defense"],
        norm=cell["norm"],
        eps=cell["eps"],
        n=n,
        clean_accuracy=len(clean_correct) / n,
        robust_accuracy=robust / n,
        robust_interval=wilson_interval(robust, n),
        clean_accuracy_single=sum(s["clean_single"] for s in samples) / n,
        robust_accuracy_single=sum(s["robust_single"] for s in samples) / n,
        naive_robust_accuracy=naive[-1] if naive and len(naive) < len(own) else None,
        unescalated_robust_accuracy=(own[-1].robust_after if own else len(clean_correct) / n)
        if len(own) < len(attacks)
        else None,
        attacks=attacks,
        checks=[
            SanityCheck(c["name"], c["value"], bool(c["flagged"]), c["detail"])
            for c in store.sanity(cell["cell"])
        ],
        privacy=[MembershipInference(**row) for row in store.privacy(cell["cell"])],
        wall_seconds=cell["wall_seconds"],
        forwards=cell["forwards"],
        backwards=cell["backwards"],
    )


def defense_summaries(store: Store, cells: list[CellSummary] | None = None) -> list[DefenseSummary]:
    """Per defense: clean accuracy (from its clean cell), robust accuracy per budget, and costs.

    ``cells`` are the run's :func:`cell_summaries`, when the caller has them already.
    """
    cells = cell_summaries(store) if cells is None else cells
    models = {m["defense"]: m for m in store.models()}
    out = []
    for defense in dict.fromkeys(c.defense for c in cells):
        own = [c for c in cells if c.defense == defense]
        clean = next((c for c in own if c.norm == "none"), own[0])
        attacked = [c for c in own if c.norm != "none"]
        model = models.get(defense, {})
        out.append(
            DefenseSummary(
                defense=defense,
                family=model.get("family") or defense,
                name=model.get("name"),
                params=model.get("params", {}),
                clean_accuracy=clean.clean_accuracy,
                robust={budget_key(c.norm, c.eps): c.robust_accuracy for c in attacked},
                robust_interval={budget_key(c.norm, c.eps): c.robust_interval for c in attacked},
                robust_single={budget_key(c.norm, c.eps): c.robust_accuracy_single for c in attacked},
                clean_interval=clean.robust_interval,
                clean_accuracy_single=clean.clean_accuracy_single,
                naive_robust={
                    budget_key(c.norm, c.eps): c.naive_robust_accuracy
                    for c in attacked
                    if c.naive_robust_accuracy is not None
                },
                guard=_guard(model.get("history", [])),
                train_seconds=model.get("train_seconds"),
                attack_seconds=sum(c.wall_seconds for c in attacked),
                forwards=sum(c.forwards for c in attacked),
                backwards=sum(c.backwards for c in attacked),
                stochastic=bool(model.get("stochastic")),
                privacy={m.signal: m for m in clean.privacy},
                flags=[check.name for c in own for check in c.checks if check.flagged],
                privacy_budget=_privacy_budget(model.get("history", [])),
            )
        )
    return out


def model_summaries(store: Store, defenses: list[str]) -> list[ModelSummary]:
    """What each of ``defenses`` deploys, in their order, each once (none for a defense with no model)."""
    models = {m["defense"]: m for m in store.models()}
    return [
        ModelSummary(defense, models[defense]["description"], models[defense]["warnings"])
        for defense in dict.fromkeys(defenses)
        if defense in models
    ]


def _privacy_budget(history: list[dict[str, float]]) -> tuple[float, float] | None:
    """The (ε, δ) spent by the end of a differentially private training (``dp-sgd``'s epoch records)."""
    spent = [h for h in history if "epsilon" in h]
    return (spent[-1]["epsilon"], spent[-1]["delta"]) if spent else None


def certified_summaries(store: Store) -> list[CertifiedSummary]:
    """Per certified defense: its settings, abstentions and certified accuracy at each reported radius.

    Certified accuracy at radius r is the fraction of samples the smoothed classifier gets right with a
    certified radius of at least r (Cohen et al.): abstentions and wrong answers count against it.
    """
    out = []
    for row in store.certifications():
        certificates = store.certificates(row["defense"])
        n = len(certificates)
        radii = certified_radii(certificates)
        steps = max(round(1 / RADIUS_STEP), math.ceil(max(radii, default=0.0) / RADIUS_STEP))
        grid = [RADIUS_STEP * k for k in range(steps + 1)]
        out.append(
            CertifiedSummary(
                defense=row["defense"],
                **{key: row[key] for key in ("sigma", "n0", "n", "alpha", "samples", "batch_size", "seed")},
                abstained=sum(c["prediction"] == -1 for c in certificates) / n,  # -1: abstained
                certified={f"{r:g}": sum(radius >= r for radius in radii) / n for r in grid},
                wall_seconds=row["wall_seconds"],
                forwards=row["forwards"],
            )
        )
    return out


def replay_summaries(store: Store) -> list[ReplaySummary]:
    """Per defense and attacker of the sitting-duck protocol: replay success at each delay (advsec.replay).

    Success at a delay pools every repeat's replayed samples: the share the model got wrong, beside its
    error on the clean inputs at the same moment. Its Wilson 95 % interval counts the samples, not samples ×
    repeats: repeats replay the same examples, so they average out the model's draws without adding
    independent evidence.
    """
    out = []
    for row in store.replays():
        delays: dict[int, dict[str, int]] = {}
        for trial in row["trials"]:
            pooled = delays.setdefault(trial["delay"], {"fooled": 0, "clean_wrong": 0, "trials": 0})
            pooled["fooled"] += trial["fooled"]
            pooled["clean_wrong"] += trial["clean_wrong"]
            pooled["trials"] += row["samples"]
        samples = row["samples"]
        out.append(
            ReplaySummary(
                defense=row["defense"],
                attack=row["attack"],
                mode=row["mode"],
                samples=samples,
                repeats=len(row["trials"]) // max(len(delays), 1),
                crafted=None if row["crafted_fooled"] is None else row["crafted_fooled"] / samples,
                queries_per_sample=row["queries"] / samples,
                wall_seconds=row["wall_seconds"],
                replay={
                    delay: ReplayAtDelay(
                        success=pooled["fooled"] / pooled["trials"],
                        interval=wilson_interval(samples * pooled["fooled"] / pooled["trials"], samples),
                        clean_error=pooled["clean_wrong"] / pooled["trials"],
                    )
                    for delay, pooled in delays.items()
                },
            )
        )
    return out


# The rates an unrestricted run is scored by, per source of its inputs, with their column titles.
UNRESTRICTED_RATES = {
    "carrier": {"heard": "model hears", "listener_heard": "listener hears", "hidden": "hidden"},
    "test": {"fooled": "model fooled", "listener_kept": "listener keeps class", "natural": "natural"},
}


def distance_text(value: float | None, norm: str) -> str:
    """A made input's distance from its source, in the unit of ``norm``."""
    if value is None:
        return "–"
    return f"{value:.1f} dB" if norm in ("db", "snr") else f"{value:.2f} ({norm})"


def unrestricted_summaries(store: Store) -> list[UnrestrictedSummary]:
    """Per defense and unrestricted attack (advsec.unrestricted), with intervals: for inputs made from
    carriers, how often the model hears the target, how often the listener does, and how often only the
    model does (hidden); for inputs made from test inputs, how often the model is fooled, how often the
    listener still sees the test input's class, and how often both (natural adversarial examples).

    Left out of every rate: carriers the model already heard as the target, and test inputs it already got
    wrong (nothing was made in them)."""
    classes = len(store.meta().get("classes", [])) or None
    out = []
    for run in store.unrestricted_runs():
        rows = store.unrestricted(run["defense"], run["attack"])
        if run["source"] == "test":
            made = [r for r in rows if r["carrier_pred"] == r["label"]]
            hits = [(r["pred"] != r["label"], r["listener_pred"] == r["label"]) for r in made]
        else:
            made = [r for r in rows if r["carrier_pred"] != r["target"]]
            hits = [(r["pred"] == r["target"], r["listener_pred"] == r["target"]) for r in made]
        model, listener, both = UNRESTRICTED_RATES[run["source"]]
        outcomes = {
            model: [m for m, _ in hits],
            listener: [h for _, h in hits],
            both: [m and h for m, h in hits] if run["source"] == "test" else [m and not h for m, h in hits],
        }
        distances = sorted(r["distance"] for r in made)
        out.append(
            UnrestrictedSummary(
                defense=run["defense"],
                attack=run["attack"],
                source=run["source"],
                listener=run["listener"],
                samples=len(rows),
                aimed=len(made),
                chance=1 / classes if classes else None,
                norm=run["norm"],
                median_distance=distances[len(distances) // 2] if distances else None,
                fit_seconds=run["fit_seconds"],
                wall_seconds=run["wall_seconds"],
                rates={name: sum(h) / len(h) if h else None for name, h in outcomes.items()},
                intervals={
                    name: wilson_interval(sum(h), len(h)) if h else None for name, h in outcomes.items()
                },
            )
        )
    return out


def detection_summaries(store: Store, cells: list[CellSummary]) -> list[DetectionSummary]:
    """Per thresholded detector (a model stored with a threshold), its detection rate and the fakes still
    caught per attacked cell and per unrestricted attack made from test inputs."""
    detectors = {m["defense"]: m for m in store.models() if m.get("threshold") is not None}
    if not detectors:
        return []
    classes = store.meta().get("classes", [])
    real, fake = classes.index("real"), classes.index("fake")
    runs: list[tuple[str, str, list[tuple[int, bool, bool]]]] = []  # (label, flagged before, after) rows
    for c in cells:
        if c.defense in detectors and c.norm != "none":
            rows = [(s["label"], s["clean_pred"] == fake, s["clean_pred"] == fake and bool(s["robust"]))
                    for s in store.samples(c.cell)]  # fmt: skip
            runs.append((c.defense, budget_key(c.norm, c.eps), rows))
    for run in store.unrestricted_runs():
        if run["defense"] in detectors and run["source"] == "test":
            rows = [(r["label"], r["carrier_pred"] == fake, r["carrier_pred"] == fake and r["pred"] == fake)
                    for r in store.unrestricted(run["defense"], run["attack"])]  # fmt: skip
            runs.append((run["defense"], run["attack"], rows))
    out = []
    for defense, attack, rows in runs:
        fakes = [(before, after) for label, before, after in rows if label == fake]
        reals = [before for label, before, _ in rows if label == real]
        caught, still = sum(b for b, _ in fakes), sum(a for _, a in fakes)
        model = detectors[defense]
        out.append(
            DetectionSummary(
                defense=defense,
                attack=attack,
                false_alarm=model["false_alarm"],
                threshold=model["threshold"],
                reals=len(reals),
                false_alarms=sum(reals),
                fakes=len(fakes),
                caught=caught,
                still_caught=still,
                detection_rate=caught / max(len(fakes), 1),
                detection_interval=clopper_pearson(caught, len(fakes)),
                rate_after_attack=still / max(caught, 1),
                interval_after_attack=clopper_pearson(still, caught),
            )
        )
    return out


DETECTION_HEADER = ("defense", "attack", "false alarms", "threshold", "detection rate",
                    "fakes passing before → after", "caught still caught")  # fmt: skip


def detection_row(d: DetectionSummary) -> list[str]:
    """A detector's row as the scorecard and the report print it (:data:`DETECTION_HEADER`)."""

    def rate(value: float, interval: Interval) -> str:
        return f"{100 * value:.1f} % [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"

    return [
        d.defense,
        d.attack.replace(":", " ε=") if ":" in d.attack else d.attack,
        f"{d.false_alarms}/{d.reals} at {100 * d.false_alarm:g} %",
        f"{d.threshold:.4g}",
        rate(d.detection_rate, d.detection_interval),
        f"{d.passing_before}/{d.fakes} → {d.passing_after}/{d.fakes}",
        f"{d.still_caught}/{d.caught}: {rate(d.rate_after_attack, d.interval_after_attack)}",
    ]


def transfer_summaries(store: Store, defenses: list[str]) -> dict[str, list[list[float]]]:
    """Per ensemble defense, the share of examples crafted on member i (row) that fool member j (column)."""
    out = {}
    for defense in defenses:
        rows = store.transfers(defense)
        size = 1 + max((r["source"] for r in rows), default=-1)
        matrix = [[0.0] * size for _ in range(size)]
        for r in rows:
            matrix[r["source"]][r["target"]] = r["fooled"] / r["samples"]
        if size:
            out[defense] = matrix
    return out


def budget_key(norm: str, eps: float) -> str:
    """A defense summary's key for a budget, e.g. ``linf:0.3``."""
    return f"{norm}:{eps:g}"


def _guard(history: list[dict[str, float]]) -> list[GuardEvent]:
    """Each time the overfitting guard fired: the collapsed epoch, the epoch restored (0: none, training
    started over from fresh weights), their checks, and whether the defense saw overfitting's sign or the
    model had collapsed to one answer for all."""
    checks = {h["epoch"]: h.get("check") for h in history}
    return [
        GuardEvent(
            epoch=h["epoch"],
            check=h["check"],
            restored=h["restored"],
            best=checks.get(h["restored"]),
            overfit=bool(h.get("overfit")),
            constant=bool(h.get("constant")),
        )
        for h in history
        if "restored" in h
    ]


def certified_radii(certificates: list[dict[str, Any]]) -> list[float]:
    """The certified radii of the samples the smoothed classifier gets right (abstentions never are)."""
    return [c["radius"] for c in certificates if c["prediction"] == c["label"]]


MEMBERSHIP_FPRS = (0.001, 0.01)  # the false-positive rates a membership inference's TPR is read at


def membership_resolved(inference: MembershipInference, fpr: float) -> bool:
    """Whether ``inference`` scored enough non-members for a TPR at ``fpr`` to let any of them through:
    with fewer than 1 / ``fpr``, its threshold lies above every non-member (FPR 0)."""
    return inference.nonmembers * fpr >= 1 - 1e-9


def membership_text(inference: MembershipInference) -> str:
    """TPR at 0.1 % and 1 % FPR, then the ROC AUC: ``0.0* / 3.3 % · AUC 0.61``; a star marks a TPR read at
    FPR 0, too few non-members having been scored to resolve its rate."""
    tprs = [(inference.tpr_001, MEMBERSHIP_FPRS[0]), (inference.tpr_01, MEMBERSHIP_FPRS[1])]
    shown = [f"{100 * tpr:.1f}" + ("" if membership_resolved(inference, fpr) else "*") for tpr, fpr in tprs]
    return f"{' / '.join(shown)} % · AUC {inference.auc:.2f}"


def membership_note(inferences: list[MembershipInference]) -> str:
    """How many members and non-members the inferences scored, and which FPRs those resolve."""
    if not inferences:
        return ""
    counts = sorted({(m.members, m.nonmembers) for m in inferences})
    scored = "; ".join(f"{m:,} members and {n:,} non-members" for m, n in counts)
    fewest = min(n for _, n in counts)
    short = [fpr for fpr in MEMBERSHIP_FPRS if fewest * fpr < 1 - 1e-9]
    note = f"Membership inference scored {scored}"
    if short:
        note += (
            f"; FPR {100 * short[-1]:g} % needs ≥ {round(1 / short[-1]):,} non-members: with {fewest:,} the "
            f"lowest FPR is {100 / max(fewest, 1):.2g} %, so a TPR marked * is read at FPR 0"
        )
    return note


def clopper_pearson(successes: int, n: int, level: float = 0.95) -> Interval:
    """The exact (Clopper–Pearson) two-sided interval of a binomial rate."""
    # Only where an exact interval is asked for: reading a store stays light. The beta quantile is the
    # inverse of the regularized incomplete beta function, without scipy.stats' far heavier import.
    from scipy.special import betaincinv

    if n == 0:
        return 0.0, 1.0
    tail = (1 - level) / 2
    low = 0.0 if successes == 0 else float(betaincinv(successes, n - successes + 1, tail))
    high = 1.0 if successes == n else float(betaincinv(successes + 1, n - successes, 1 - tail))
    return low, high


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's 95 % score interval for a proportion: sound near 0 and 1, where robust accuracies live."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
