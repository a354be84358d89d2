"""The report's tables, formatted from the aggregates in :mod:`advsec.results` (never recounted here)."""

from __future__ import annotations

from typing import Any

from advsec.records import MembershipInference
from advsec.report.figures import budget_name
from advsec.report.render import Block, Heading, Table
from advsec.results import (
    CERTIFIED_RADIUS,
    DETECTION_HEADER,
    UNRESTRICTED_RATES,
    AttackSummary,
    CellSummary,
    CertifiedSummary,
    DefenseSummary,
    DetectionSummary,
    GuardEvent,
    ModelSummary,
    ReplaySummary,
    UnrestrictedSummary,
    budget_key,
    detection_row,
    distance_text,
    membership_note,
    membership_text,
)

MISSING = "—"


def percent(fraction: float | None) -> str:
    return MISSING if fraction is None else f"{100 * fraction:.1f}%"


def seconds(value: float | None) -> str:
    """Two decimals below 10 s, where single attacks on small data sets usually land; one above."""
    if value is None:
        return MISSING
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}"


def count(value: int) -> str:
    return f"{value:,}"


def budgets(cells: list[CellSummary]) -> list[tuple[str, float]]:
    """The attacked (norm, eps) pairs: norms in plan order, each norm's budgets ascending."""
    pairs = dict.fromkeys((c.norm, c.eps) for c in cells if c.norm != "none")
    norms = list(dict.fromkeys(norm for norm, _ in pairs))
    return sorted(pairs, key=lambda pair: (norms.index(pair[0]), pair[1]))


def scorecard(
    defenses: list[DefenseSummary],
    cells: list[CellSummary],
    certified: list[CertifiedSummary],
    models: list[ModelSummary],
) -> Table:
    """A row per defense: clean and worst-case robust accuracy per budget with its 95 % interval, certified
    accuracy where there is one, sanity flags, privacy cost and what it all cost (training only where a
    model was trained). ``models`` say which rows are the user's models evaluated as given."""
    columns = budgets(cells)
    certified_at = {c.defense: c.certified.get(CERTIFIED_RADIUS) for c in certified}
    signals = list(dict.fromkeys(signal for d in defenses for signal in d.privacy))
    private = any(d.privacy_budget for d in defenses)
    shadowed = any("lira" in d.privacy for d in defenses)
    trained = any(d.train_seconds is not None for d in defenses)
    described = {m.defense: m.description for m in models}
    rows = []
    for summary in defenses:
        robust = [(summary.robust.get(key), summary.robust_interval.get(key))
                  for key in (budget_key(norm, eps) for norm, eps in columns)]  # fmt: skip
        shown = [MISSING if v is None else with_interval(v, ci) for v, ci in robust]
        rows.append(
            [
                summary.defense,
                _method(summary, described.get(summary.defense, {})),
                percent(summary.clean_accuracy),
                *shown,
                *([percent(certified_at.get(summary.defense))] if certified else []),
                str(len(summary.flags)),
                *(_advantage(summary.privacy.get(signal)) for signal in signals),
                *(_roc(summary.privacy.get(signal)) for signal in signals),
                *([_shadow_seconds(summary.privacy.get("lira"))] if shadowed else []),
                *([_budget(summary.privacy_budget)] if private else []),
                *([seconds(summary.train_seconds)] if trained else []),
                seconds(summary.attack_seconds),
                count(summary.forwards),
                count(summary.backwards),
            ]
        )
    header = ["Defense", "Method", "Clean", *(budget_name(n, e) for n, e in columns)]
    header += [f"Certified ℓ2 r={CERTIFIED_RADIUS}"] * bool(certified) + ["Flags"]
    header += [f"MI advantage ({signal})" for signal in signals]
    header += [f"MI TPR @ 0.1 / 1 % FPR, AUC ({signal})" for signal in signals]
    header += ["LiRA shadow train s (models)"] * shadowed + ["DP (ε, δ)"] * private
    header += ["Train s"] * trained + ["Attack s", "Forwards", "Backwards"]
    note = membership_note([m for d in defenses for m in d.privacy.values()])
    return Table(header, rows, numeric=[False, False] + [True] * (len(header) - 2), sortable=True,
                 caption=note)  # fmt: skip


def _advantage(inference: MembershipInference | None) -> str:
    """A membership-inference advantage (TPR − FPR) in percentage points; 0 is chance."""
    return MISSING if inference is None else f"{100 * inference.advantage:+.1f} pp"


def _roc(inference: MembershipInference | None) -> str:
    """TPR at 0.1 % and 1 % FPR and the ROC AUC (:func:`advsec.results.membership_text`)."""
    return MISSING if inference is None else membership_text(inference)


