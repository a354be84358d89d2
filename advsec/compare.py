"""Comparing two runs: deltas per model × budget and per attack, and the samples whose verdict flipped.

Two runs are comparable when they scored the same test samples (the same content in the same order,
whatever loaded them: tensors in a notebook, an ``.npz``, an image folder, a named dataset) at the same
budgets, and in every cell they pair the samples carry the same labels. Anything else is refused with the
reason (:class:`~advsec.errors.NotComparable`), since a delta between different samples measures the
samples, not the change.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from advsec.errors import NotComparable
from advsec.results import CellSummary, cell_summaries
from advsec.store import Store

# A budget whose shortest decimal has at most this many significant digits was written as a decimal
# (0.031); one with more is a fraction or a computed value (8/255 = 0.0313725…), which nobody types out.
WRITTEN_DIGITS = 6

Budget = tuple[str, float]  # (norm, eps)


def compare_runs(a: Store, b: Store) -> dict[str, Any]:
    """Per model and budget both runs scored: accuracy in each, the change, and per-sample flips.

    Cells pair by model label (or the one model each run evaluated, whatever their labels), norm and
    budget (:func:`same_budget`). Each row holds A's ``defense`` and ``eps``, B's ``defense_b`` and ``eps_b``,
    and ``label_a`` / ``label_b`` naming each side by run, model and budget. ``lost`` counts samples correct
    (robust) in A and not in B, ``gained`` the reverse; per attack, how many samples it broke in each run.
    Models only one run has are listed, not compared.
    """
    meta_a, meta_b = a.meta(), b.meta()
    summaries_a, summaries_b = cell_summaries(a), cell_summaries(b)
    _check_same_samples(meta_a, meta_b, summaries_a, summaries_b)
    cells_a, cells_b = _by_key(summaries_a), _by_key(summaries_b)
    budgets = pair_budgets(_budgets(cells_a), _budgets(cells_b))
    models_a = list(dict.fromkeys(d for d, _, _ in cells_a))
    models_b = list(dict.fromkeys(d for d, _, _ in cells_b))
    models = {m: m for m in models_a if m in models_b}
    if len(models_a) == len(models_b) == 1 and not models:  # one model against another: what compare is for
        models = {models_a[0]: models_b[0]}
    run_a, run_b = _run_labels(a, b, meta_a, meta_b)
    rows = []
    for (model, norm, eps), cell_a in cells_a.items():
        eps_b = eps if norm == "none" else budgets[norm, eps][1]
        cell_b = cells_b.get((models[model], norm, eps_b)) if model in models else None
        if cell_b is not None:  # else a model only A has, or a cell B has not finished
            rows.append(_compare_cell(a, b, cell_a, cell_b, run_a, run_b))
    return {
        "a": {"name": meta_a.get("name"), "label": run_a, "path": str(a.path)},
        "b": {"name": meta_b.get("name"), "label": run_b, "path": str(b.path)},
        "dataset": meta_a.get("dataset"),
        "only_in_a": [m for m in models_a if m not in models],
        "only_in_b": [m for m in models_b if m not in models.values()],
        "cells": rows,
    }


def same_budget(a: float, b: float) -> bool:
    """Whether two budgets of one norm are the same as their users wrote them: equal, or one written as a
    decimal (0.031, 0.0314, 0.03) and the other a fraction or computed value (8/255) that rounds to it at
    the decimal's significant digits. Two written decimals match only when equal: 0.03 is not 0.034."""
    if a == b:
        return True
    written, other = sorted((a, b), key=_digits)
    digits = _digits(written)
    return digits <= WRITTEN_DIGITS < _digits(other) and float(f"{other:.{digits}g}") == written


def _digits(eps: float) -> int:
    """The significant digits of the shortest decimal that reads back as ``eps``."""
    return len(Decimal(repr(eps)).normalize().as_tuple().digits)


def pair_budgets(budgets_a: set[Budget], budgets_b: set[Budget]) -> dict[Budget, Budget]:
    """Each of A's budgets with the one of B it is the same as: equal budgets first, then
    :func:`same_budget`'s. A budget matching two of the other run's is ambiguous, and one matching none
    means the runs used different budgets: both are refused."""
    pairs = {budget: budget for budget in budgets_a & budgets_b}
    left_a, left_b = sorted(budgets_a - budgets_b), sorted(budgets_b - budgets_a)

    def matches(budget: Budget, others: list[Budget]) -> list[Budget]:
        return [o for o in others if o[0] == budget[0] and same_budget(budget[1], o[1])]

    for side, mine, theirs in (("A", left_a, left_b), ("B", left_b, left_a)):
        for budget in mine:
            found = matches(budget, theirs)
            if len(found) > 1:
                raise NotComparable(
                    f"{_describe([budget])} in {side} matches {len(found)} budgets of the other run "
                    f"({_describe(found)}); write the budgets with the digits that tell them apart"
                )
    pairs |= {budget: found[0] for budget in left_a if (found := matches(budget, left_b))}
    only_a = [budget for budget in left_a if budget not in pairs]
    only_b = [budget for budget in left_b if budget not in pairs.values()]
    if only_a or only_b:
        raise NotComparable(
            f"the runs used different budgets: {_describe(only_a)} only in A, {_describe(only_b)} only in B"
        )
    return pairs


