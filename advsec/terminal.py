"""Terminal tables (rich): the results scorecard and the plugin capability lists."""

from __future__ import annotations

import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import advsec.registry as registry
from advsec.compare import model_and_budget
from advsec.errors import PluginError
from advsec.results import (
    CERTIFIED_RADIUS,
    DETECTION_HEADER,
    MEMBERSHIP_FPRS,
    UNRESTRICTED_RATES,
    CertifiedSummary,
    DefenseSummary,
    DetectionSummary,
    ReplaySummary,
    UnrestrictedSummary,
    detection_row,
    distance_text,
    membership_note,
    membership_resolved,
)

_CAPABILITIES: dict[str, list[str]] = {
    "attacks": ["norms", "targeted", "kind", "modalities"],
    "defenses": ["stochastic", "differentiable", "stateful", "certifiable", "modalities"],
    "generators": ["norms", "targeted", "modalities"],
    "datasets": ["domain", "shape", "bounds", "embedded"],
    "models": [],
}


def plugin_rows(kind: str) -> list[dict[str, Any]]:
    """One row per registered plugin: its capabilities, or why it is broken."""
    rows = []
    for entry in registry.REGISTRIES[kind].entries(adapted=True):
        row: dict[str, Any] = {"name": entry.name, "source": entry.source}
        try:
            obj = entry.load()
        except PluginError as exc:
            row["status"] = f"broken: {exc}"
            rows.append(row)
            continue
        row["status"] = "ok"
        for capability in _CAPABILITIES[kind]:
            value = getattr(obj, capability, None)
            row[capability] = list(value) if isinstance(value, tuple) else value
        # The docstring's first line, without reStructuredText's ``literal`` marks.
        row["description"] = (obj.__doc__ or "").strip().split("\n")[0].replace("``", "")
        rows.append(row)
    return rows


