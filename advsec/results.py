"""Aggregates recomputed from the store's per-sample rows: what reports, ``show`` and ``--json`` print.

Nothing here is stored pre-aggregated; every figure is counted from samples and attempts, so a number
in a report can always be traced to the rows behind it.
"""

from __future__ import annotations

import math
from typing import Any

from advsec.store import Store

RADIUS_STEP = 0.25  # certified accuracy is reported at ℓ2 radii 0, 0.25, 0.5, …, at least up to 1
CERTIFIED_RADIUS = "0.5"  # the scorecard's certified column: Cohen et al.'s usual reference radius


def cell_summaries(store: Store) -> list[dict[str, Any]]:
    """One JSON-ready dict per finished cell of the current plan, in plan order."""
    return [_summarize(store, cell) for cell in store.cells()]


def _summarize(store: Store, cell: dict[str, Any]) -> dict[str, Any]:
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
        alone = None if cell["cascade"] and position > 0 else len(clean_correct - broken) / n
        attacks.append(
            {
                "attack": record["attack"],
                "adaptive": bool(record["adaptive"]),
                "robust_after": len(clean_correct - broken_so_far) / n,  # worst case over attacks so far
                "robust_alone": alone,  # this attack by itself (unknown for later stages of a cascade)
                "attacked": record["attacked"],
                "broken": len(broken & clean_correct),
                "forwards": record["forwards"],
                "backwards": record["backwards"],
                "wall_seconds": record["wall_seconds"],
                # Of the samples aimed at a class, the fraction the model now puts in it (None: untargeted).
                "targeted_success": sum(hits) / len(hits) if hits else None,
                "targeted_interval": wilson_interval(sum(hits), len(hits)) if hits else None,
                "fit_seconds": record["fit_seconds"],  # a generator's one-off training (None for others)
                "fit_cached": bool(record["fit_cached"]),
            }
        )
    robust = sum(s["robust"] for s in samples)
    robust_single = sum(s["robust_single"] for s in samples)
    naive = [a["robust_after"] for a in attacks if not a["adaptive"]]
    return {
        "cell": cell["cell"],
        "defense": cell["defense"],
        "norm": cell["norm"],
        "eps": cell["eps"],
        "n": n,
        "clean_accuracy": len(clean_correct) / n,
        "robust_accuracy": robust / n,
        "robust_interval": wilson_interval(robust, n),
        # Each sample scored on one draw of a random defense instead of all (equal when deterministic).
        "clean_accuracy_single": sum(s["clean_single"] for s in samples) / n,
        "robust_accuracy_single": robust_single / n,
        # Before any adaptive attack ran: what evaluating the defense as deployed would have claimed.
        "naive_robust_accuracy": naive[-1] if naive and len(naive) < len(attacks) else None,
        "attacks": attacks,
        "checks": [
            {"name": c["name"], "value": c["value"], "flagged": bool(c["flagged"]), "detail": c["detail"]}
            for c in store.sanity(cell["cell"])
        ],
        "privacy": store.privacy(cell["cell"]),  # membership inference, in the clean cell
        "wall_seconds": cell["wall_seconds"],
        "forwards": cell["forwards"],
        "backwards": cell["backwards"],
    }