def _check_same_samples(
    meta_a: dict[str, Any], meta_b: dict[str, Any], cells_a: list[CellSummary], cells_b: list[CellSummary]
) -> None:
    """Refuse runs over different test samples: by their content fingerprints, or, for a run stored before
    advsec fingerprinted what it scored, by the dataset's name (the per-cell label check follows)."""
    found_a, found_b = meta_a.get("samples_fingerprint"), meta_b.get("samples_fingerprint")
    if found_a and found_b:
        if found_a != found_b:
            counts = f"{cells_a[0].n if cells_a else 0} vs {cells_b[0].n if cells_b else 0} samples"
            raise NotComparable(
                f"the runs scored different test samples ({counts}, content fingerprints {found_a} vs "
                f"{found_b}); compare runs over the same samples, in the same order"
            )
        return
    if meta_a.get("dataset") != meta_b.get("dataset"):
        lacking = [side for side, found in (("A", found_a), ("B", found_b)) if not found]
        missing = f"run {lacking[0]} has no" if len(lacking) == 1 else "neither run has a"
        raise NotComparable(
            f"the runs used different datasets: {meta_a.get('dataset')} vs {meta_b.get('dataset')}, and "
            f"{missing} fingerprint of the samples it scored (stored by an older advsec), so only the "
            "dataset names can tell: run it again to compare by content"
        )


def _run_labels(a: Store, b: Store, meta_a: dict[str, Any], meta_b: dict[str, Any]) -> tuple[str, str]:
    """Each run by its name, with its folder when both have the same name (two ``evaluate`` runs)."""
    name_a = meta_a.get("name") or a.path.parent.name
    name_b = meta_b.get("name") or b.path.parent.name
    if name_a != name_b:
        return name_a, name_b
    folder_a, folder_b = a.path.parent, b.path.parent
    if folder_a.name == folder_b.name:  # reports/x/run against reports/y/run
        return f"{name_a} ({folder_a})", f"{name_b} ({folder_b})"
    return f"{name_a} ({folder_a.name})", f"{name_b} ({folder_b.name})"


def _compare_cell(
    a: Store, b: Store, cell_a: CellSummary, cell_b: CellSummary, run_a: str, run_b: str
) -> dict[str, Any]:
    samples_a, samples_b = a.samples(cell_a.cell), b.samples(cell_b.cell)
    label_a, label_b = _side(run_a, cell_a), _side(run_b, cell_b)
    if [s["label"] for s in samples_a] != [s["label"] for s in samples_b]:
        raise NotComparable(
            f"the runs scored different samples in {label_a} vs {label_b}: {len(samples_a)} vs "
            f"{len(samples_b)} samples, or other labels; compare runs over the same test samples"
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
        "defense_b": cell_b.defense,
        "eps_b": cell_b.eps,
        "label_a": label_a,
        "label_b": label_b,
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


def _side(run: str, cell: CellSummary) -> str:
    """One side of a compared cell: its run, model and budget."""
    return f"{run} · {cell.defense} · {_budget(cell.norm, cell.eps)}"


def _budget(norm: str, eps: float) -> str:
    return "clean" if norm == "none" else f"{norm} {eps:g}"


def _by_key(cells: list[CellSummary]) -> dict[tuple[str, str, float], CellSummary]:
    return {(c.defense, c.norm, c.eps): c for c in cells}


def _budgets(cells: dict[tuple[str, str, float], CellSummary]) -> set[Budget]:
    return {(norm, eps) for _, norm, eps in cells if norm != "none"}


def _describe(budgets: list[Budget]) -> str:
    return ", ".join(_budget(norm, eps) for norm, eps in sorted(budgets)) or "none"


def model_and_budget(row: dict[str, Any]) -> tuple[str, str]:
    """A compared row's model and budget as a table shows them: each once where both runs agree,
    ``A / B`` where they differ (a checkpoint against another, 8/255 against 0.031)."""
    model = " / ".join(dict.fromkeys([row["defense"], row["defense_b"]]))
    budget = _budget(row["norm"], row["eps"])
    return model, budget if row["eps_b"] == row["eps"] else f"{budget} / {row['eps_b']:g}"


def to_markdown(comparison: dict[str, Any]) -> str:
    """The comparison as a Markdown table (written beside ``compare.json``)."""
    lines = [
        f"# {comparison['a']['label']} (A) vs {comparison['b']['label']} (B)",
        "",
        f"- A: {comparison['a']['label']}, `{comparison['a']['path']}`",
        f"- B: {comparison['b']['label']}, `{comparison['b']['path']}`",
        "",
        "| Model | Budget | A | B | Δ (pp) | Lost | Gained | n |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in comparison["cells"]:
        model, budget = model_and_budget(row)
        lines.append(
            f"| {model} | {budget} | {100 * row['a']:.1f}% | {100 * row['b']:.1f}% | "
            f"{100 * row['delta']:+.1f} | {row['lost']} | {row['gained']} | {row['n']} |"
        )
    lines += [
        "",
        "Samples each attack broke:",
        "",
        "| Model | Budget | Attack | A | B | Δ |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in comparison["cells"]:
        model, budget = model_and_budget(row)
        for attack in row["attacks"]:
            a, b = attack["broken_a"], attack["broken_b"]
            delta = f"{b - a:+d}" if a is not None and b is not None else "—"
            lines.append(f"| {model} | {budget} | {attack['attack']} | "
                         f"{'—' if a is None else a} | {'—' if b is None else b} | {delta} |")  # fmt: skip
    for side in ("a", "b"):
        if comparison[f"only_in_{side}"]:
            lines += ["", f"Only in {side.upper()}: {', '.join(comparison[f'only_in_{side}'])}"]
    return "\n".join(lines) + "\n"
