"""Comparing two runs: deltas per defense × budget and per attack, and the samples whose verdict flipped.

Two runs are comparable when they scored the same data: the same dataset, the same budgets, and in every
cell they share the same test samples with the same labels. Anything else is refused with the reason,
since a delta between different samples measures the samples, not the change.
"""

from __future__ import annotations

from typing import Any

from advsec.errors import AdvsecError
from advsec.results import CellSummary, cell_summaries
from advsec.store import Store


def compare_runs(a: Store, b: Store) -> dict[str, Any]:
    """Per defense and budget both runs scored: accuracy in each, the change, and per-sample flips.

    ``lost`` counts samples correct (robust) in A and not in B, ``gained`` the reverse; per attack, how many
    samples it broke in each run. Defenses only one run has are listed, not compared.
    """
    meta_a, meta_b = a.meta(), b.meta()
    if meta_a.get("dataset") != meta_b.get("dataset"):
        raise AdvsecError(
            f"the runs used different datasets: {meta_a.get('dataset')} vs {meta_b.get('dataset')}"
        )
    cells_a, cells_b = _by_key(a), _by_key(b)
    budgets_a, budgets_b = _budgets(cells_a), _budgets(cells_b)
    if budgets_a != budgets_b:
        raise AdvsecError(
            f"the runs used different budgets: {_describe(budgets_a - budgets_b)} only in A, "
            f"{_describe(budgets_b - budgets_a)} only in B"
        )
    defenses_a = list(dict.fromkeys(d for d, _, _ in cells_a))
    defenses_b = list(dict.fromkeys(d for d, _, _ in cells_b))
    rows = []
    for key in (k for k in cells_a if k in cells_b):
        rows.append(_compare_cell(a, b, cells_a[key], cells_b[key]))
    return {
        "a": {"name": meta_a.get("name"), "path": str(a.path)},
        "b": {"name": meta_b.get("name"), "path": str(b.path)},
        "dataset": meta_a.get("dataset"),
        "only_in_a": [d for d in defenses_a if d not in defenses_b],
        "only_in_b": [d for d in defenses_b if d not in defenses_a],
        "cells": rows,
    }


def _compare_cell(a: Store, b: Store, cell_a: CellSummary, cell_b: CellSummary) -> dict[str, Any]:
    samples_a, samples_b = a.samples(cell_a.cell), b.samples(cell_b.cell)
    where = f"{cell_a.defense} {cell_a.norm} {cell_a.eps:g}"
    if [s["label"] for s in samples_a] != [s["label"] for s in samples_b]:
        raise AdvsecError(
            f"the runs scored different samples in {where}: {len(samples_a)} vs {len(samples_b)} samples, "
            "or other labels; compare runs over the same test samples"
        )
    score = "robust" if cell_a.norm != "none" else "clean"

    def correct(sample: dict[str, Any]) -> bool:
        return bool(sample["robust"]) if score == "robust" else sample["clean_pred"] == sample["label"]

    verdicts = [(correct(x), correct(y)) for x, y in zip(samples_a, samples_b, strict=True)]
    n = len(verdicts)
    accuracy_a = sum(x for x, _ in verdicts) / n
    accuracy_b = sum(y for _, y in verdicts) / n
    broken_a = {s.attack: s.broken for s in cell_a.attacks}
    broken_b = {s.attack: s.broken for s in cell_b.attacks}
    return {
        "defense": cell_a.defense,
        "norm": cell_a.norm,
        "eps": cell_a.eps,
        "n": n,
        "scored": score,
        "a": accuracy_a,
        "b": accuracy_b,
        "delta": accuracy_b - accuracy_a,
        "lost": sum(x and not y for x, y in verdicts),
        "gained": sum(y and not x for x, y in verdicts),
        "attacks": [
            {"attack": attack, "broken_a": broken_a.get(attack), "broken_b": broken_b.get(attack)}
            for attack in dict.fromkeys([*broken_a, *broken_b])
        ],
    }


def _by_key(store: Store) -> dict[tuple[str, str, float], CellSummary]:
    return {(c.defense, c.norm, c.eps): c for c in cell_summaries(store)}


def _budgets(cells: dict[tuple[str, str, float], CellSummary]) -> set[tuple[str, float]]:
    return {(norm, eps) for _, norm, eps in cells if norm != "none"}


def _describe(budgets: set[tuple[str, float]]) -> str:
    return ", ".join(f"{norm} {eps:g}" for norm, eps in sorted(budgets)) or "none"


def to_markdown(comparison: dict[str, Any]) -> str:
    """The comparison as a Markdown table (written beside ``compare.json``)."""
    lines = [
        f"# {comparison['a']['name']} (A) vs {comparison['b']['name']} (B)",
        "",
        "| Defense | Budget | A | B | Δ (pp) | Lost | Gained | n |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in comparison["cells"]:
        budget = "clean" if row["norm"] == "none" else f"{row['norm']} {row['eps']:g}"
        lines.append(
            f"| {row['defense']} | {budget} | {100 * row['a']:.1f}% | {100 * row['b']:.1f}% | "
            f"{100 * row['delta']:+.1f} | {row['lost']} | {row['gained']} | {row['n']} |"
        )
    lines += [
        "",
        "Samples each attack broke:",
        "",
        "| Defense | Budget | Attack | A | B | Δ |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in comparison["cells"]:
        for attack in row["attacks"]:
            a, b = attack["broken_a"], attack["broken_b"]
            delta = f"{b - a:+d}" if a is not None and b is not None else "—"
            lines.append(f"| {row['defense']} | {row['norm']} {row['eps']:g} | {attack['attack']} | "
                         f"{'—' if a is None else a} | {'—' if b is None else b} | {delta} |")  # fmt: skip
    for side in ("a", "b"):
        if comparison[f"only_in_{side}"]:
            lines += ["", f"Only in {side.upper()}: {', '.join(comparison[f'only_in_{side}'])}"]
    return "\n".join(lines) + "\n"
