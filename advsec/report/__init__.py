"""The report: one self-contained ``report.html``, a ``report.md`` twin and the PNG figures, from a store.

It reads the store only: every number comes from :mod:`advsec.results`, which counts the per-sample rows.
"""

from __future__ import annotations

import io
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import wavfile

from advsec.errors import AdvsecError
from advsec.norms import GEOMETRY
from advsec.records import MembershipInference, across_classes
from advsec.report.figures import (
    Example,
    Learned,
    PrivacyPoint,
    Style,
    budget_name,
    certified_png,
    defense_styles,
    examples_png,
    family_styles,
    learned_png,
    pareto_front,
    privacy_tradeoff_png,
    replay_png,
    robust_vs_eps_png,
    spectrograms_png,
    tradeoff_png,
)
from advsec.report.render import (
    Alert,
    Audio,
    Block,
    Code,
    Heading,
    Image,
    Players,
    Text,
    to_html,
    to_markdown,
)
from advsec.report.tables import (
    adaptive_table,
    attack_tables,
    budgets,
    certified_table,
    detection_table,
    escalation_table,
    generator_table,
    percent,
    provenance_table,
    repeats_table,
    replay_table,
    sanity_table,
    scorecard,
    transfer_table,
    unrestricted_table,
)
from advsec.results import (
    CellSummary,
    CertifiedSummary,
    DefenseSummary,
    ModelSummary,
    ReplaySummary,
    RunResults,
    UnrestrictedSummary,
    budget_key,
    certified_radii,
    membership_resolved,
    transfer_summaries,
)
from advsec.store import Store

__all__ = ["build_report", "pareto_front", "privacy_tradeoff_text"]

EXAMPLES_PER_DEFENSE = 4

PROVENANCE = (
    "Every plugin this run used, and where it was loaded from: advsec's own built-ins, a local file (its "
    "path and the sha256 of the bytes that ran) or an installed package (its name and version)."
)
SCORING = (
    "A sample counts as robust at a budget only if the model classifies it correctly on the clean input "
    "AND on the output of every attack in the cascade at that budget: the worst case over the attacks, per "
    "sample. The cascade attacks only the samples every earlier attack left robust, so “Attacked” shrinks "
    "stage by stage and “Robust after” is the running worst case. Robust accuracy is robust samples over all "
    "evaluated samples (clean mistakes count as not robust). Forward and backward counts are samples passed "
    "through the model by the attacks; times are wall-clock seconds."
)


SCORECARD = (
    "One row per defense; click a column to sort. Robust accuracy is the per-sample worst case over every "
    "attack at that budget (a random defense's over repeated draws), with its Wilson 95 % interval over the "
    "test samples. Flags count the sanity checks that flagged any of the defense's cells (see Sanity "
    "checks). Train s is what the model cost to train here: none for a model nobody trained (a checkpoint "
    "evaluated as given), and no column when no model was trained. MI advantage is "
    "the privacy cost (Song, Shokri & Mittal 2019): how much better than chance a threshold on the signal "
    "in brackets tells training samples from test samples (TPR − FPR, threshold fit on half the samples, "
    "scored on the other half); the loss is taken on benign inputs and at adversarial examples within the "
    "report's budget. MI TPR gives the share of members caught at thresholds letting through at most "
    "0.1 % and 1 % of the non-members, then the ROC AUC (chance 0.5)."
)

ROBUST_VS_EPS = (
    "Each defense's robust accuracy at each attacked budget. A norm attacked at several budgets is a curve "
    "from the clean accuracy at ε = 0 (a relative budget in dB has no ε = 0); one attacked at a single "
    "budget shows points only, the clean accuracy hollow at ε = 0: nothing between the two was measured. "
    "The dotted line is the report's budget."
)


def scorecard_lira(defenses: list[DefenseSummary]) -> str:
    """What the scorecard's LiRA columns are, with the shadows and samples the stored figures came from;
    empty when no defense ran LiRA."""
    found = [d.privacy["lira"] for d in defenses if "lira" in d.privacy]
    if not found:
        return ""
    shadows = " or ".join(f"{k:,}" for k in sorted({m.shadows for m in found}))
    counts = sorted({(m.members, m.nonmembers) for m in found})
    scored = "; ".join(f"{m:,} members and {n:,} non-members" for m, n in counts)
    return (
        f" The (lira) signal is offline LiRA (Carlini et al. 2022) against {shadows} shadow models per "
        f"defense, each trained like it without the scored samples, on {scored}: a sample's confidence "
        "is scored by how far it lies above the shadows'. Their training is a cost column of its own, as "
        "stored with them when they came from the cache."
    )


ADAPTIVE = (
    "Random and non-differentiable defenses are attacked twice. The naive attacks use the model as deployed, "
    "so a zero gradient (quantization) or a fresh random draw per query can blunt them. The adaptive ones "
    "(Athalye, Carlini & Wagner 2018) follow a straight-through gradient through non-differentiable steps "
    "(BPDA) and the expected prediction over many random draws (EOT); they run on the samples the naive "
    "attacks left robust, and every attempt is scored on the deployed model. A large drop means the naive "
    "number measured the defense's obfuscation, not its robustness."
)


