"""The report: built from a hand-made store, its printed numbers checked against counts done by hand."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from advsec.records import AttackRecord, CellResult, MembershipInference
from advsec.report import build_report, pareto_front
from advsec.results import wilson_interval
from advsec.store import Store

N = 20
LABELS = np.arange(N) % 10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SPEC = 'name = "demo"\n# budgets < 0.5 & cascade on\n[[threats]]\nnorm = "linf"\neps = [0.1, 0.3]\n'

# Per defense: the samples it gets wrong clean, then per budget the samples fgsm and then pgd break.
PLAN = {
    "standard": (
        {0, 1},
        {0.1: (set(range(2, 8)), set(range(8, 13))), 0.3: (set(range(2, 14)), set(range(14, 19)))},
    ),
    "pgd-at": ({0, 1, 2, 3}, {0.1: ({4}, {5, 6, 7}), 0.3: ({4, 5, 6}, {7, 8, 9, 10})}),
}


def make_cell(
    defense: str, eps: float, wrong: set[int], breaks: list[set[int]], shape: tuple[int, ...]
) -> CellResult:
    """A cell whose samples, attempts and examples agree: each attack breaks exactly the given samples."""
    clean_pred = np.where(np.isin(np.arange(N), list(wrong)), (LABELS + 1) % 10, LABELS)
    robust = clean_pred == LABELS
    adv_pred = clean_pred.copy()
    broken_by: list[str | None] = [None] * N
    records = []
    for name, broken in zip(["fgsm", "pgd"], breaks, strict=False):
        record = AttackRecord(
            name, name, {"steps": 10}, "none", forwards=3 * N, backwards=2 * N, wall_seconds=0.5
        )
        for i in np.flatnonzero(robust).tolist():  # a cascade attacks only the still-robust samples
            pred = (LABELS[i] + 3) % 10 if i in broken else LABELS[i]
            record.attempts.append((i, int(pred), eps, None))
            if i in broken:
                adv_pred[i], robust[i], broken_by[i] = pred, False, name
                record.broken += 1
            record.attacked += 1
        records.append(record)
    rng = np.random.default_rng(0)
    examples = []
    for i in range(3 if breaks else 0):
        clean = rng.uniform(0, 1, shape).astype(np.float32)
        examples.append(
            (i, clean, np.clip(clean + eps * rng.choice([-1, 1], shape), 0, 1).astype(np.float32))
        )
    return CellResult(
        cell=f"{defense}/{eps:g}",
        defense=defense,
        norm="linf" if breaks else "none",
        eps=eps,
        cascade=True,
        labels=LABELS,
        clean_pred=clean_pred,
        adv_pred=adv_pred,
        robust=robust,
        clean_single=clean_pred == LABELS,
        robust_single=robust,
        broken_by=broken_by,
        attacks=records,
        wall_seconds=1.25,
        examples=examples,
        privacy=[]
        if breaks
        else [MembershipInference("loss", N, N, (1 + PRIVACY[defense]) / 2, PRIVACY[defense], *ROC)],
    )


PRIVACY = {"standard": 0.05, "pgd-at": 0.25}  # membership-inference advantage measured in the clean cell
ROC = (0.55, 0.5, 0.6, 0.0, 0.0, 0.04, 0.02, 0.0, 0.06)  # AUC, TPR at 0.1 % and 1 % FPR, each with interval

# A training run whose overfitting guard fired three times: at epoch 1 on one answer for all, then on
# FGSM's sign (training started over from fresh weights each time), at epoch 3 on a drop (back to epoch 2).
GUARDED = [
    {"epoch": 1, "loss": 2.3, "check": 0.1, "restored": 0, "constant": True},
    {"epoch": 1, "loss": 1.0, "check": 0.02, "restored": 0, "overfit": True},
    {"epoch": 2, "loss": 0.8, "check": 0.6},
    {"epoch": 3, "loss": 0.7, "check": 0.1, "restored": 2},
]


def make_store(path: Path, domain: str, shape: tuple[int, ...]) -> Store:
    store = Store(path)
    store.set_meta(
        {
            "name": "demo run",
            "spec": SPEC,
            "dataset": "digits",
            "model": "mlp",
            "report_eps": 0.1,
            "bounds": [0.0, 1.0],
            "classes": [str(c) for c in range(10)],
            "domain": domain,
            "versions": {"advsec": "0.1.0", "torch": "2.13.0"},
            "seed": 0,
            "device": "cpu",
            "started_at": "2025-01-02T03:04:05+00:00",
            "finished_at": "2025-01-02T03:05:00+00:00",
        }
    )
    cells = []
    for defense, (wrong, grid) in PLAN.items():
        store.save_model(
            defense,
            {
                "family": defense,
                "name": defense,
                "params": {},
                "model_key": defense,
                "train_seconds": 12.5,
                "cached": 0,
                "stochastic": 0,
                "stateful": 0,
                "history": GUARDED if defense == "pgd-at" else [],
            },
        )
        cells.append(make_cell(defense, 0.0, wrong, [], shape))
        cells += [make_cell(defense, eps, wrong, list(breaks), shape) for eps, breaks in grid.items()]
    store.set_plan([c.cell for c in cells])
    for cell in cells:
        store.save_cell(cell)
    return store


@pytest.fixture
def built(tmp_path: Path) -> Iterator[Path]:
    store = make_store(tmp_path / "results.sqlite", "image", (1, 8, 8))
    try:
        yield build_report(store, tmp_path / "report")
    finally:
        store.close()


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts (header row first)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table as rows of cell texts, without the alignment row."""
    tables: list[list[list[str]]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append([cell.strip() for cell in line.strip("|").split(" | ")])
        previous = line
    return tables


def column(table: list[list[str]], row: str, header: str) -> str:
    return next(r for r in table[1:] if r[0] == row)[table[0].index(header)]


def test_report_files_are_self_contained(built: Path) -> None:
    page = built.read_text()
    assert built.name == "report.html"
    assert "standard" in page and "pgd-at" in page and "demo run" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4  # trade-off, robust vs ε, privacy against robustness (2 measured), examples
    assert all(base64.b64decode(image).startswith(PNG_SIGNATURE) for image in images)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//""", page)
    assert "# budgets &lt; 0.5 &amp; cascade on" in page  # the spec is shown, escaped
    for name in ("report.md", "tradeoff.png", "robust_vs_eps.png", "privacy_tradeoff.png", "examples.png"):
        assert (built.parent / name).stat().st_size > 0
    for name in ("tradeoff.png", "robust_vs_eps.png", "privacy_tradeoff.png", "examples.png"):
        assert (built.parent / name).read_bytes().startswith(PNG_SIGNATURE)
        assert f"]({name})" in (built.parent / "report.md").read_text()


def test_printed_accuracies_match_the_samples(built: Path) -> None:
    html_tables = Tables(built.read_text()).tables
    md_tables = markdown_tables((built.parent / "report.md").read_text())
    assert len(html_tables) == len(md_tables) == 1 + 4  # defenses, then one per attacked cell
    for tables in (html_tables, md_tables):
        defenses = tables[0]
        for defense, (wrong, grid) in PLAN.items():
            assert column(defenses, defense, "Clean") == f"{100 * (N - len(wrong)) / N:.1f}%"
            assert column(defenses, defense, "MI advantage (loss)") == f"{100 * PRIVACY[defense]:+.1f} pp"
            assert column(defenses, defense, "Flags") == "0"
            for eps, (fgsm, pgd) in grid.items():
                robust = N - len(wrong | fgsm | pgd)  # by hand: clean-correct and unbroken by both
                low, high = wilson_interval(robust, N)  # every robust accuracy with its interval
                shown = f"{100 * robust / N:.1f}% [{100 * low:.1f}%, {100 * high:.1f}%]"
                assert column(defenses, defense, f"ℓ∞ ε={eps:g}") == shown
        # standard at ε=0.1: fgsm attacks the 18 clean-correct samples, breaks 6; pgd the 12 left, breaks 5
        stages = tables[1]
        assert stages[1][1:5] == ["fgsm", "18", "6", "60.0%"]
        assert stages[2][1:5] == ["pgd", "12", "5", "35.0%"]


def test_audio_examples_are_drawn_as_waveforms_and_can_be_listened_to(tmp_path: Path) -> None:
    store = make_store(tmp_path / "results.sqlite", "audio", (1, 64))
    store.set_meta({"sample_rate": 8000})
    try:
        page = build_report(store, tmp_path / "report").read_text()
    finally:
        store.close()
    assert (tmp_path / "report" / "examples.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (tmp_path / "report" / "spectrograms.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "Spectrograms of clean and adversarial audio" in page
    players = re.findall(r'<audio controls preload="none" src="data:audio/wav;base64,([^"]+)"', page)
    assert len(players) == 2 * 3 * 3  # 2 defenses × 3 stored examples × (clean, adversarial, perturbation)
    rate, samples = wavfile.read(io.BytesIO(base64.b64decode(players[0])))
    assert rate == 8000 and samples.dtype == np.int16 and samples.shape == (64,)
    example = Store(tmp_path / "results.sqlite").examples("standard/0.1")[0][1]  # the first clean clip
    assert np.allclose(samples / 32767, example.reshape(-1), atol=1 / 32767)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "[adversarial](example-0-0-adversarial.wav)" in markdown
    assert (tmp_path / "report" / "example-0-0-adversarial.wav").read_bytes().startswith(b"RIFF")
    # the perturbation alone, raised to the clean clip's peak, and its level beside the players
    clean, adversarial = (Store(tmp_path / "results.sqlite").examples("standard/0.1")[0][k] for k in (1, 2))
    delta = (adversarial - clean).reshape(-1)
    _, heard = wavfile.read(tmp_path / "report" / "example-0-0-perturbation.wav")
    expected = delta * np.abs(clean).max() / np.abs(delta).max()
    assert np.allclose(heard / 32767, expected, atol=2 / 32767)
    level = 20 * np.log10(np.abs(delta).max() / np.abs(clean).max())
    assert f"perturbation {level:.1f} dB" in markdown


def test_tabular_examples_are_drawn_as_feature_changes(tmp_path: Path) -> None:
    # A row of features (Spambase's 57) has no picture; drawing it as one crashed the report after a run.
    store = make_store(tmp_path / "results.sqlite", "tabular", (57,))
    try:
        page = build_report(store, tmp_path / "report").read_text()
    finally:
        store.close()
    assert (tmp_path / "report" / "examples.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "a bar per feature, how far the attack moved it" in page


def test_pareto_front_keeps_exactly_the_non_dominated_points() -> None:
    points = [(1.0, 1.0), (2.0, 0.5), (0.5, 2.0), (0.9, 0.9), (2.0, 0.5), (1.0, 0.5), (0.5, 1.5)]
    # (0.9, 0.9) and (1, 0.5) lie under (1, 1); (0.5, 1.5) under (0.5, 2); ties on both coordinates stay.
    assert pareto_front(points) == [0, 1, 2, 4]
    assert pareto_front([]) == []
    assert pareto_front([(0.3, 0.3)]) == [0]


HOSTILE = "<script>alert(1)</script> & ../../x"  # markup, an ampersand and a path, as a label may hold


def make_hostile_store(path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The usual store plus a run name and a defense and attack labels holding ``HOSTILE``."""
    store = make_store(path, "image", (1, 8, 8))
    monkeypatch.setitem(PRIVACY, HOSTILE, 0.1)
    store.set_meta({"name": f"demo {HOSTILE}"})
    store.save_model(HOSTILE, {"family": HOSTILE, "name": "standard", "params": {}, "model_key": "h",
                               "train_seconds": 1.0, "cached": 0, "stochastic": 0, "stateful": 0,
                               "history": []})  # fmt: skip
    cells = [make_cell(HOSTILE, 0.0, {0}, [], (1, 8, 8))]
    cells += [make_cell(HOSTILE, eps, {0}, [{1, 2}, {3}], (1, 8, 8)) for eps in (0.1, 0.3)]
    for cell in cells:
        for record in cell.attacks:
            record.label = f"{record.name} {HOSTILE}"
        store.save_cell(cell)
    store.set_plan([row["cell"] for row in store.cells()] + [c.cell for c in cells])
    return store


def test_names_and_labels_are_escaped_in_the_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_hostile_store(tmp_path / "results.sqlite", monkeypatch)
    page = build_report(store, tmp_path / "report").read_text()
    assert HOSTILE not in page and "<script>alert" not in page
    assert page.count("<script>") == 1  # the page's own table-sorting script, nothing a label brought
    assert f"<title>demo {html.escape(HOSTILE)}</title>" in page
    assert "fgsm &lt;script&gt;alert(1)&lt;/script&gt; &amp; ../../x" in page  # an attack's label
    tables = Tables(page).tables  # and each reads back as the text it was
    assert HOSTILE in [row[0] for row in tables[0]]
    assert any(f"pgd {HOSTILE}" in row for table in tables[1:] for row in table)


def test_a_fired_overfitting_guard_is_reported(built: Path) -> None:
    page = built.read_text()
    fired = (
        "overfitting guard fired: held-out robust accuracy 10.0% at epoch 1, one answer for all, started "
        "over from fresh weights; held-out robust accuracy 2.0% at epoch 1, FGSM no longer hurting, started "
        "over from fresh weights; held-out robust accuracy 10.0% at epoch 3, restored epoch 2 at 60.0%"
    )
    assert fired in page
    assert page.count("overfitting guard fired") == 1


def test_a_generator_sits_beside_each_gradient_attack_with_its_break_even() -> None:
    from advsec.report.tables import generator_table
    from advsec.results import AttackSummary, CellSummary

    def stage(name: str, wall: float, fit: float | None, robust: float, backwards: int = 0) -> AttackSummary:
        return AttackSummary(attack=name, adaptive=False, robust_after=robust, robust_alone=robust,
                             attacked=100, broken=0, forwards=0, backwards=backwards, wall_seconds=wall,
                             targeted_success=None, targeted_interval=None, fit_seconds=fit,
                             fit_cached=False, escalation=None)  # fmt: skip

    def cell(defense: str, attacks: list[AttackSummary]) -> CellSummary:
        return CellSummary(cell=f"{defense}/linf/0.3", defense=defense, norm="linf", eps=0.3, n=100,
                           clean_accuracy=1.0, robust_accuracy=0.0, robust_interval=(0.0, 1.0),
                           clean_accuracy_single=1.0, robust_accuracy_single=0.0, naive_robust_accuracy=None,
                           unescalated_robust_accuracy=None, attacks=attacks, checks=[], privacy=[],
                           wall_seconds=4.1, forwards=0, backwards=800)  # fmt: skip

    attacks = [
        stage("advgan", 0.1, 10.0, 0.02),
        stage("pgd", 1.0, None, 0.0, 800),
        stage("square", 3.0, None, 0.1),
    ]
    table = generator_table([cell("standard", attacks)])
    # 10 s / (0.01 - 0.001) s per sample = 1,111; a query attack is no gradient attack to amortize against
    [row] = table.rows
    assert row[2:6] == ["advgan", "2.0%", "pgd", "0.0%"] and row[-2:] == ["10.0×", "1,111"]
    assert generator_table([cell("d", attacks[1:])]) is None


def test_a_models_warnings_are_in_the_report_the_terminal_and_the_json(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from advsec.cli import main

    store = make_store(tmp_path / "results.sqlite", "image", (1, 8, 8))
    warning = "no normalization declared: the model gets inputs in [0, 1]"
    description = {"source": "checkpoint", "architecture": "nets.py:Net", "defense": None}
    record = {"family": "standard", "name": "standard", "params": {}, "model_key": "k", "train_seconds": None,
              "cached": 1, "stochastic": 0, "stateful": 0, "history": []}  # fmt: skip
    store.save_model("standard", record | {"description": description, "warnings": [warning]})
    page = build_report(store, tmp_path / "report").read_text()
    store.close()
    assert f'<p class="alert"><strong>Warning:</strong> standard: {html.escape(warning)}</p>' in page
    assert f"> **Warning:** standard: {warning}" in (tmp_path / "report" / "report.md").read_text()
    shown = CliRunner().invoke(main, ["show", str(tmp_path)], catch_exceptions=False).output
    assert f"warning: standard: {warning}" in shown
    printed = json.loads(CliRunner().invoke(main, ["show", str(tmp_path), "--json"]).output)
    assert printed["models"][0] == {"defense": "standard", "description": description, "warnings": [warning]}
    assert printed["models"][1] == {"defense": "pgd-at", "description": {}, "warnings": []}


def test_a_store_written_before_models_were_described_still_opens(tmp_path: Path) -> None:
    import sqlite3

    from click.testing import CliRunner

    from advsec.cli import main

    make_store(tmp_path / "results.sqlite", "image", (1, 8, 8)).close()
    with sqlite3.connect(tmp_path / "results.sqlite") as db:  # the models table as it was before
        db.execute("ALTER TABLE models DROP COLUMN description")
        db.execute("ALTER TABLE models DROP COLUMN warnings")
    for command in (["show", str(tmp_path)], ["report", str(tmp_path)]):
        result = CliRunner().invoke(main, command, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    assert "Models" not in page and "model mlp" not in page  # nothing is known of them: nothing is said
    store = Store(tmp_path / "results.sqlite")  # a run writing into it again gains the columns
    store.save_model("standard", {"family": "standard", "name": "standard", "params": {}, "model_key": "k",
                                  "train_seconds": 1.0, "cached": 0, "stochastic": 0, "stateful": 0,
                                  "history": [], "warnings": ["w"]})  # fmt: skip
    assert next(m for m in store.models() if m["defense"] == "standard")["warnings"] == ["w"]


def test_several_budgets_are_one_curve_from_the_clean_accuracy(tmp_path: Path, monkeypatch) -> None:
    from advsec.report import figures

    axes, png = [], figures._png

    def keep(fig):
        axes.extend(ax for ax in fig.axes if ax.get_title().startswith("Robust accuracy vs"))
        return png(fig)

    monkeypatch.setattr(figures, "_png", keep)
    store = make_store(tmp_path / "results.sqlite", "image", (1, 8, 8))
    build_report(store, tmp_path / "report")
    store.close()
    [ax] = axes
    curves = {line.get_label(): line for line in ax.get_lines() if line.get_transform() == ax.transData}
    for defense, (wrong, grid) in PLAN.items():
        robust = [100 * (N - len(wrong | fgsm | pgd)) / N for fgsm, pgd in grid.values()]
        assert list(curves[defense].get_xdata()) == [0.0, *grid] and curves[defense].get_linestyle() == "-"
        assert list(curves[defense].get_ydata()) == [100 * (N - len(wrong)) / N, *robust]