def print_plugin_table(kind: str) -> None:
    rows = plugin_rows(kind)
    table = Table(title=kind, title_justify="left", show_lines=False)
    columns = ["name", *_CAPABILITIES[kind], "description", "source"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        if row["status"] != "ok":  # a message quotes code and types: its brackets are not rich markup
            status = f"[red]{escape(row['status'])}[/red]"
            table.add_row(escape(row["name"]), status, *[""] * (len(columns) - 3), escape(row["source"]))
            continue
        table.add_row(*[escape(_cell(row.get(c))) for c in columns])
    _console().print(table if rows else f"{kind}: none registered")


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


def print_scorecard(
    name: str, defenses: list[DefenseSummary], certifications: list[CertifiedSummary]
) -> None:
    """Clean and worst-case robust accuracy per defense and budget, sanity flags, privacy cost and costs
    (the run's :func:`~advsec.results.defense_summaries` and :func:`~advsec.results.certified_summaries`)."""
    certified = {c.defense: c.certified.get(CERTIFIED_RADIUS) for c in certifications}
    budgets = list(dict.fromkeys(b for d in defenses for b in d.robust))
    table = Table(title=f"{name}: accuracy (%), robust with its 95 % interval", title_justify="left",
                  box=box.SIMPLE_HEAD)  # fmt: skip
    signals = list(dict.fromkeys(signal for d in defenses for signal in d.privacy))
    table.add_column("defense", no_wrap=True)
    columns = ["clean", *(b.replace(":", " ") for b in budgets)]
    columns += [f"certified ℓ2 r={CERTIFIED_RADIUS}"] * bool(certified) + ["flags"]
    private = any(d.privacy_budget for d in defenses)
    columns += [f"MI adv. {signal} (pp)" for signal in signals] + ["DP (ε, δ)"] * private
    trained = any(d.train_seconds is not None for d in defenses)  # checkpoints alone: nothing was trained
    columns += ["train s"] * trained + ["attack s"]
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for d in defenses:
        robust = [_robust(d, b) for b in budgets]
        if certified:
            value = certified.get(d.defense)
            robust.append("" if value is None else f"{100 * value:.1f}")
        privacy = [f"{100 * d.privacy[s].advantage:+.1f}" if s in d.privacy else "" for s in signals]
        if private:
            privacy.append("" if d.privacy_budget is None else "({:.3g}, {:.0e})".format(*d.privacy_budget))
        train_seconds = ["" if d.train_seconds is None else f"{d.train_seconds:.1f}"] * trained
        table.add_row(
            d.defense,
            f"{100 * d.clean_accuracy:.1f}",
            *robust,
            str(len(d.flags)),
            *privacy,
            *train_seconds,
            f"{d.attack_seconds:.1f}",
        )
    _console().print(table)
    _print_membership(defenses)


def _print_membership(defenses: list[DefenseSummary]) -> None:
    """Each defense's membership inference per signal: TPR at 0.1 % and 1 % FPR (Clopper–Pearson 95 %),
    AUC (DeLong 95 %), the balanced advantage, and for LiRA its shadow models and their training time."""
    found = [(d.defense, m) for d in defenses for m in d.privacy.values()]
    if not found:
        return
    table = Table(title="membership inference", title_justify="left", box=box.SIMPLE_HEAD,
                  caption=membership_note([m for _, m in found]), caption_justify="left")  # fmt: skip
    table.add_column("defense", no_wrap=True)
    table.add_column("signal", no_wrap=True)
    columns = ["members", "non-members", "TPR @ 0.1 % FPR", "TPR @ 1 % FPR", "AUC", "adv. (pp)", "shadows"]
    for column in [*columns, "shadow train s"]:
        table.add_column(column, justify="right", no_wrap=True)
    for defense, m in found:
        rates = [(MEMBERSHIP_FPRS[0], m.tpr_001, m.tpr_001_low, m.tpr_001_high),
                 (MEMBERSHIP_FPRS[1], m.tpr_01, m.tpr_01_low, m.tpr_01_high)]  # fmt: skip
        tpr = [
            f"{100 * value:.1f}{'' if membership_resolved(m, fpr) else '*'} "
            f"[{100 * low:.1f}, {100 * high:.1f}]"
            for fpr, value, low, high in rates
        ]
        table.add_row(
            defense, m.signal, f"{m.members:,}", f"{m.nonmembers:,}", *tpr,
            f"{m.auc:.3f} [{m.auc_low:.3f}, {m.auc_high:.3f}]", f"{100 * m.advantage:+.1f}",
            str(m.shadows) if m.shadows else "", f"{m.shadow_seconds:.1f}" if m.shadows else "",
        )  # fmt: skip
    _console().print(table)


def _robust(summary: DefenseSummary, budget: str) -> str:
    """Robust accuracy (%) at a budget with its Wilson 95 % interval, e.g. ``83.5 [80.1–86.6]``."""
    if budget not in summary.robust:
        return ""
    low, high = summary.robust_interval[budget]
    return f"{100 * summary.robust[budget]:.1f} [{100 * low:.1f}–{100 * high:.1f}]"


def print_warnings(warnings: list[str]) -> None:
    """The run's warnings (:attr:`advsec.results.RunResults.warnings`), a line each, where the scorecard is
    read."""
    for warning in warnings:
        _console().print(f"[bold yellow]warning:[/bold yellow] {escape(warning)}", soft_wrap=True)


def print_certificates(certified: list[CertifiedSummary]) -> None:
    """Certified accuracy per smoothing defense at ℓ2 radii 0, 0.25, …, with the settings behind it."""
    radii = list(dict.fromkeys(r for c in certified for r in c.certified))
    table = Table(title="certified accuracy (%) at ℓ2 radius", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("defense", no_wrap=True)
    for column in ["σ", "n", "α", "samples", *(f"r={r}" for r in radii), "abstain", "certify s"]:
        table.add_column(column, justify="right", no_wrap=True)
    for c in certified:
        accuracy = [f"{100 * c.certified[r]:.1f}" if r in c.certified else "" for r in radii]
        table.add_row(
            c.defense, f"{c.sigma:g}", f"{c.n:,}", f"{c.alpha:g}", str(c.samples), *accuracy,
            f"{100 * c.abstained:.1f}", f"{c.wall_seconds:.1f}",
        )  # fmt: skip
    _console().print(table)


def print_replays(replays: list[ReplaySummary]) -> None:
    """Replay success (%) per defense and attacker at each delay since crafting (sitting-duck protocol)."""
    delays = list(dict.fromkeys(d for r in replays for d in r.replay))
    table = Table(title="replay success (%) Δ queried samples after crafting", title_justify="left",
                  box=box.SIMPLE_HEAD)  # fmt: skip
    table.add_column("defense", no_wrap=True)
    table.add_column("attacker", no_wrap=True)
    for column in ["crafted", *(f"Δ={d:,}" for d in delays), "queries/sample"]:
        table.add_column(column, justify="right", no_wrap=True)
    for r in replays:
        crafted = "" if r.crafted is None else f"{100 * r.crafted:.1f}"
        replayed = [f"{100 * r.replay[d].success:.1f}" if d in r.replay else "" for d in delays]
        table.add_row(r.defense, f"{r.attack} · {r.mode}", crafted, *replayed,
                      f"{r.queries_per_sample:,.0f}")  # fmt: skip
    _console().print(table)


def print_unrestricted(runs: list[UnrestrictedSummary]) -> None:
    """Unrestricted attacks (%), a table per source of the made inputs: the model's and the listener's
    rates (:data:`UNRESTRICTED_RATES`), chance, the median distance from the source, the seconds."""
    titles = {"carrier": "made from carriers, aimed at a target", "test": "made from test inputs"}
    for source, rates in UNRESTRICTED_RATES.items():
        if not (mine := [r for r in runs if r.source == source]):
            continue
        table = Table(title=f"unrestricted attacks (%): {titles[source]}", title_justify="left",
                      box=box.SIMPLE_HEAD)  # fmt: skip
        for column in ("defense", "attacker"):
            table.add_column(column, no_wrap=True)
        for column in ("made", *rates.values(), "chance", "median distance", "seconds"):
            table.add_column(column, justify="right", no_wrap=True)
        for r in mine:
            shares = [*(_share(r.rates[k]) for k in rates), _share(r.chance)]
            distance = distance_text(r.median_distance, r.norm)
            seconds = f"{r.wall_seconds:.1f}"
            table.add_row(r.defense, r.attack, str(r.aimed), *shares, distance, seconds)
        _console().print(table)


def print_detection(detection: list[DetectionSummary]) -> None:
    """Each thresholded fake detector per attack: its false alarms on the evaluated real images, detection
    rate, the fakes passing before and after attack, and the caught fakes still caught (Clopper–Pearson)."""
    table = Table(
        title="fake detection at a fixed false-alarm rate", title_justify="left", box=box.SIMPLE_HEAD
    )
    for i, column in enumerate(DETECTION_HEADER):
        table.add_column(column, no_wrap=True, justify="left" if i < 2 else "right")
    for d in detection:
        table.add_row(*detection_row(d))
    _console().print(table)


def _share(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def print_comparison(comparison: dict[str, Any]) -> None:
    """Accuracy (%) per model and budget in runs A and B, the change, and the samples that flipped."""
    title = escape(f"{comparison['a']['label']} (A) vs {comparison['b']['label']} (B)")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("model", "budget"):
        table.add_column(column, no_wrap=True)
    for column in ("A", "B", "Δ pp", "lost", "gained"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in comparison["cells"]:
        table.add_row(*map(escape, model_and_budget(row)), f"{100 * row['a']:.1f}", f"{100 * row['b']:.1f}",
                      f"{100 * row['delta']:+.1f}", str(row["lost"]), str(row["gained"]))  # fmt: skip
    _console().print(table)
    for side in ("a", "b"):
        if comparison[f"only_in_{side}"]:
            _console().print(f"only in {side.upper()}: {', '.join(comparison[f'only_in_{side}'])}")


def _console() -> Console:
    """The terminal's width on a terminal; wide enough for any table when piped into a file or a test."""
    return Console() if sys.stdout.isatty() else Console(width=200)