def defense_summaries(store: Store, cells: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per defense: clean accuracy (from its clean cell), robust accuracy per budget, and costs.

    ``cells`` are the run's :func:`cell_summaries`, when the caller has them already.
    """
    cells = cell_summaries(store) if cells is None else cells
    models = {m["defense"]: m for m in store.models()}
    out = []
    for defense in dict.fromkeys(c["defense"] for c in cells):
        own = [c for c in cells if c["defense"] == defense]
        clean = next((c for c in own if c["norm"] == "none"), own[0])
        attacked = [c for c in own if c["norm"] != "none"]
        model = models.get(defense, {})
        out.append(
            {
                "defense": defense,
                "family": model.get("family") or defense,
                "name": model.get("name"),
                "params": model.get("params", {}),
                "clean_accuracy": clean["clean_accuracy"],
                "robust": {_budget(c): c["robust_accuracy"] for c in attacked},
                "robust_interval": {_budget(c): c["robust_interval"] for c in attacked},
                "robust_single": {_budget(c): c["robust_accuracy_single"] for c in attacked},
                "clean_interval": clean["robust_interval"],
                "clean_accuracy_single": clean["clean_accuracy_single"],
                "naive_robust": {
                    _budget(c): c["naive_robust_accuracy"]
                    for c in attacked
                    if c["naive_robust_accuracy"] is not None
                },
                "guard": _guard(model.get("history", [])),
                "train_seconds": model.get("train_seconds"),
                "attack_seconds": sum(c["wall_seconds"] for c in attacked),
                "forwards": sum(c["forwards"] for c in attacked),
                "backwards": sum(c["backwards"] for c in attacked),
                "stochastic": bool(model.get("stochastic")),
                # Membership inference by signal: how far training samples can be told from others.
                "privacy": {m["signal"]: m for m in clean["privacy"]},
                "flags": [check["name"] for c in own for check in c["checks"] if check["flagged"]],
            }
        )
    return out


def certified_summaries(store: Store) -> list[dict[str, Any]]:
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
            {
                "defense": row["defense"],
                **{key: row[key] for key in ("sigma", "n0", "n", "alpha", "samples", "batch_size", "seed")},
                "abstained": sum(c["prediction"] == -1 for c in certificates) / n,  # -1: abstained
                "certified": {f"{r:g}": sum(radius >= r for radius in radii) / n for r in grid},
                "wall_seconds": row["wall_seconds"],
                "forwards": row["forwards"],
            }
        )
    return out


def replay_summaries(store: Store) -> list[dict[str, Any]]:
    """Per defense and attacker of the sitting-duck protocol: replay success at each delay (advsec.replay).

    Success at a delay pools every repeat's replayed samples: the share the model got wrong, beside its
    error on the clean inputs at the same moment. Its Wilson 95 % interval counts the samples, not samples ×
    repeats: repeats replay the same examples, so they average out the model's draws without adding
    independent evidence.
    ``crafted`` is the success against the snapshot the examples were crafted on (snapshot mode only).
    """
    out = []
    for row in store.replays():
        delays: dict[int, dict[str, Any]] = {}
        for trial in row["trials"]:
            pooled = delays.setdefault(trial["delay"], {"fooled": 0, "clean_wrong": 0, "trials": 0})
            pooled["fooled"] += trial["fooled"]
            pooled["clean_wrong"] += trial["clean_wrong"]
            pooled["trials"] += row["samples"]
        samples = row["samples"]
        out.append(
            {
                "defense": row["defense"],
                "attack": row["attack"],
                "mode": row["mode"],
                "samples": samples,
                "repeats": len(row["trials"]) // max(len(delays), 1),
                "crafted": None if row["crafted_fooled"] is None else row["crafted_fooled"] / samples,
                "queries_per_sample": row["queries"] / samples,
                "wall_seconds": row["wall_seconds"],
                "replay": {
                    delay: {
                        "success": pooled["fooled"] / pooled["trials"],
                        "interval": wilson_interval(samples * pooled["fooled"] / pooled["trials"], samples),
                        "clean_error": pooled["clean_wrong"] / pooled["trials"],
                    }
                    for delay, pooled in delays.items()
                },
            }
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


def unrestricted_summaries(store: Store) -> list[dict[str, Any]]:
    """Per defense and unrestricted attack (advsec.unrestricted), with intervals: for inputs made from
    carriers, how often the model hears the target, how often the listener does, and how often only the
    model does (hidden); for inputs made from test inputs, how often the model is fooled, how often the
    listener still sees the test input's class, and how often both (natural adversarial examples).

    Left out of every rate: carriers the model already heard as the target, and test inputs it already got
    wrong (nothing was made in them). ``chance`` is the listener's rate were it guessing."""
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
        rates = {
            model: [m for m, _ in hits],
            listener: [h for _, h in hits],
            both: [m and h for m, h in hits] if run["source"] == "test" else [m and not h for m, h in hits],
        }
        distances = sorted(r["distance"] for r in made)
        summary = {
            "defense": run["defense"],
            "attack": run["attack"],
            "source": run["source"],
            "listener": run["listener"],
            "samples": len(rows),
            "aimed": len(made),  # made inputs whose source the model did not already answer as wanted
            "chance": 1 / classes if classes else None,
            "norm": run["norm"],
            "median_distance": distances[len(distances) // 2] if distances else None,
            "fit_seconds": run["fit_seconds"],
            "wall_seconds": run["wall_seconds"],
        }
        for name, hits in rates.items():
            k, n = sum(hits), len(hits)
            summary[name] = k / n if n else None
            summary[f"{name}_interval"] = wilson_interval(k, n) if n else None
        out.append(summary)
    return out


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


def _budget(cell: dict[str, Any]) -> str:
    """A defense summary's key for a cell's budget, e.g. ``linf:0.3``."""
    return f"{cell['norm']}:{cell['eps']:g}"


def _guard(history: list[dict[str, float]]) -> list[dict[str, Any]]:
    """Each time the overfitting guard fired: the collapsed epoch, the epoch restored (0: none, training
    started over from fresh weights), their checks, and whether the defense saw overfitting's sign or the
    model had collapsed to one answer for all."""
    checks = {h["epoch"]: h.get("check") for h in history}
    return [
        {
            "epoch": h["epoch"],
            "check": h["check"],
            "restored": h["restored"],
            "best": checks.get(h["restored"]),
            "overfit": bool(h.get("overfit")),
            "constant": bool(h.get("constant")),
        }
        for h in history
        if "restored" in h
    ]


def certified_radii(certificates: list[dict[str, Any]]) -> list[float]:
    """The certified radii of the samples the smoothed classifier gets right (abstentions never are)."""
    return [c["radius"] for c in certificates if c["prediction"] == c["label"]]


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's 95 % score interval for a proportion: sound near 0 and 1, where robust accuracies live."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
