"""The three-way trade-off (privacy, clean, robust accuracy): its chart and the sentences that say which
model sits where, computed from the figures; and the idx datasets' training subset behind the privacy spec."""

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from advsec.cli import main
from advsec.data.download import FILE_SETS
from advsec.report import build_report, leakage_measure, privacy_tradeoff_text
from advsec.results import RunResults
from advsec.spec import load_spec
from advsec.store import Store
from tests.conftest import missing

REPO = Path(__file__).resolve().parent.parent

SPEC = """
name = "privacy-tradeoff-test"
dataset = "digits"
model = "mlp"
[train]
epochs = 3
lr = 1e-2
[[defenses]]
name = "standard"
[[defenses]]
name = "pgd-at"
eps = 0.1
steps = 3
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "fgsm"
[evaluation]
samples = 60
[privacy]
shadows = 2
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("privacy") / "run"
    spec = out.parent / "spec.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, ["run", str(spec), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_a_run_with_two_defenses_measured_draws_the_trade_off_and_says_who_sits_where(run: Path):
    report = (run / "report.md").read_text()
    assert (run / "privacy_tradeoff.png").read_bytes().startswith(b"\x89PNG")
    assert "## Privacy against robustness" in report
    assert "Leaks least:" in report and "Most robust at ℓ∞ ε=0.1:" in report
    # One sentence per defense, and pgd-at compared with standard training.
    assert "\nstandard: " in report and "\npgd-at: " in report
    assert "It leaks " in report and " than standard (" in report
    assert "LiRA TPR at 1 % FPR" in report  # both defenses have LiRA's figures
    # 60 non-members cannot show an FPR between 0 and 1 %, and the text says so.
    assert "With 60 non-members scored no threshold shows an FPR between 0 and 1 %" in report


def test_the_sentences_follow_the_numbers(run: Path):
    defenses = RunResults.read(Store(run / "results.sqlite", readonly=True)).defenses
    standard, pgd = defenses

    def leaking(summary, tpr: float):
        lira = dataclasses.replace(summary.privacy["lira"], tpr_01=tpr, tpr_01_low=tpr / 2,
                                   tpr_01_high=min(1.0, tpr * 1.5))  # fmt: skip
        return dataclasses.replace(summary, privacy={**summary.privacy, "lira": lira})

    first = privacy_tradeoff_text([leaking(standard, 0.05), leaking(pgd, 0.20)], "linf", 0.1)
    assert "Leaks least: standard (5.0 % [2.5, 7.5]); leaks most: pgd-at (20.0 % [10.0, 30.0])" in first[0]
    assert "It leaks more than standard (+15.0 points; the intervals do not overlap)" in first[2]
    swapped = privacy_tradeoff_text([leaking(standard, 0.20), leaking(pgd, 0.05)], "linf", 0.1)
    assert "Leaks least: pgd-at (5.0 %" in swapped[0] and "leaks most: standard (20.0 %" in swapped[0]
    assert "It leaks less than standard (-15.0 points; the intervals do not overlap)" in swapped[2]
    close = privacy_tradeoff_text([leaking(standard, 0.10), leaking(pgd, 0.12)], "linf", 0.1)
    assert "the intervals overlap: this run does not tell the two apart" in close[2]
    # Robustness and clean accuracy are read the same way: the most robust is whichever is.
    sturdy = dataclasses.replace(standard, robust={"linf:0.1": 0.9})
    robust = privacy_tradeoff_text([sturdy, pgd], "linf", 0.1)
    assert "Most robust at ℓ∞ ε=0.1: standard (90.0%)" in robust[0]
    # The accuracy gaps to standard training are computed, signed.
    gap = 100 * (pgd.clean_accuracy - standard.clean_accuracy)
    assert f"at {gap:+.1f} points clean" in first[2]


def test_no_section_with_fewer_than_two_measured_defenses_and_auc_without_lira(run: Path, tmp_path: Path):
    store = Store(run / "results.sqlite", readonly=True)
    defenses = RunResults.read(store).defenses
    assert privacy_tradeoff_text(defenses[:1], "linf", 0.1) == [] and leakage_measure(defenses[:1]) is None
    unmeasured = [defenses[0], dataclasses.replace(defenses[1], privacy={})]
    assert privacy_tradeoff_text(unmeasured, "linf", 0.1) == []
    # Without LiRA the chart reads the loss threshold's AUC.
    no_lira = [dataclasses.replace(d, privacy={k: v for k, v in d.privacy.items() if k != "lira"})
               for d in defenses]  # fmt: skip
    assert leakage_measure(no_lira) == ("loss", "loss-threshold AUC", 0.5)
    assert "Leakage is read as loss-threshold AUC" in privacy_tradeoff_text(no_lira, "linf", 0.1)[0]
    # The whole report of the run, rebuilt, keeps the section; its spec names both defenses.
    html = build_report(store, tmp_path / "again")
    assert "Privacy against robustness" in html.read_text()


def test_the_privacy_spec_parses_and_trains_on_a_fingerprinted_subset(shared_data_dir: Path, monkeypatch):
    from advsec.data.load import load_dataset

    spec = load_spec(REPO / "evaluations" / "privacy-fashion.toml")
    assert spec.dataset == "fashion-mnist" and spec.privacy.shadows >= 4
    assert {d.name for d in spec.defenses} == {"standard", "pgd-at", "dp-sgd"}
    monkeypatch.setenv("ADVSEC_DATA", str(shared_data_dir))
    if not (shared_data_dir / "fashion-mnist").is_dir():
        missing(f"no fashion-mnist under {shared_data_dir}")
    subset = load_dataset("fashion-mnist", spec.dataset_params)
    n = spec.dataset_params["train_samples"]
    assert len(subset.x_train) == len(subset.y_train) == n and len(subset.x_test) == 10_000
    shorter = load_dataset("fashion-mnist", {"train_samples": n - 1})
    assert (shorter.x_train == subset.x_train[: n - 1]).all()  # the first samples, in the files' order
    # Models trained on a subset are cached apart from the whole set's and from another subset's.
    whole = FILE_SETS["fashion-mnist"].fingerprint
    assert len({whole, subset.fingerprint, shorter.fingerprint}) == 3