def _shadow_seconds(inference: MembershipInference | None) -> str:
    """What LiRA's shadow models cost to train (the time stored with them, when they came from the cache)."""
    return MISSING if inference is None else f"{seconds(inference.shadow_seconds)} ({inference.shadows})"


def _budget(spent: tuple[float, float] | None) -> str:
    """A differentially private training's spent budget, as (ε, δ)."""
    return MISSING if spent is None else f"({spent[0]:.3g}, {spent[1]:.0e})"


def attack_tables(cells: list[CellSummary]) -> list[Block]:
    """A heading per defense, then a table per attacked cell with its cascade stage by stage."""
    blocks: list[Block] = []
    for defense in dict.fromkeys(c.defense for c in cells):
        attacked = [c for c in cells if c.defense == defense and c.norm != "none"]
        if attacked:
            blocks += [Heading(defense, level=3), *(_stage_table(c) for c in attacked)]
    return blocks


_STAGE_HEADER = [
    "#",
    "Attack",
    "Attacked",
    "Broken",
    "Robust after",
    "Robust alone",
    "Forwards",
    "Backwards",
    "Seconds",
]


def _stage_table(cell: CellSummary) -> Table:
    """What each attack of the cascade was given, broke, left robust and cost; for targeted attacks how
    often the model heard the class aimed at, and for generators their one-off fit apart from the rest."""
    attacks = cell.attacks
    aims = any(a.targeted_success is not None for a in attacks)
    fits = any(a.fit_seconds is not None for a in attacks)
    rows = []
    for position, a in enumerate(attacks, start=1):
        row = [
            str(position),
            a.attack,
            count(a.attacked),
            count(a.broken),
            percent(a.robust_after),
            percent(a.robust_alone),
        ]
        if aims:
            hit = a.targeted_success
            row.append("–" if hit is None else with_interval(hit, a.targeted_interval))
        row += [count(a.forwards), count(a.backwards), seconds(a.wall_seconds)]
        if fits:
            fitted = a.fit_seconds
            row.append("–" if fitted is None else seconds(fitted) + " (cached)" * a.fit_cached)
        rows.append(row)
    header = _STAGE_HEADER[:6] + ["Hit target"] * aims + _STAGE_HEADER[6:] + ["Fit seconds"] * fits
    caption = (
        f"{budget_name(cell.norm, cell.eps)} · n={cell.n} · "
        f"clean {percent(cell.clean_accuracy)} → robust {percent(cell.robust_accuracy)} · "
        f"{seconds(cell.wall_seconds)} s"
    )
    return Table(header, rows, numeric=[True, False] + [True] * (len(header) - 2), caption=caption)


def generator_table(cells: list[CellSummary]) -> Table | None:
    """Each generator next to each gradient attack of its cell: what each left robust, what each sample
    cost, and after how many samples the generator's one-off fit has paid for itself (fit seconds ÷ the
    per-sample seconds it saves); None without generators."""
    rows = []
    for cell in cells:
        for fitted in (a for a in cell.attacks if a.fit_seconds is not None):
            for other in (a for a in cell.attacks if a.backwards):
                saved = _per_sample(other) - _per_sample(fitted)
                rows.append([
                    cell.defense, budget_name(cell.norm, cell.eps), fitted.attack,
                    percent(fitted.robust_alone), other.attack, percent(other.robust_alone),
                    seconds(fitted.fit_seconds), f"{1000 * _per_sample(fitted):.3g}",
                    f"{1000 * _per_sample(other):.3g}", f"{_per_sample(other) / _per_sample(fitted):.1f}×",
                    f"{fitted.fit_seconds / saved:,.0f}" if saved > 0 else "never",
                ])  # fmt: skip
    if not rows:
        return None
    header = ["Defense", "Budget", "Generator", "Robust", "Gradient attack", "Robust", "Fit s", "ms/sample",
              "ms/sample", "Speed-up", "Break-even samples"]  # fmt: skip
    return Table(header, rows, numeric=[False, False, False, True, False] + [True] * 6)


def _per_sample(attack: AttackSummary) -> float:
    return attack.wall_seconds / max(attack.attacked, 1)


def _method(summary: DefenseSummary, description: dict[str, Any]) -> str:
    """The plugin name with its parameters, e.g. ``pgd-at eps=0.3 steps=10``; the user's model evaluated
    as given (its ``description`` names no defense) has none."""
    if description and description.get("defense") is None:
        return f"{description.get('source')}, as given"
    parts = [
        summary.name or summary.defense,
        *(f"{k}={v}" for k, v in sorted(summary.params.items())),
    ]
    if summary.stochastic:
        parts.append("(stochastic)")
    if events := summary.guard:
        parts.append(f"(overfitting guard fired: {'; '.join(map(_guard_event, events))})")
    return " ".join(parts)


