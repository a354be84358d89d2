"""advsec compare: two runs over the same samples give deltas that add up, whatever loaded the samples;
different samples or budgets are refused."""

import json
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

import advsec
from advsec.cli import main
from advsec.compare import compare_runs, pair_budgets
from advsec.errors import AdvsecError, NotComparable
from advsec.progress import Progress
from advsec.runner import run_spec
from advsec.spec import parse_spec
from tests.brought import MEAN, STD, evaluate_args, train_checkpoint

SPEC = """
name = "{name}"
[train]
epochs = 10
[[defenses]]
name = "standard"
[[defenses]]
name = "pgd-at"
eps = {train_eps}
steps = 3
[[threats]]
norm = "linf"
eps = {eps}
[[attacks]]
name = "fgsm"
[[attacks]]
name = "pgd"
steps = 5
[evaluation]
samples = {samples}
"""


def run(tmp_path, name, *, train_eps=0.1, eps="[0.05, 0.1]", samples=100):
    spec = parse_spec(SPEC.format(name=name, train_eps=train_eps, eps=eps, samples=samples))
    return run_spec(spec, tmp_path / name, device=torch.device("cpu"), progress=Progress(quiet=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Run A, shared by every comparison here: its output folder and its store."""
    out = tmp_path_factory.mktemp("compare")
    return out / "a", run(out, "a")


def test_identical_runs_compare_to_zero_and_the_cli_writes_both_files(reference, tmp_path):
    run(tmp_path, "b")
    out = tmp_path / "compared"
    result = CliRunner().invoke(main, ["compare", str(reference[0]), str(tmp_path / "b"), "--out", str(out),
                                       "--json"], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    comparison = json.loads(result.output)
    assert len(comparison["cells"]) == 6  # 2 defenses × (clean + 2 budgets)
    for row in comparison["cells"]:
        assert row["delta"] == 0 and row["lost"] == row["gained"] == 0 and row["a"] == row["b"]
        assert all(a["broken_a"] == a["broken_b"] for a in row["attacks"])
    assert json.loads((out / "compare.json").read_text()) == comparison
    assert "| pgd-at | linf 0.1 |" in (out / "compare.md").read_text()


def _verdicts(out: Path) -> dict[tuple[str, str, float], dict[int, bool]]:
    """Per cell, each sample's verdict read straight from the store's rows: robust in an attacked cell,
    correct in the clean one."""
    db = sqlite3.connect(out / "results.sqlite")
    verdicts = {}
    for cell, defense, norm, eps in db.execute("SELECT cell, defense, norm, eps FROM cells").fetchall():
        rows = db.execute("SELECT idx, label, clean_pred, robust FROM samples WHERE cell = ?", (cell,))
        verdicts[defense, norm, eps] = {
            idx: bool(robust) if norm != "none" else clean_pred == label
            for idx, label, clean_pred, robust in rows
        }
    db.close()
    return verdicts


def test_deltas_are_the_net_of_the_samples_that_flipped(reference, tmp_path):
    (out, a), b = reference, run(tmp_path, "weaker", train_eps=0.03)
    comparison = compare_runs(a, b)
    # The flips counted here sample by sample, matched by index, from each store's own rows.
    in_a, in_b = _verdicts(out), _verdicts(tmp_path / "weaker")
    assert len(comparison["cells"]) == len(in_a) == len(in_b) == 6
    for row in comparison["cells"]:
        a_rows, b_rows = (
            in_a[row["defense"], row["norm"], row["eps"]],
            in_b[row["defense"], row["norm"], row["eps"]],
        )
        assert a_rows.keys() == b_rows.keys() and row["n"] == len(a_rows) == 100
        lost = sum(a_rows[i] and not b_rows[i] for i in a_rows)
        gained = sum(b_rows[i] and not a_rows[i] for i in a_rows)
        assert (row["lost"], row["gained"]) == (lost, gained), row
        assert row["a"] == sum(a_rows.values()) / 100 and row["b"] == sum(b_rows.values()) / 100
        assert row["delta"] == pytest.approx((gained - lost) / 100)
        if row["defense"] == "standard":  # the same model, trained once and cached: nothing can flip
            assert lost == gained == 0
    # Training at a smaller eps costs robustness: under attack, PGD-AT loses more samples than it gains.
    changed = [row for row in comparison["cells"] if row["defense"] == "pgd-at" and row["norm"] != "none"]
    assert sum(row["lost"] - row["gained"] for row in changed) > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [({"eps": "[0.05, 0.2]"}, "different budgets: linf 0.1 only in A, linf 0.2 only in B"),
     ({"samples": 50}, r"different test samples \(100 vs 50 samples")],
)  # fmt: skip
def test_runs_over_different_data_or_budgets_are_refused(reference, tmp_path, change, message):
    with pytest.raises(AdvsecError, match=message):
        compare_runs(reference[1], run(tmp_path, "other", **change))


@pytest.fixture(scope="module")
def brought(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's two routes over the same 200 test digits: a notebook's ``advsec.evaluate`` at 8/255
    (in ``notebook/``) and ``advsec evaluate --data test.npz`` at 0.031 and 0.0314 (``cli-0.031/``, ...)."""
    folder = tmp_path_factory.mktemp("brought")
    net, x, y = train_checkpoint(folder)
    advsec.evaluate(net, x, y, eps=8 / 255, mean=[MEAN], std=[STD], attacks="fgsm", out=folder / "notebook")
    for eps in ("0.031", "0.0314"):
        evaluated = CliRunner().invoke(
            main, evaluate_args(folder, folder / "test.npz", eps, folder / f"cli-{eps}")
        )
        assert evaluated.exit_code == 0, evaluated.output
    return folder


def compare(a: Path, b: Path, out: Path, *options: str) -> Result:
    return CliRunner().invoke(main, ["compare", str(a), str(b), "--out", str(out), *options])


@pytest.mark.parametrize("eps", ["0.031", "0.0314"])
def test_a_notebook_run_and_a_cli_run_over_the_same_images_compare(brought, tmp_path, eps):
    result = compare(brought / "notebook", brought / f"cli-{eps}", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    comparison = json.loads(result.stdout)
    # Both runs are named "evaluate": their folders tell them apart.
    assert (comparison["a"]["label"], comparison["b"]["label"]) == (
        "evaluate (notebook)",
        f"evaluate (cli-{eps})",
    )
    clean, attacked = comparison["cells"]
    # The notebook's model is "model", the command line's is named after its weights: one model each, paired.
    assert (clean["defense"], clean["defense_b"], clean["norm"]) == ("model", "net", "none")
    assert (attacked["norm"], attacked["eps"], attacked["eps_b"]) == ("linf", 8 / 255, float(eps))
    assert attacked["label_a"] == "evaluate (notebook) · model · linf 0.0313725"
    assert attacked["label_b"] == f"evaluate (cli-{eps}) · net · linf {eps}"
    # The same network on the same images: the same clean verdict on every one of the 200 samples.
    assert clean["n"] == attacked["n"] == 200 and clean["lost"] == clean["gained"] == 0
    assert clean["a"] == clean["b"] > 0.8
    assert f"| model / net | linf 0.0313725 / {eps} |" in (tmp_path / "compare.md").read_text()
    shown = compare(brought / "notebook", brought / f"cli-{eps}", tmp_path)
    assert shown.exit_code == 0, shown.output
    assert f"evaluate (notebook) (A) vs evaluate (cli-{eps}) (B)" in shown.stdout
    assert f"model / net   linf 0.0313725 / {eps}" in shown.stdout


def test_runs_over_other_images_with_the_same_labels_are_refused(brought, tmp_path):
    data = np.load(brought / "test.npz")
    x = data["x"].copy()
    x[0, 0, 0, 0] = 1 - x[0, 0, 0, 0]  # one pixel of one image: other samples, the very same labels
    np.savez(tmp_path / "other.npz", x=x, y=data["y"])
    evaluated = CliRunner().invoke(
        main, evaluate_args(brought, tmp_path / "other.npz", "0.031", tmp_path / "b")
    )
    assert evaluated.exit_code == 0, evaluated.output
    result = compare(brought / "cli-0.031", tmp_path / "b", tmp_path / "compared")
    assert result.exit_code == 1 and result.stdout == ""
    assert re.fullmatch(
        r"advsec: error: the runs scored different test samples \(200 vs 200 samples, content fingerprints "
        r"\w{16} vs \w{16}\); compare runs over the same samples, in the same order\n",
        result.stderr,
    ), result.stderr
    assert not (tmp_path / "compared").exists()


def test_a_run_stored_before_sample_fingerprints_is_matched_by_its_dataset_name(brought, tmp_path):
    shutil.copytree(brought / "notebook", tmp_path / "old")
    db = sqlite3.connect(tmp_path / "old" / "results.sqlite")
    with db:
        db.execute("DELETE FROM meta WHERE key = 'samples_fingerprint'")
    db.close()
    result = compare(tmp_path / "old", brought / "cli-0.031", tmp_path / "compared")
    assert result.exit_code == 1
    assert result.stderr == (
        "advsec: error: the runs used different datasets: tensors vs npz, and run A has no fingerprint of "
        "the samples it scored (stored by an older advsec), so only the dataset names can tell: run it again "
        "to compare by content\n"
    )
    assert compare(tmp_path / "old", brought / "notebook", tmp_path / "compared").exit_code == 0


LINF = "linf"


@pytest.mark.parametrize(
    ("a", "b", "refusal"),
    [
        ([8 / 255], [0.031], None),  # a fraction and the decimal it rounds to
        ([8 / 255], [0.0314], None),
        ([8 / 255], [0.03], None),  # to the decimal's precision: 0.03 stands for 0.025 to 0.035
        ([8 / 255, 16 / 255], [0.063, 0.031], None),
        ([0.1 + 0.2], [0.3], None),  # a computed value
        ([0.1], [0.2], "linf 0.1 only in A, linf 0.2 only in B"),
        ([0.03], [0.034], "linf 0.03 only in A, linf 0.034 only in B"),  # two decimals: as written
        ([0.031], [0.0314], "linf 0.031 only in A, linf 0.0314 only in B"),
        ([8 / 255], [16 / 255], "linf 0.0313725 only in A, linf 0.0627451 only in B"),
        ([0.031, 8 / 255], [8 / 255], "linf 0.031 only in A, none only in B"),  # the equal one pairs first
        (
            [0.03],
            [7.5 / 255, 8 / 255],
            "linf 0.03 in A matches 2 budgets of the other run (linf 0.0294118, linf 0.0313725)",
        ),
        ([7.5 / 255, 8 / 255], [0.03], "linf 0.03 in B matches 2 budgets"),
    ],
)
def test_budgets_pair_to_the_precision_they_were_written_with(a, b, refusal):
    budgets_a, budgets_b = {(LINF, eps) for eps in a}, {(LINF, eps) for eps in b}
    if refusal is not None:
        with pytest.raises(NotComparable, match=re.escape(refusal)):
            pair_budgets(budgets_a, budgets_b)
        return
    pairs = pair_budgets(budgets_a, budgets_b)
    assert sorted(pairs) == sorted(budgets_a) and sorted(pairs.values()) == sorted(budgets_b)
    # In order: A's smaller budget pairs with B's smaller one.
    assert [pairs[k] for k in sorted(pairs)] == sorted(budgets_b)


def test_budgets_of_different_norms_never_pair():
    with pytest.raises(NotComparable, match=re.escape("l2 0.031 only in A, linf 0.0313725 only in B")):
        pair_budgets({("l2", 0.031)}, {(LINF, 8 / 255)})
