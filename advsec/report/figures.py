"""The report's figures, drawn off-screen with matplotlib and returned as PNG bytes.

Figures are built as bare ``matplotlib.figure.Figure`` objects rather than through pyplot: nothing is
registered in pyplot's global figure list, so there is nothing to close and no GUI backend to avoid.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: never open a window, even if a caller uses pyplot

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

from advsec.results import ReplaySummary

# Okabe & Ito's colour-blind-safe palette, yellow last because it is faint on white.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")
DPI = 110
MUTED = "#777777"
BROKEN = "#D55E00"  # caption colour of an example the attack turned into a mistake
NORM_NAMES = {"linf": "ℓ∞", "l2": "ℓ2", "l1": "ℓ1", "db": "loudness", "snr": "SNR"}


@dataclass(frozen=True)
class Style:
    """How one defense is drawn in every figure, so a colour means the same defense throughout."""

    color: str
    marker: str


@dataclass(frozen=True)
class Example:
    """One clean/adversarial pair with its caption (``clean prediction → adversarial prediction``)."""

    clean: np.ndarray
    adversarial: np.ndarray
    caption: str
    broken: bool


def defense_styles(defenses: Sequence[str]) -> dict[str, Style]:
    """A colour and marker per defense, in the given order; the pair only repeats after 8 × 8 defenses."""
    return {
        d: Style(PALETTE[i % len(PALETTE)], MARKERS[(i // len(PALETTE) + i) % len(MARKERS)])
        for i, d in enumerate(defenses)
    }


def family_styles(styles: dict[str, Style], families: dict[str, list[str]]) -> dict[str, Style]:
    """Members of a sweep share their first member's colour, each with its own marker: one curve, one hue."""
    out = dict(styles)
    for members in families.values():
        for i, member in enumerate(members):
            out[member] = Style(styles[members[0]].color, MARKERS[i % len(MARKERS)])
    return out


# The x-axis of a norm's robust-accuracy curve; relative budgets are levels in dB (larger: quieter).
NORM_AXES = {
    "db": "D: perturbation peak, dB below the input's peak",
    "snr": "signal-to-noise ratio (dB)",
}