def _guard_event(event: GuardEvent) -> str:
    restored = (
        f"restored epoch {event.restored} at {percent(event.best)}"
        if event.restored
        else "started over from fresh weights"
    )
    sign = ", one answer for all" if event.constant else ", FGSM no longer hurting" if event.overfit else ""
    return f"held-out robust accuracy {percent(event.check)} at epoch {event.epoch}{sign}, {restored}"


def adaptive_table(defenses: list[DefenseSummary]) -> Table | None:
    """Per random or non-differentiable defense and budget: robust accuracy naive, then adaptive."""
    rows = []
    for summary in defenses:
        for budget, naive in summary.naive_robust.items():
            adaptive = summary.robust[budget]
            rows.append(
                [
                    summary.defense,
                    budget_name(*_split(budget)),
                    percent(naive),
                    percent(adaptive),
                    f"{100 * (adaptive - naive):+.1f} pp",
                ]
            )
    if not rows:
        return None
    header = ["Defense", "Budget", "Naive attacks", "+ adaptive (worst case)", "Change"]
    return Table(header, rows, numeric=[False, False, True, True, True])


def escalation_table(cells: list[CellSummary]) -> Table | None:
    """Per cell whose sanity flags added attacks: robust accuracy after the spec's attacks and after the
    added ones, what was added (and how many samples each broke) and which flags called for it."""
    rows = []
    for cell in (c for c in cells if c.unescalated_robust_accuracy is not None):
        added = [a for a in cell.attacks if a.escalation is not None]
        before, after = cell.unescalated_robust_accuracy, cell.robust_accuracy
        rows.append(
            [cell.defense, budget_name(cell.norm, cell.eps), percent(before), percent(after),
             f"{100 * (after - before):+.1f} pp", ", ".join(f"{a.attack}: {a.broken}" for a in added),
             "; ".join(dict.fromkeys(a.escalation for a in added if a.escalation))]
        )  # fmt: skip
    if not rows:
        return None
    header = [
        "Defense",
        "Budget",
        "Spec's attacks",
        "+ escalated",
        "Change",
        "Added (samples broken)",
        "Flags",
    ]
    return Table(header, rows, numeric=[False, False, True, True, True, False, False])


def certified_table(certified: list[CertifiedSummary], cells: list[CellSummary]) -> Table:
    """Per smoothing defense, certified accuracy by ℓ2 radius, and below it the attacked accuracy at ε = r.

    The certified row is a lower bound on the smoothed classifier's robust accuracy (each certificate
    holds with probability 1 − α); the attacked row, from the ℓ2 cells, is an upper bound on the deployed
    model's. Radii without an ℓ2 cell of that budget show "—"; r = 0 shows the clean accuracy.
    """
    radii = list(dict.fromkeys(r for c in certified for r in c.certified))
    rows = []
    for summary in certified:
        defense = summary.defense
        own = [c for c in cells if c.defense == defense and c.norm in ("none", "l2")]
        by_eps = {c.eps: c.robust_accuracy for c in own}  # the clean cell: ε = 0, robust = clean
        attacked = [by_eps.get(float(r)) for r in radii]
        settings = f"σ={summary.sigma:g} n={summary.n:,} α={summary.alpha:g}"
        rows.append(
            [defense, f"certified ({settings})", *(percent(summary.certified.get(r)) for r in radii),
             percent(summary.abstained), count(summary.samples), seconds(summary.wall_seconds)]
        )  # fmt: skip
        if any(a is not None for a in attacked):
            rows.append([defense, "attacked (ℓ2, empirical)", *map(percent, attacked),
                         MISSING, MISSING, MISSING])  # fmt: skip
    header = ["Defense", "Bound", *(f"r={r}" for r in radii), "Abstained", "Samples", "Certify s"]
    return Table(header, rows, numeric=[False, False] + [True] * (len(header) - 2))


def repeats_table(defenses: list[DefenseSummary], repeats: int) -> Table | None:
    """Per random defense and budget: accuracy scored on one draw, then on all ``repeats`` (Wilson 95 %)."""
    rows = []
    for summary in (d for d in defenses if d.stochastic):
        scored = [("clean", summary.clean_accuracy_single, summary.clean_accuracy, summary.clean_interval)]
        scored += [
            (budget_name(*_split(b)), summary.robust_single[b], value, summary.robust_interval[b])
            for b, value in summary.robust.items()
        ]
        for name, single, worst, bounds in scored:
            change = f"{100 * (worst - single):+.1f} pp"
            rows.append([summary.defense, name, percent(single), with_interval(worst, bounds), change])
    if not rows:
        return None
    header = ["Defense", "Budget", "One evaluation", f"All {repeats} evaluations [95% CI]", "Change"]
    return Table(header, rows, numeric=[False, False, True, True, True])


def _split(budget: str) -> tuple[str, float]:
    norm, eps = budget.split(":")
    return norm, float(eps)