CERTIFIED = (
    "Randomized smoothing (Cohen, Rosenfeld & Kolter 2019) replaces a base classifier f by g(x), the class "
    "f picks most often under Gaussian noise N(0, σ²I). If that class has probability at least p_A ≥ ½, g "
    "is provably constant within ℓ2 radius σ·Φ⁻¹(p_A). Here p_A is a Clopper–Pearson lower bound from n "
    "noisy draws (after n0 other draws chose the class), so each certificate holds with probability at "
    "least 1 − α; where p_A < ½, g abstains. Certified accuracy at radius r is the share of samples g gets "
    "right with a certified radius of at least r: a lower bound that no attack within r can push down. The "
    "attacked rows and dotted lines are the same defense's empirical ℓ2 numbers (r = 0: its clean accuracy) "
    "on the model as deployed, which answers with one noise draw per query: an upper bound on that model's "
    "robustness. g and the deployed model are different classifiers, so neither number bounds the other."
)


SANITY = (
    "Checks that work with any attack and flag evaluations that may have measured gradient masking rather "
    "than robustness (Carlini et al. 2019): blind input gradients, randomness a defense did not declare, "
    "and a query-only attack succeeding where every gradient attack before it failed. A flag says where to "
    "look and which adaptive attack to add; it is not a verdict."
)

ESCALATION = (
    "A flag is acted on: a cell whose sanity checks point at masked gradients, randomness or state the "
    "defense did not declare is attacked again, on the samples the spec's attacks left robust, with the "
    "attack each flag calls for: APGD on the margin loss and Square (no gradients) for masked gradients, "
    "APGD through the expected prediction over draws and scoring over repeated draws for randomness, and "
    "queries to the model as it was before the cell began for state. The robust accuracy everywhere else "
    "in this report includes them. Turn this off with [evaluation] escalate = false."
)

REPEATS = (
    "A random defense answers differently each time it is asked, so one evaluation per sample flatters it: "
    "an adversarial example that fails on one draw may succeed on the next. Every prediction that scores a "
    "random defense is drawn several times, and a sample counts as correct only if every draw gets it right. "
    "“One evaluation” scores the same inputs on the first draw alone; the interval is Wilson's 95 % interval "
    "over the test samples."
)

REPLAY = (
    "The sitting-duck protocol. A static model is a sitting duck: an adversarial example found once works "
    "forever. At one moment the attacker crafts adversarial examples: white-box against a snapshot of the "
    "model as it is then, adaptively through the expectation over a random model's draws (EOT), or with "
    "queries only against the live model, which may move under those queries. The live model then answers "
    "Δ further queried samples of ordinary traffic and the examples are replayed: replay success is the "
    "share of samples it now misclassifies, pooled over repeated replays from the same moment with fresh "
    "randomness (Wilson 95 % interval over the samples), next to its error on the clean inputs meanwhile. "
    "“Crafted” is the success against the snapshot itself. A static model's replay success is flat; a "
    "dynamic model that denies the replaying attacker shows it falling with Δ, or below “Crafted” at once."
)

TRANSFER = (
    "Each row's adversarial examples were crafted white-box on one member of the ensemble; the columns say "
    "how many of them fool each member. The diagonal is the member the attacker had; off the diagonal is "
    "what the random choice of member buys."
)


GENERATORS = (
    "A generator is fitted once per model, budget and target, then attacks with one pass of its own network; "
    "each gradient attack of the same cell is beside it. Per-sample times include scoring the result. "
    "Break-even: after that many samples, the fit plus the generator's passes cost less time than the "
    "gradient attack on its own. Fits are charged as measured when they were made, even when loaded from "
    "the cache."
)

DETECTION = (
    "Each model is a fake detector deployed at a threshold: an input is flagged fake only when its score "
    "(logit fake − logit real) clears the threshold that flags the stated share of the test split's real "
    "images. The detection rate is the share of the evaluated fakes flagged before attack; the attacks then "
    "aim the caught fakes at real, and the last column is measured on those caught fakes alone. Intervals "
    "are Clopper–Pearson 95 %. The grid's examples above are caught fakes the attacks passed off as real."
)
UNRESTRICTED = (
    "Inputs an attack made of its own (from noise, a tone, a generative model) rather than test inputs "
    "perturbed within a budget; they are kept out of every robust accuracy above. Each made input is also "
    "shown to a listener: a second model trained independently, a stand-in for a person. Distances are from "
    "what each input was made from: the carrier's peak in dB for audio, the ℓ2 distance from the test "
    "input for images. “Fit” is what the attack learned before making anything (a GAN), charged once."
)
UNRESTRICTED_SOURCES = {
    "carrier": (
        "Made from carriers (noise, a tone) and aimed at a class. “Model hears” is how often the evaluated "
        "model puts a made input in that class; “listener hears”, how often the listener does; carriers the "
        "model already heard as the target are left out. A hidden command works when the model hears it and "
        "the listener does not (near chance)."
    ),
    "test": (
        "Made from test inputs the model got right. “Model fooled” is how often the model gets the made "
        "input wrong; “listener keeps class”, how often the listener still sees the test input's class in "
        "it. A natural adversarial example is both: the model is fooled, the listener is not. When the "
        "listener is fooled too, the attack changed the input's class rather than fooling the model."
    ),
}