def budget_name(norm: str, eps: float) -> str:
    """``ℓ∞ ε=8/255`` style (fractions of 255 read better than their long decimals); ``−30 dB`` (the
    perturbation's peak below the input's) and ``SNR 30 dB`` for the relative audio budgets."""
    if norm == "db":
        return f"−{eps:g} dB"
    if norm == "snr":
        return f"SNR {eps:g} dB"
    value = f"{eps:g}"
    steps = eps * 255
    if len(value) > 6 and abs(steps - round(steps)) < 1e-6:
        value = f"{round(steps)}/255"
    return f"{NORM_NAMES.get(norm, norm)} ε={value}"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points, maximizing both coordinates, in input order.

    A point is dominated when another is at least as good in both coordinates and better in one, so
    identical points are all kept.
    """
    return [
        i
        for i, (x, y) in enumerate(points)
        if not any(ox >= x and oy >= y and (ox > x or oy > y) for ox, oy in points)
    ]


def tradeoff_png(
    panels: Sequence[tuple[str, float, dict[str, tuple[float, float]]]],
    styles: dict[str, Style],
    families: dict[str, list[str]] | None = None,
) -> bytes:
    """Clean (x) against robust (y) accuracy, one panel per ``(norm, eps, {defense: (clean, robust)})``,
    three to a row (two when there are four), each with its Pareto frontier.

    Each of ``families`` (a swept parameter's defenses, in sweep order) is joined by a line: the
    trade-off curve that parameter traces.
    """
    fig, axes = _panels(len(panels), width=5.2, height=4.2, columns=2 if len(panels) == 4 else 3)
    for ax, (norm, eps, points) in zip(axes, panels, strict=True):
        for family, members in (families or {}).items():
            curve = [points[m] for m in members if m in points]
            ax.plot([100 * c for c, _ in curve], [100 * r for _, r in curve], color=styles[members[0]].color,
                    linewidth=1.2, alpha=0.6, zorder=1, label=f"{family} sweep")  # fmt: skip
        names = list(points)
        xy = [(100 * clean, 100 * robust) for clean, robust in points.values()]
        front = sorted((xy[i] for i in pareto_front(xy)), key=lambda p: (p[0], -p[1]))
        for name, (x, y) in zip(names, xy, strict=True):
            style = styles[name]
            ax.scatter(x, y, color=style.color, marker=style.marker, s=60, zorder=2, edgecolor="white")
        ax.set_title(f"Clean vs robust accuracy at {budget_name(norm, eps)}", fontsize=10)
        ax.set_xlabel("Clean accuracy (%)")
        ax.set_ylabel("Robust accuracy (%)")
        ax.margins(0.18)
        ax.set_xlim(*_span(*ax.get_xlim()))
        ax.set_ylim(*_span(*ax.get_ylim()))
        _label_points(ax, names, xy, styles)
        # The frontier bounds the region it dominates: from the left edge, down its steps, to the floor.
        xs = [ax.get_xlim()[0], *(x for x, _ in front)]
        ys = [*(y for _, y in front), ax.get_ylim()[0]]
        ax.step(
            xs, ys, where="post", color=MUTED, linestyle="--", linewidth=1, label="Pareto frontier", zorder=1
        )
        ax.legend(loc="lower left", fontsize=8, frameon=False)
    return _png(fig)


@dataclass(frozen=True)
class PrivacyPoint:
    """One defense in the three-way trade-off: accuracies, and a membership-leakage figure with its 95 %
    interval (a LiRA TPR at low FPR or a loss-threshold AUC), all as fractions."""

    clean: float
    robust: float
    leakage: float
    low: float
    high: float


LEAKAGE = matplotlib.colormaps["plasma"]  # sequential and colour-blind safe: dark = little leakage


def privacy_tradeoff_png(
    points: dict[str, PrivacyPoint],
    styles: dict[str, Style],
    *,
    budget: str,
    measure: str,
    chance: float,
    rate: bool = True,
) -> bytes:
    """Privacy, clean and robust accuracy at once, in two panels.

    Left: clean (x) against robust (y) accuracy at ``budget``, each defense's marker filled with the colour
    of its leakage ``measure`` (a colour bar gives the scale). Right: that leakage (x, with its interval)
    against robust accuracy, a dotted line at ``chance`` (what an attacker guessing blindly scores). A
    ``rate`` (a TPR) is drawn in percent, anything else (an AUC) as it is.
    """
    unit, factor = (" (%)", 100.0) if rate else ("", 1.0)
    fig, (left, right) = _panels(2, width=5.4, height=4.2)
    names = list(points)
    leak = [factor * p.leakage for p in points.values()]
    scale = Normalize(min([*leak, factor * chance]), max([*leak, factor * chance * 1.001 + 1e-9]))
    xy = [(100 * p.clean, 100 * p.robust) for p in points.values()]
    for name, (x, y), value in zip(names, xy, leak, strict=True):
        left.scatter(x, y, color=LEAKAGE(scale(value)), marker=styles[name].marker, s=110, zorder=2,
                     edgecolor=styles[name].color, linewidth=1.6)  # fmt: skip
    left.set_title(f"Clean vs robust accuracy at {budget}, coloured by leakage", fontsize=10)
    left.set_xlabel("Clean accuracy (%)")
    left.set_ylabel("Robust accuracy (%)")
    left.margins(0.18)
    left.set_xlim(*_span(*left.get_xlim()))
    left.set_ylim(*_span(*left.get_ylim()))
    _label_points(left, names, xy, styles)
    bar = fig.colorbar(ScalarMappable(scale, LEAKAGE), ax=left, shrink=0.9)
    bar.set_label(f"{measure}{unit}", fontsize=8)
    for name, p, value in zip(names, points.values(), leak, strict=True):
        style = styles[name]
        right.errorbar(value, 100 * p.robust, xerr=[[value - factor * p.low], [factor * p.high - value]],
                       color=style.color, marker=style.marker, markersize=7, capsize=3, linestyle="none",
                       zorder=2)  # fmt: skip
    right.axvline(factor * chance, color=MUTED, linestyle=":", linewidth=1)
    right.annotate("chance", (factor * chance, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                   textcoords="offset points", fontsize=8, color=MUTED)  # fmt: skip
    right.set_title(f"Robust accuracy at {budget} vs leakage (95 % intervals)", fontsize=10)
    right.set_xlabel(f"{measure}{unit}")
    right.set_ylabel("Robust accuracy (%)")
    right.margins(0.18)
    right.set_ylim(*_span(*right.get_ylim()))
    _label_points(right, names, [(v, 100 * p.robust) for v, p in zip(leak, points.values(), strict=True)],
                  styles)  # fmt: skip
    return _png(fig)


# Where a point's label may go, in points from it: right above, right below, left above, left below.
LABEL_SPOTS = ((6, 5, "left"), (6, -13, "left"), (-6, 5, "right"), (-6, -13, "right"))


def _label_points(
    ax: Axes, names: list[str], xy: list[tuple[float, float]], styles: dict[str, Style]
) -> None:
    """Name each point beside it, in the first spot whose label box overlaps no label placed before."""
    to_pixels, per_point = ax.transData.transform, DPI / 72
    taken: list[tuple[float, float, float, float]] = []
    for name, (x, y) in zip(names, xy, strict=True):
        px, py = to_pixels((x, y))
        width, height = 5.5 * len(name) * per_point, 11 * per_point  # a 9-point label, roughly
        for dx, dy, align in LABEL_SPOTS:
            left = px + dx * per_point - (width if align == "right" else 0)
            box = (left, py + dy * per_point, left + width, py + dy * per_point + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                break
        taken.append(box)
        ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", ha=align, fontsize=9,
                    color=styles[name].color)  # fmt: skip


def _span(low: float, high: float, least: float = 5.0) -> tuple[float, float]:
    """Axis limits in percent: at least ``least`` points wide (all defenses at 0 % still get an axis), and
    never past the −1 to 101 % accuracy can reach."""
    middle, half = (low + high) / 2, max(high - low, least) / 2
    return max(middle - half, -1.0), min(middle + half, 101.0)


def robust_vs_eps_png(
    panels: Sequence[tuple[str, float, dict[str, list[tuple[float, float]]], dict[str, float]]],
    styles: dict[str, Style],
    chance: float | None,
) -> bytes:
    """Robust accuracy against ε, one panel per ``(norm, report eps, {defense: [(ε, robust)]}, {defense:
    clean})``; the report's ε is marked by a dotted line.

    A defense attacked at several budgets is a line through them from its clean accuracy at ε=0 (a panel
    without clean accuracies, for a relative budget, has no ε=0). One attacked budget is a point, and its
    clean accuracy a hollow marker at ε=0: a line between them would draw a curve nothing measured.
    """
    fig, axes = _panels(len(panels), width=5.2, height=3.8)
    for ax, (norm, report_eps, curves, clean) in zip(axes, panels, strict=True):
        for name, curve in curves.items():
            style = styles[name]
            start = [(0.0, clean[name])] if name in clean else []
            joined = len(curve) > 1
            eps, accuracy = zip(*(start + curve if joined else curve), strict=True)
            ax.plot(eps, [100 * a for a in accuracy], color=style.color, marker=style.marker, markersize=5,
                    linestyle="-" if joined else "none", label=name)  # fmt: skip
            if start and not joined:
                ax.plot([0.0], [100 * clean[name]], color=style.color, marker=style.marker, markersize=5,
                        markerfacecolor="none", linestyle="none")  # fmt: skip
        ax.axvline(report_eps, color=MUTED, linestyle=":", linewidth=1)
        if chance is not None:
            ax.axhline(100 * chance, color=MUTED, linestyle="--", linewidth=0.8)
            ax.annotate("chance", (1, 100 * chance), xycoords=("axes fraction", "data"), xytext=(-2, 3),
                        textcoords="offset points", ha="right", fontsize=8, color=MUTED)  # fmt: skip
        ax.set_title(f"Robust accuracy vs {NORM_NAMES.get(norm, norm)} budget", fontsize=10)
        ax.set_xlabel(NORM_AXES.get(norm, f"ε ({NORM_NAMES.get(norm, norm)}, input units)"))
        ax.set_ylabel("Robust accuracy (%)")
        ax.set_ylim(-3, 103)
        ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def certified_png(
    certified: dict[str, tuple[list[float], int]],
    attacked: dict[str, list[tuple[float, float]]],
    styles: dict[str, Style],
) -> bytes:
    """Certified accuracy against ℓ2 radius, a step curve per defense, beside its attacked accuracy.

    ``certified`` maps a defense to the certified radii of its correctly classified samples and its sample
    count: accuracy at radius r is the share with radius ≥ r. ``attacked`` maps it to ``(ε, robust
    accuracy)`` under ℓ2 attacks on the deployed model, drawn dotted: what the attacks achieved.
    """
    fig, (ax,) = _panels(1, width=6.4, height=4.0)
    reach = max([1.0, *(1.1 * r for radii, _ in certified.values() for r in radii)])
    reach = max([reach, *(eps for curve in attacked.values() for eps, _ in curve)])
    for name, (radii, total) in certified.items():
        style = styles[name]
        ordered = sorted(radii)
        # Past the j-th smallest radius, len(ordered) − j samples are still certified.
        accuracy = [100 * (len(ordered) - j) / total for j in range(len(ordered) + 1)]
        ax.step([0.0, *ordered, reach], [*accuracy, 0.0], where="post", color=style.color, linewidth=1.8,
                label=f"{name}: certified")  # fmt: skip
    for name, curve in attacked.items():
        eps, accuracy = zip(*curve, strict=True)
        style = styles[name]
        ax.plot(eps, [100 * a for a in accuracy], color=style.color, marker=style.marker, markersize=5,
                linestyle=":", label=f"{name}: attacked (empirical)")  # fmt: skip
    ax.set_title("Certified accuracy vs ℓ2 radius (randomized smoothing)", fontsize=10)
    ax.set_xlabel("radius r (ℓ2, input units)")
    ax.set_ylabel("Accuracy (%)")
    ax.set_xlim(0, reach)
    ax.set_ylim(-3, 103)
    ax.legend(loc="lower left", fontsize=8, frameon=False)  # the curves start high and fall to the right
    return _png(fig)


REPLAY_MODES = {
    "snapshot": "White-box attack on a snapshot",
    "eot": "Adaptive attack (EOT) on the live model",
    "queries": "Query attack on the live model",
}


def replay_png(replays: list[ReplaySummary], styles: dict[str, Style]) -> bytes:
    """Replay success against the delay since crafting, a panel per crafting mode, a line per defense and
    attack, with its Wilson 95 % band; the delay axis is logarithmic past 1 so that Δ = 0 shows."""
    modes = [m for m in REPLAY_MODES if any(r.mode == m for r in replays)]
    attacks = list(dict.fromkeys(r.attack for r in replays))
    fig, axes = _panels(len(modes), width=4.8, height=3.8)
    for ax, mode in zip(axes, modes, strict=True):
        for r in (r for r in replays if r.mode == mode):
            delays = sorted(r.replay)
            success = [100 * r.replay[d].success for d in delays]
            low, high = zip(*(r.replay[d].interval for d in delays), strict=True)
            style = styles[r.defense]
            label = r.defense if len(attacks) == 1 else f"{r.defense} ({r.attack})"
            dashes = LINESTYLES[attacks.index(r.attack) % len(LINESTYLES)]
            ax.plot(delays, success, color=style.color, marker=style.marker, markersize=4, linestyle=dashes,
                    label=label)  # fmt: skip
            ax.fill_between(delays, [100 * v for v in low], [100 * v for v in high], color=style.color,
                            alpha=0.15, linewidth=0)  # fmt: skip
        ax.set_xscale("symlog", linthresh=1)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.set_title(REPLAY_MODES[mode], fontsize=10)
        ax.set_xlabel("Δ: queried samples between crafting and replay")
        ax.set_ylim(-3, 103)
        ax.legend(fontsize=7, frameon=False)
    axes[0].set_ylabel("Replay success (% of samples misclassified)")
    return _png(fig)


def examples_png(
    rows: dict[str, list[Example]],
    styles: dict[str, Style],
    *,
    domain: str,
    bounds: tuple[float, float],
    title: str,
) -> bytes:
    """A grid with a row per defense and one clean/adversarial pair per column.

    Images show clean (left) and adversarial (right) side by side in one panel, greyscale on the dataset's
    bounds; audio overlays the two waveforms; a row of features shows how far the attack moved each one.
    """

    def draw(ax: Axes, example: Example, color: str) -> None:
        if domain == "audio":
            _draw_waveforms(ax, example, color, bounds)
        elif domain == "tabular":
            _draw_feature_changes(ax, example, color)
        else:
            _draw_images(ax, example, bounds)
        ax.set_title(example.caption, fontsize=8, color=BROKEN if example.broken else "#222222")

    return _grid([(d, styles[d].color, pairs) for d, pairs in rows.items()], draw, title, width=2.0)


@dataclass(frozen=True)
class Learned:
    """What one generator learned (a universal patch, a universal perturbation), with its caption."""

    values: np.ndarray
    caption: str


def learned_png(
    rows: list[tuple[str, str, list[Learned]]], *, domain: str, bounds: tuple[float, float], title: str
) -> bytes:
    """A grid with a row per ``(label, colour, learned)``, e.g. a defense at one budget, and one generator
    per column: images as they are pasted, on the dataset's bounds; audio as a waveform on its own scale."""

    def draw(ax: Axes, learned: Learned, color: str) -> None:
        if domain == "audio":
            wave = np.ravel(learned.values)
            ax.plot(wave, color=color, linewidth=0.6)
            peak = float(np.abs(wave).max()) or 1.0
            ax.set_ylim(-1.1 * peak, 1.1 * peak)
        else:
            height, width = _as_image(learned.values).shape[:2]
            _draw_image(ax, learned.values, bounds, (0, width / height, 1, 0))
            # A frame: a patch's pixels at the upper bound would melt into the white page.
            ax.add_patch(Rectangle((0, 0), width / height, 1, fill=False, edgecolor=MUTED, linewidth=0.8))
        ax.set_title(learned.caption, fontsize=8, color="#222222")

    return _grid(rows, draw, title, width=1.6 if domain != "audio" else 2.6)


def _grid(
    rows: list[tuple[str, str, list[Any]]],
    draw: Callable[[Axes, Any, str], None],
    title: str,
    *,
    width: float,
) -> bytes:
    """A figure with a row per ``(label, colour, items)``, the label in the colour at its left, each item
    drawn by ``draw(ax, item, colour)`` in a panel ``width`` inches wide, without ticks or frames."""
    columns = max(len(items) for _, _, items in rows)
    fig = Figure(figsize=(width * columns + 0.6, 1.35 * len(rows) + 0.5), layout="constrained")
    fig.get_layout_engine().set(wspace=0.08)  # separate the panels more than the two halves of a pair
    grid = fig.subplots(len(rows), columns, squeeze=False)
    for axes, (label, color, items) in zip(grid, rows, strict=True):
        axes[0].set_ylabel(label, color=color, fontsize=9)
        for ax, item in zip(axes, items, strict=False):
            draw(ax, item, color)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


# Viridis (colour-blind safe), with exact silence (log of zero power) drawn as its quietest colour.
QUIET = matplotlib.colormaps["viridis"].with_extremes(bad=matplotlib.colormaps["viridis"](0.0))


def spectrograms_png(
    rows: dict[str, Example], styles: dict[str, Style], *, sample_rate: int, title: str
) -> bytes:
    """Per defense, one example's spectrograms: clean, adversarial, and the perturbation alone, all on one
    dB scale, so it shows where in time and frequency the attack put its energy and how loud it is."""
    fig = Figure(figsize=(10.5, 2.3 * len(rows) + 0.6), layout="constrained")
    grid = fig.subplots(len(rows), 3, squeeze=False)
    clips = [(e.clean, e.adversarial, e.adversarial - e.clean) for e in rows.values()]
    top = 10 * np.log10(max(float(np.square(c).max()) for clip in clips for c in clip[:2]) + 1e-12)
    image = None
    for axes, (defense, example), clip in zip(grid, rows.items(), clips, strict=True):
        for ax, wave, name in zip(axes, clip, ("clean", "adversarial", "perturbation"), strict=True):
            with np.errstate(divide="ignore"):  # silence has no level: drawn in the quietest colour
                *_, image = ax.specgram(np.ravel(wave), NFFT=256, Fs=sample_rate, noverlap=128, cmap=QUIET,
                                        scale="dB", vmin=top - 90, vmax=top)  # fmt: skip
            ax.set_title(f"{defense}: {name}" + (f" ({example.caption})" if name == "adversarial" else ""),
                         fontsize=8, color=styles[defense].color)  # fmt: skip
            ax.set_xlabel("time (s)", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0].set_ylabel("frequency (Hz)", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=grid[:, -1].tolist(), label="power (dB)", shrink=0.9)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def _draw_images(ax: Axes, example: Example, bounds: tuple[float, float]) -> None:
    """Clean and adversarial side by side on one axis, so the caption sits over the pair."""
    left = 0.0
    for x in (example.clean, example.adversarial):
        height, width = _as_image(x).shape[:2]
        width /= height
        _draw_image(ax, x, bounds, (left, left + width, 1, 0))
        left += width * 1.06  # a gap narrower than the one between pairs
    ax.set_xlim(0, left - width * 0.06)
    ax.set_ylim(1, 0)


def _draw_image(
    ax: Axes, x: np.ndarray, bounds: tuple[float, float], extent: tuple[float, float, float, float]
) -> None:
    """One input-shaped array at ``extent``: greyscale on the bounds, or colour."""
    low, high = bounds
    image = _as_image(x)
    if image.ndim == 3:  # colour: imshow wants [0, 1]
        ax.imshow(((image - low) / (high - low)).clip(0, 1), extent=extent, interpolation="nearest")
    else:
        ax.imshow(image, cmap="gray", vmin=low, vmax=high, extent=extent, interpolation="nearest")


def _as_image(x: np.ndarray) -> np.ndarray:
    """(C, H, W) → (H, W) for one channel, (H, W, C) for three."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        x = x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)
    return x


def _draw_feature_changes(ax: Axes, example: Example, color: str) -> None:
    """Tabular features have no picture: a bar per feature of adversarial minus clean, around a zero line."""
    change = np.ravel(example.adversarial) - np.ravel(example.clean)
    ax.bar(np.arange(len(change)), change, width=1.0, color=color)
    ax.axhline(0, color=MUTED, linewidth=0.6)


def _draw_waveforms(ax: Axes, example: Example, color: str, bounds: tuple[float, float]) -> None:
    ax.plot(np.ravel(example.clean), color=MUTED, linewidth=0.6)
    ax.plot(np.ravel(example.adversarial), color=color, linewidth=0.6, alpha=0.8)
    ax.set_ylim(*bounds)


def _panels(
    count: int, *, width: float, height: float, columns: int | None = None
) -> tuple[Figure, list[Axes]]:
    """``count`` panels of ``width`` × ``height`` inches, in rows of ``columns`` (one row by default)."""
    columns = min(columns or count, count)
    rows = -(-count // columns)
    fig = Figure(figsize=(width * columns, height * rows), layout="constrained")
    grid = fig.subplots(rows, columns, squeeze=False).flatten()
    for spare in grid[count:]:
        spare.remove()
    axes = list(grid[:count])
    for ax in axes:
        ax.grid(color="#e5e5e5", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, list(axes)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()