def sanity_table(cells: list[CellSummary]) -> tuple[Table, Table] | None:
    """Every sanity check of every cell and whether it flags the evaluation; then what each kind measures.

    A check about one attack is named ``kind: attack``; the second table explains each kind once.
    """
    checks = [(cell, check) for cell in cells for check in cell.checks]
    if not checks:
        return None
    rows = [
        [
            cell.defense,
            "model" if cell.norm == "none" else budget_name(cell.norm, cell.eps),
            check.name,
            percent(check.value),
            "FLAG" if check.flagged else "pass",
        ]
        for cell, check in checks
    ]
    kinds = {check.name.split(":")[0]: check.detail for _, check in checks}
    verdicts = Table(
        ["Defense", "Where", "Check", "Value", "Verdict"], rows, numeric=[False, False, False, True, False]
    )
    return verdicts, Table(
        ["Check", "What it measures"], [list(kind) for kind in kinds.items()], numeric=[False, False]
    )


def replay_table(replays: list[ReplaySummary]) -> Table:
    """A row per defense and attacker: success against the crafted-on snapshot, then replay success at each
    delay (pooled over repeats; Wilson 95 % over samples), the clean error meanwhile, and crafting cost."""
    delays = list(dict.fromkeys(d for r in replays for d in r.replay))
    rows = []
    for r in replays:
        replayed = [r.replay.get(d) for d in delays]
        clean = [p.clean_error for p in r.replay.values()]
        rows.append(
            [r.defense, f"{r.attack} · {r.mode}", percent(r.crafted),
             *(MISSING if p is None else with_interval(p.success, p.interval) for p in replayed),
             percent(sum(clean) / len(clean)), f"{r.queries_per_sample:,.0f}", seconds(r.wall_seconds)]
        )  # fmt: skip
    header = ["Defense", "Attacker", "Crafted", *(f"Δ={d:,}" for d in delays), "Clean error",
              "Queries / sample", "Craft s"]  # fmt: skip
    return Table(header, rows, numeric=[False, False] + [True] * (len(header) - 2))


def transfer_table(defense: str, matrix: list[list[float]]) -> Table:
    """Examples crafted on each member of an ensemble (rows), scored on each member (columns)."""
    rows = [[f"crafted on member {i}", *map(percent, row)] for i, row in enumerate(matrix)]
    header = [defense, *(f"fools member {j}" for j in range(len(matrix)))]
    return Table(header, rows, numeric=[False] + [True] * len(matrix))


def with_interval(value: float, bounds: tuple[float, float]) -> str:
    """A share and its 95 % interval, e.g. ``6.0% [3.5%, 10.2%]``."""
    return f"{percent(value)} [{percent(bounds[0])}, {percent(bounds[1])}]"


def unrestricted_table(runs: list[UnrestrictedSummary], source: str) -> Table:
    """Per defense and unrestricted attack making inputs from ``source``: its three rates (see
    :data:`UNRESTRICTED_RATES`) with intervals, the listener, chance, the median distance and the costs."""
    rates = UNRESTRICTED_RATES[source]
    header = ["Defense", "Attack", "Made", *(title.capitalize() for title in rates.values()), "Listener",
              "Chance", "Median distance", "Fit", "Seconds"]  # fmt: skip
    rows = [
        [
            r.defense,
            r.attack,
            count(r.aimed),
            *("–" if r.rates[k] is None else with_interval(r.rates[k], r.intervals[k]) for k in rates),
            r.listener,
            percent(r.chance),
            distance_text(r.median_distance, r.norm),
            seconds(r.fit_seconds),
            seconds(r.wall_seconds),
        ]
        for r in runs
        if r.source == source
    ]
    return Table(header, rows, numeric=[False, False, True, True, True, True, False, True, True, True, True])


def provenance_table(plugins: dict[str, dict[str, dict[str, Any]]]) -> Table:
    """Where each plugin the run used came from: built-in, a file (path and sha256) or a package."""
    rows = []
    for kind, named in plugins.items():
        for name, origin in named.items():
            source = origin.get("source", "")
            if source == "file":
                detail = f"{origin['path']} (sha256 {origin['sha256'][:16]}…)"
            elif source == "package":
                detail = f"{origin.get('package')} {origin.get('version')}"
            else:
                detail = ""
            rows.append([kind.rstrip("s"), name, source, detail])
    return Table(["Kind", "Name", "Source", "Detail"], rows, numeric=[False] * 4)


def detection_table(detection: list[DetectionSummary]) -> Table:
    """Per thresholded fake detector and attack, the scorecard's detection row (:func:`detection_row`)."""
    header = [column.capitalize() for column in DETECTION_HEADER]
    return Table(header, [detection_row(d) for d in detection], numeric=[False, False, *[True] * 5])