def build_report(store: Store, out_dir: Path) -> Path:
    """Write report.html, report.md and the figures for ``store`` into ``out_dir``; return report.html."""
    results = RunResults.read(store)
    meta, cells, certified, replays = results.meta, results.cells, results.certified, results.replays
    if not cells and not certified:
        raise AdvsecError(
            f"the store {store.path} holds no finished cells or certificates; run the spec first, then report"
        )
    defenses = results.defenses
    named = defense_styles(list(dict.fromkeys(d.defense for d in [*defenses, *certified, *replays])))
    families = _families(defenses)
    styles = family_styles(named, families)
    shown = report_budgets(cells, meta.get("report_eps"))
    title = meta.get("name") or store.path.stem

    models = results.models
    blocks: list[Block] = [Heading(title, level=1), Text(_facts(meta, cells, models), muted=True)]
    blocks += [Alert(warning) for warning in results.warnings]
    if cells:
        blocks += [Heading("Scorecard"), Text(SCORECARD + scorecard_lira(defenses))]
        blocks += [scorecard(defenses, cells, certified, models)]
    if described := [m for m in models if m.description]:
        blocks += [Heading("Models"), Text(MODELS), *(Text(model_text(m)) for m in described)]
    if shown:
        clean = {d.defense: d.clean_accuracy for d in defenses}
        classes = meta.get("classes") or []
        blocks += [
            Heading("Trade-off"),
            Image(
                "tradeoff.png",
                tradeoff_png(_tradeoff_panels(cells, clean), styles, families),
                "Trade-off chart",
            ),
            Heading("Robust accuracy vs budget"),
            Image(
                "robust_vs_eps.png",
                robust_vs_eps_png(
                    _curves(cells, clean, shown), styles, 1 / len(classes) if classes else None
                ),
                "Robust accuracy vs ε",
                ROBUST_VS_EPS,
            ),
        ]
    if shown:
        blocks += _privacy_tradeoff(defenses, *next(iter(shown.items())), styles)
    if adaptive := adaptive_table(defenses):
        blocks += [Heading("Naive vs adaptive attacks"), Text(ADAPTIVE), adaptive]
    if sanity := sanity_table(cells):
        blocks += [Heading("Sanity checks"), Text(SANITY), *sanity]
    if escalated := escalation_table(cells):
        blocks += [Heading("Flags that acted"), Text(ESCALATION), escalated]
    if repeated := repeats_table(defenses, meta.get("repeats", 1)):
        blocks += [Heading("Repeated evaluation of random defenses"), Text(REPEATS), repeated]
    if generators := generator_table(cells):
        blocks += [Heading("Generators against gradient attacks"), Text(GENERATORS), generators]
    if shown:
        blocks += [
            Heading("Attacks, stage by stage"),
            *attack_tables(cells),
            Heading("Examples"),
            *_examples(store, meta, cells, styles, *next(iter(shown.items()))),
            *_learned(store, meta, cells, styles),
        ]
    if certified:
        blocks += _certification(store, certified, cells, styles)
    if replays:
        blocks += _replay(store, replays, meta, styles)
    if unrestricted := results.unrestricted:
        blocks += [Heading("Unrestricted attacks"), Text(UNRESTRICTED)]
        for source, text in UNRESTRICTED_SOURCES.items():
            if any(r.source == source for r in unrestricted):
                blocks += [Text(text), unrestricted_table(unrestricted, source)]
        blocks += _made_examples(store, unrestricted, meta)
    if results.detection:
        blocks += [Heading("Fake detection"), Text(DETECTION), detection_table(results.detection)]
    blocks += [Heading("How this is scored"), Text(SCORING)]
    if meta.get("plugins"):
        blocks += [Heading("Where the code came from"), Text(PROVENANCE), provenance_table(meta["plugins"])]
    if meta.get("spec"):
        blocks.append(Code("Spec (TOML)", meta["spec"], "toml"))

    out_dir.mkdir(parents=True, exist_ok=True)
    for block in blocks:
        if isinstance(block, Image):
            (out_dir / block.file).write_bytes(block.png)
        if isinstance(block, Players):
            for clip in block.clips:
                (out_dir / clip.file).write_bytes(clip.wav)
    (out_dir / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    html = out_dir / "report.html"
    html.write_text(to_html(title, blocks), encoding="utf-8")
    return html


def _certification(
    store: Store, certified: list[CertifiedSummary], cells: list[CellSummary], styles: dict[str, Style]
) -> list[Block]:
    """Certified accuracy against ℓ2 radius per smoothing defense, beside its attacked ℓ2 accuracy."""
    radii = {c.defense: (certified_radii(store.certificates(c.defense)), c.samples) for c in certified}
    attacked = {}
    for c in certified:
        own = sorted((x for x in cells if x.defense == c.defense and x.norm in ("none", "l2")),
                     key=lambda x: x.eps)  # fmt: skip
        if any(x.norm == "l2" for x in own):
            attacked[c.defense] = [(x.eps, x.robust_accuracy) for x in own]  # clean cell: ε = 0
    png = certified_png(radii, attacked, styles)
    return [
        Heading("Certified robustness (randomized smoothing)"),
        Text(CERTIFIED),
        certified_table(certified, cells),
        Image("certified.png", png, "Certified accuracy vs ℓ2 radius"),
    ]


def _replay(
    store: Store, replays: list[ReplaySummary], meta: dict[str, Any], styles: dict[str, Style]
) -> list[Block]:
    """The sitting-duck protocol: replay success against the delay, and transfer between ensemble members."""
    norm, eps = meta.get("replay_threat", ["linf", 0.0])
    transfers = transfer_summaries(store, list(dict.fromkeys(r.defense for r in replays)))
    blocks: list[Block] = [
        Heading("Sitting-duck replay"),
        Text(f"{REPLAY} Budget: {budget_name(norm, eps)}."),
        replay_table(replays),
        Image("replay.png", replay_png(replays, styles), "Replay success against the delay since crafting"),
    ]
    for defense, matrix in transfers.items():
        blocks += [Heading(f"Transfer between the members of {defense}", level=3), Text(TRANSFER),
                   transfer_table(defense, matrix)]  # fmt: skip
    return blocks


PRIVACY_TRADEOFF = (
    "Privacy, clean accuracy and robustness at once. Left: each defense's clean and robust accuracy, its "
    "marker filled with the colour of how much it leaks about its training set (the colour bar); right: "
    "robust accuracy against that leakage, with its 95 % interval. Leakage is offline LiRA's TPR at 1 % "
    "FPR (the share of training samples caught while 1 % of unseen samples are falsely accused; chance is "
    "1 %) when every defense has LiRA's figures, else the loss threshold's ROC AUC (chance 0.5). Song, "
    "Shokri & Mittal (2019) found adversarial training leaks more than standard training; DP-SGD bounds "
    "what any attack can learn. Two figures whose intervals overlap are not told apart by this run."
)


def leakage_measure(defenses: list[DefenseSummary]) -> tuple[str, str, float] | None:
    """Which membership figure the three-way trade-off reads, as (signal, name, chance), or None when fewer
    than two defenses have privacy figures: LiRA's TPR at 1 % FPR when every one of them has LiRA, else the
    loss threshold's AUC."""
    measured = [d for d in defenses if d.privacy]
    if len(measured) < 2:
        return None
    if all("lira" in d.privacy for d in measured):
        return "lira", "LiRA TPR at 1 % FPR", 0.01
    if all("loss" in d.privacy for d in measured):
        return "loss", "loss-threshold AUC", 0.5
    return None


def _leakage(inference: MembershipInference, signal: str) -> tuple[float, float, float]:
    if signal == "lira":
        return inference.tpr_01, inference.tpr_01_low, inference.tpr_01_high
    return inference.auc, inference.auc_low, inference.auc_high


def privacy_tradeoff_text(defenses: list[DefenseSummary], norm: str, eps: float) -> list[str]:
    """Sentences saying where each defense sits in the three-way trade-off at one budget, computed from the
    figures: which leaks least and most, which is most robust and best on clean inputs, and how each
    compares with standard training; empty when fewer than two defenses have privacy figures."""
    measure = leakage_measure(defenses)
    if measure is None:
        return []
    signal, name, _ = measure
    key = budget_key(norm, eps)
    rows = [d for d in defenses if d.privacy and key in d.robust]
    if len(rows) < 2:
        return []
    leak = {d.defense: _leakage(d.privacy[signal], signal) for d in rows}

    def value(defense: str) -> str:
        v, low, high = leak[defense]
        if signal == "lira":
            return f"{100 * v:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"
        return f"{v:.3f} [{low:.3f}, {high:.3f}]"

    def best(by: Any, most: bool = True) -> list[str]:
        scores = {d.defense: by(d) for d in rows}
        top = (max if most else min)(scores.values())
        return [d for d, v in scores.items() if math.isclose(v, top, abs_tol=1e-12)]

    def names(found: list[str]) -> str:
        return " and ".join(found)

    budget = budget_name(norm, eps)
    least, most = best(lambda d: leak[d.defense][0], most=False), best(lambda d: leak[d.defense][0])
    robust, clean = best(lambda d: d.robust[key]), best(lambda d: d.clean_accuracy)
    by_name = {d.defense: d for d in rows}
    lines = [
        f"Leakage is read as {name}, with its 95 % interval. Leaks least: {names(least)} "
        f"({value(least[0])}); leaks most: {names(most)} ({value(most[0])}). Most robust at {budget}: "
        f"{names(robust)} ({percent(by_name[robust[0]].robust[key])}); best on clean inputs: "
        f"{names(clean)} ({percent(by_name[clean[0]].clean_accuracy)})."
    ]
    fewest = min((d.privacy[signal] for d in rows), key=lambda m: m.nonmembers)
    if signal == "lira" and not membership_resolved(fewest, 0.01):
        lines[0] += (
            f" With {fewest.nonmembers:,} non-members scored no threshold shows an FPR between 0 and 1 %: "
            "these TPRs are read at FPR 0."
        )
    reference = next((d for d in rows if d.name == "standard"), None)
    for d in rows:
        spent = f"; DP (ε {d.privacy_budget[0]:.3g}, δ {d.privacy_budget[1]:.0e})" if d.privacy_budget else ""
        line = (
            f"{d.defense}: {percent(d.clean_accuracy)} clean, {percent(d.robust[key])} robust at {budget}, "
            f"{name} {value(d.defense)}{spent}."
        )
        if reference is not None and d is not reference:
            (v, low, high), (r, r_low, r_high) = leak[d.defense], leak[reference.defense]
            side = "more than" if v > r else "less than" if v < r else "as much as"
            apart = (
                "the intervals do not overlap" if low > r_high or high < r_low
                else "the intervals overlap: this run does not tell the two apart"
            )  # fmt: skip
            gap = f"{100 * (v - r):+.1f} points" if signal == "lira" else f"{v - r:+.3f}"
            clean_gap = _points(d.clean_accuracy - reference.clean_accuracy)
            line += (
                f" It leaks {side} {reference.defense} ({gap}; {apart}), at {clean_gap} clean and "
                f"{_points(d.robust[key] - reference.robust[key])} robust accuracy."
            )
        lines.append(line)
    return lines


def _points(difference: float) -> str:
    return f"{100 * difference:+.1f} points"


def _privacy_tradeoff(
    defenses: list[DefenseSummary], norm: str, eps: float, styles: dict[str, Style]
) -> list[Block]:
    """The three-way trade-off (privacy, clean, robust) when two or more defenses have privacy figures."""
    text = privacy_tradeoff_text(defenses, norm, eps)
    measure = leakage_measure(defenses)
    if not text or measure is None:
        return []
    signal, name, chance = measure
    key = budget_key(norm, eps)
    points = {
        d.defense: PrivacyPoint(d.clean_accuracy, d.robust[key], *_leakage(d.privacy[signal], signal))
        for d in defenses
        if d.privacy and key in d.robust
    }
    png = privacy_tradeoff_png(points, styles, budget=budget_name(norm, eps), measure=name, chance=chance,
                               rate=signal == "lira")  # fmt: skip
    return [
        Heading("Privacy against robustness"),
        Text(PRIVACY_TRADEOFF),
        Image("privacy_tradeoff.png", png, "Clean vs robust accuracy coloured by membership leakage"),
        *(Text(line) for line in text),
    ]


def report_budgets(cells: list[CellSummary], report_eps: float | None) -> dict[str, float]:
    """Per attacked norm, the budget the trade-off chart and the examples show.

    That is ``report_eps`` where the norm's grid has it; a norm whose grid lacks it (ℓ2 next to an ℓ∞
    ``report_eps``) shows the middle of its own grid, the spec's default rule.
    """
    grids: dict[str, list[float]] = {}
    for norm, eps in budgets(cells):
        grids.setdefault(norm, []).append(eps)
    return {
        norm: next(
            (e for e in grid if report_eps is not None and math.isclose(e, report_eps)), grid[len(grid) // 2]
        )
        for norm, grid in grids.items()
    }


def _tradeoff_panels(
    cells: list[CellSummary], clean: dict[str, float]
) -> list[tuple[str, float, dict[str, tuple[float, float]]]]:
    """A trade-off panel per attacked budget: each defense's (clean, robust) accuracy there."""
    return [
        (
            norm,
            eps,
            {c.defense: (clean[c.defense], c.robust_accuracy) for c in _cells_at_budget(cells, norm, eps)},
        )
        for norm, eps in budgets(cells)
    ]


def _families(defenses: list[DefenseSummary]) -> dict[str, list[str]]:
    """Defenses a sweep expanded from one spec entry, in sweep order: drawn as a trade-off curve."""
    families: dict[str, list[str]] = {}
    for d in defenses:
        families.setdefault(d.family, []).append(d.defense)
    return {family: members for family, members in families.items() if len(members) > 1}


def _curves(
    cells: list[CellSummary], clean: dict[str, float], shown: dict[str, float]
) -> list[tuple[str, float, dict[str, list[tuple[float, float]]], dict[str, float]]]:
    """Per norm, each defense's robust accuracy by budget, and its clean accuracy, drawn at ε=0.

    A relative budget (dB) has no zero perturbation on its axis (it lies at infinitely many dB below the
    input): its panel has no clean accuracies.
    """
    panels = []
    for norm, eps in shown.items():
        curves: dict[str, list[tuple[float, float]]] = {}
        for c in sorted((c for c in cells if c.norm == norm), key=lambda c: c.eps):
            curves.setdefault(c.defense, []).append((c.eps, c.robust_accuracy))
        zero = GEOMETRY[norm] == norm
        panels.append((norm, eps, curves, {d: clean[d] for d in curves} if zero else {}))
    return panels


def _examples(
    store: Store,
    meta: dict[str, Any],
    cells: list[CellSummary],
    styles: dict[str, Style],
    norm: str,
    eps: float,
) -> list[Block]:
    """The example grid at one budget: a row per defense, captioned with its predictions; for audio, a
    player for each clean and adversarial clip too."""
    classes = meta.get("classes") or []

    def name(label: int) -> str:
        return str(classes[label]) if 0 <= label < len(classes) else str(label)

    rows: dict[str, list[Example]] = {}
    for cell in _cells_at_budget(cells, norm, eps):
        cell_id = cell.cell
        samples = {s["idx"]: s for s in store.samples(cell_id)}
        stored = store.examples(cell_id)
        chosen = across_classes([samples[i]["label"] for i, _, _ in stored], EXAMPLES_PER_DEFENSE)
        pairs = [stored[k] for k in chosen]
        if pairs:
            rows[cell.defense] = [
                Example(
                    clean,
                    adversarial,
                    f"{name(samples[i]['clean_pred'])} → {name(samples[i]['adv_pred'])}",
                    broken=samples[i]["adv_pred"] != samples[i]["label"],
                )
                for i, clean, adversarial in pairs
            ]
    if not rows:
        return [Text("No examples were stored for this run.", muted=True)]
    domain = meta.get("domain", "image")
    bounds = tuple(meta.get("bounds", (0.0, 1.0)))
    png = examples_png(
        rows, styles, domain=domain, bounds=bounds, title=f"Examples at {budget_name(norm, eps)}"
    )
    layout = {
        "audio": "clean waveform grey, adversarial in colour",
        "tabular": "a bar per feature, how far the attack moved it (adversarial − clean)",
    }.get(domain, "clean left, adversarial right")
    caption = (
        f"Stored test samples per defense at {budget_name(norm, eps)}, taken in turn from each class: "
        f"{layout}. Captions give the clean → adversarial prediction; wrong predictions are in vermillion."
    )
    blocks: list[Block] = [
        Image("examples.png", png, f"Adversarial examples at {budget_name(norm, eps)}", caption)
    ]
    if domain == "audio":
        rate = int(meta.get("sample_rate") or 8000)
        first = {defense: examples[0] for defense, examples in rows.items()}
        blocks.append(
            Image(
                "spectrograms.png",
                spectrograms_png(
                    first, styles, sample_rate=rate, title=f"Spectrograms at {budget_name(norm, eps)}"
                ),
                "Spectrograms of clean and adversarial audio and of the perturbation",
                "The first example per defense: clean, adversarial and the perturbation alone, on one dB "
                "scale: where in time and frequency the attack put its energy, and how loud it is.",
            )
        )
        blocks += [
            _players(defense, f"example-{d}-{i}", example, rate)
            for d, (defense, examples) in enumerate(rows.items())
            for i, example in enumerate(examples)
        ]
    return blocks


LEARNED = (
    "Per defense and budget (rows), what each generator learned (columns): fitted on the training split "
    "against the model it attacks (as deployed, or through the adaptive view its label names), it is {what}. "
    "How often it succeeded is in its row of the stage tables above."
)
LEARNED_WHAT = {
    "image": (
        "what every test image gets, drawn at its own size in pixels on the data's bounds, before any random "
        "transformation the generator applies when it pastes it"
    ),
    "audio": (
        "the waveform every test clip gets, drawn on its own scale: each clip hears it scaled to that clip's "
        "own budget"
    ),
}


def _learned(
    store: Store, meta: dict[str, Any], cells: list[CellSummary], styles: dict[str, Style]
) -> list[Block]:
    """What the generators learned that can be shown (a universal patch, a universal perturbation), at
    every budget: a patch's size is part of what a budget means."""
    domain = meta.get("domain", "image")
    plane = meta.get("input_shape", [])[-2:] if domain == "image" else []
    rows: list[tuple[str, str, list[Learned]]] = []
    sizes: dict[str, list[str]] = {}  # per budget, for the caption: the figure's text is not searchable
    for cell in cells:
        shown = []
        for position, values in store.learned(cell.cell).items():
            attack, size = cell.attacks[position].attack, _learned_size(values, plane)
            shown.append(Learned(values, attack if size is None else f"{attack}\n{size}"))
            if size is not None:
                sizes.setdefault(budget_name(cell.norm, cell.eps), []).append(size)
        if shown:
            label = f"{cell.defense}\n{budget_name(cell.norm, cell.eps)}"
            rows.append((label, styles[cell.defense].color, shown))
    if not rows:
        return []
    bounds = tuple(meta.get("bounds", (0.0, 1.0)))
    png = learned_png(rows, domain=domain, bounds=bounds, title="What the generators learned")
    caption = LEARNED.format(what=LEARNED_WHAT.get(domain, LEARNED_WHAT["image"]))
    if sizes:
        caption += (
            " Sizes: " + "; ".join(f"{b}: {', '.join(dict.fromkeys(s))}" for b, s in sizes.items()) + "."
        )
    return [
        Heading("What the generators learned", level=3),
        Image("learned.png", png, "What the generators learned", caption),
    ]


def _learned_size(values: np.ndarray, plane: list[int]) -> str | None:
    """A learned image's size in pixels and its share of the input's area; None for anything else."""
    if values.ndim < 3 or len(plane) != 2:
        return None
    height, width = values.shape[-2:]
    return f"{height}×{width} px, {percent(height * width / (plane[0] * plane[1]))} of the image"


def _made_examples(store: Store, runs: list[UnrestrictedSummary], meta: dict[str, Any]) -> list[Block]:
    """The first made inputs of each run beside what each was made from: a grid of images, captioned with
    the model's and the listener's answers; for audio, players (the carrier, the made clip, and the
    difference raised to be audible)."""
    classes = meta.get("classes") or []

    def name(label: int) -> str:
        return str(classes[label]) if 0 <= label < len(classes) else str(label)

    rows: dict[tuple[str, str], list[Example]] = {}
    for run in runs:
        answers = {row["idx"]: row for row in store.unrestricted(run.defense, run.attack)}
        made = []
        for idx, source, example in store.unrestricted_examples(run.defense, run.attack):
            row = answers[idx]
            hit = row["pred"] != row["label"] if run.source == "test" else row["pred"] == row["target"]
            was = name(row["label"] if run.source == "test" else row["carrier_pred"])
            caption = f"{was} → {name(row['pred'])} (listener {name(row['listener_pred'])})"
            made.append(Example(source, example, caption, broken=hit))
        if made:
            rows[run.defense, run.attack] = made
    if not rows:
        return []
    if meta.get("domain") == "audio":
        rate = int(meta.get("sample_rate") or 8000)
        return [
            _players(" · ".join(run), f"made-{r}-{i}", example, rate, ("carrier", "made"))
            for r, (run, examples) in enumerate(rows.items())
            for i, example in enumerate(examples[:2])
        ]
    bounds = tuple(meta.get("bounds", (0.0, 1.0)))
    grid = {"\n".join(run): made[:EXAMPLES_PER_DEFENSE] for run, made in rows.items()}
    png = examples_png(grid, defense_styles(list(grid)), domain="image", bounds=bounds, title="Made inputs")
    caption = (
        "Per defense and unrestricted attack, what each input was made from (left) and the made input "
        "(right); captions give the source's class → the model's answer, and the listener's; the model "
        "fooled is in vermillion."
    )
    return [Image("made.png", png, "Inputs made by unrestricted attacks", caption)]


def _level(example: Example) -> str:
    """The perturbation's peak relative to the clean clip's, in dB (what a ``db`` budget bounds)."""
    peak = float(np.abs(example.adversarial - example.clean).max())
    return (
        "none"
        if peak == 0
        else f"{20 * np.log10(peak / max(float(np.abs(example.clean).max()), 1e-10)):.1f} dB"
    )


def _players(
    title: str, stem: str, example: Example, rate: int, names: tuple[str, str] = ("clean", "adversarial")
) -> Players:
    """Players for the clip before and after the attack (called ``names``; files ``<stem>-<name>.wav``)
    and for the perturbation alone raised to the first clip's peak, so it can be heard at all; the title
    gets the caption and the perturbation's level."""
    delta = example.adversarial - example.clean
    peak = float(np.abs(delta).max())
    clips = [(names[0], names[0], example.clean), (names[1], names[1], example.adversarial)]
    if peak > 0:
        loud = delta * float(np.abs(example.clean).max()) / peak
        clips.append(("perturbation", "perturbation, amplified", loud))
    return Players(
        f"{title} · {example.caption} · perturbation {_level(example)}",
        tuple(Audio(f"{stem}-{kind}.wav", wav_bytes(clip, rate), label) for kind, label, clip in clips),
    )


def wav_bytes(waveform: Any, rate: int) -> bytes:
    """A mono 16-bit WAV of a waveform in [-1, 1] (scipy writes it; nothing hand-rolled)."""
    buffer = io.BytesIO()
    samples = np.clip(np.asarray(waveform, dtype=np.float64).reshape(-1), -1, 1)
    wavfile.write(buffer, rate, (samples * 32767).round().astype(np.int16))
    return buffer.getvalue()


def _cells_at_budget(cells: list[CellSummary], norm: str, eps: float) -> list[CellSummary]:
    return [c for c in cells if c.norm == norm and c.eps == eps]


def _facts(meta: dict[str, Any], cells: list[CellSummary], models: list[ModelSummary]) -> str:
    """One line: dataset, the models evaluated, seed, device, sample count, versions, date."""
    versions = meta.get("versions")
    if isinstance(versions, dict):
        versions = ", ".join(f"{k} {v}" for k, v in versions.items())
    sizes = "/".join(str(n) for n in sorted({c.n for c in cells}))
    named = list(dict.fromkeys(_model_name(m.description) for m in models if m.description))
    facts = [
        f"dataset {meta['dataset']}" if "dataset" in meta else None,
        f"model{'s' * (len(named) > 1)} {', '.join(named)}" if named else None,
        f"seed {meta['seed']}" if "seed" in meta else None,
        f"device {meta['device']}" if "device" in meta else None,
        _samples(meta.get("evaluated"), sizes),
        f"class order: {meta['class_order']}" if meta.get("class_order") else None,
        versions,
        _date(meta.get("finished_at") or meta.get("started_at")),
    ]
    return " · ".join(f for f in facts if f)


def _samples(evaluated: dict[str, Any] | None, sizes: str) -> str | None:
    """Which test samples the cells scored: all of them, or a draw (how, and from how many)."""
    if evaluated and evaluated.get("indices"):
        return f"{evaluated['samples']:,} of {evaluated['of']:,} test samples, {evaluated['rule']}"
    return f"{sizes} test samples" if sizes else None


MODELS = (
    "What each row evaluated, as the run recorded it: the user's model as given (its architecture, the "
    "sha256 of the architecture's file and of the weights, its constructor parameters and the input "
    "normalization applied inside it), or the architecture advsec trained, the defense, the training "
    "settings and the model cache key."
)

SOURCES = {
    "checkpoint": "a checkpoint",
    "in memory": "a model handed over in memory (advsec.evaluate)",
    "fine-tuned": "a checkpoint fine-tuned by advsec",
    "trained": "trained by advsec",
}


def model_text(model: ModelSummary) -> str:
    """One model's description (:func:`advsec.runtime.describe_model`) as a sentence or three."""
    d = model.description
    defense = d.get("defense")
    under = f" under {_plugin(defense)}" if defense else ", evaluated as given"
    parts = [f"{model.defense}: {SOURCES.get(d.get('source'), d.get('source'))}{under}."]
    architecture = f"Architecture {d.get('architecture')}"
    if d.get("architecture_sha256"):
        architecture += f" (sha256 {d['architecture_sha256']})"
    if d.get("model_params"):
        architecture += ", params " + " ".join(f"{k}={v}" for k, v in sorted(d["model_params"].items()))
    parts.append(architecture + ".")
    if d.get("weights"):
        parts.append(f"Weights {d['weights']} (sha256 {d.get('weights_sha256')}).")
    elif d.get("weights_fingerprint"):
        parts.append(f"Weights fingerprint {d['weights_fingerprint']} (sha256 of its class and state dict).")
    elif str(d.get("architecture", "")).endswith(".pt2"):
        parts.append("Weights inside the archive.")
    if d.get("source") != "trained":
        parts.append(f"Normalization: {_normalization(d.get('normalization'))}.")
    if training := d.get("training"):
        settings = ", ".join(f"{k} {v}" for k, v in training.get("train", {}).items())
        cached = " (loaded from the cache)" if training.get("cached") else ""
        parts.append(
            f"Training: {settings}; seed {training.get('seed')}; model cache key {training.get('cache_key')}"
            f"{cached}."
        )
    return " ".join(parts)


def _plugin(defense: dict[str, Any]) -> str:
    return " ".join([str(defense.get("name")), *(f"{k}={v}" for k, v in sorted(defense["params"].items()))])


def _normalization(declared: dict[str, Any] | None) -> str:
    """The normalization applied inside a user's model, as declared."""
    if not declared:
        return "none declared (the model gets the data's own values)"
    return ", ".join(f"{k} {'not declared' if v is None else list(v)}" for k, v in declared.items())


def _model_name(description: dict[str, Any]) -> str:
    """A model's short name for the facts line: its architecture, its file's name for a file's."""
    architecture = str(description.get("architecture"))
    file, colon, name = architecture.rpartition(":")
    short = f"{Path(file).name}:{name}" if colon and file.endswith(".py") else Path(architecture).name
    if description.get("source") == "checkpoint":
        return short
    return f"{short} ({description.get('source')})"


def _date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return value
