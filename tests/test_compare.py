"""advsec compare: two runs over the same data give deltas that add up; different data is refused."""

import json
import sqlite3
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from advsec.cli import main
from advsec.compare import compare_runs
from advsec.errors import AdvsecError
from advsec.progress import Progress
from advsec.runner import run_spec
from advsec.spec import parse_spec

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
     ({"samples": 50}, "different samples")],
)  # fmt: skip
def test_runs_over_different_data_or_budgets_are_refused(reference, tmp_path, change, message):
    with pytest.raises(AdvsecError, match=message):
        compare_runs(reference[1], run(tmp_path, "other", **change))
