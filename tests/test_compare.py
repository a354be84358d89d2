"""advsec compare: two runs over the same data give deltas that add up; different data is refused."""

import json

import pytest
import torch
from click.testing import CliRunner

from advsec.cli import main
from advsec.compare import compare_runs
from advsec.errors import AdvsecError
from advsec.harness import run_spec
from advsec.progress import Progress
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


def test_identical_runs_compare_to_zero_and_the_cli_writes_both_files(tmp_path):
    run(tmp_path, "a")
    run(tmp_path, "b")
    out = tmp_path / "compared"
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                                       "--json"], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    comparison = json.loads(result.output)
    assert len(comparison["cells"]) == 6  # 2 defenses × (clean + 2 budgets)
    for row in comparison["cells"]:
        assert row["delta"] == 0 and row["lost"] == row["gained"] == 0 and row["a"] == row["b"]
        assert all(a["broken_a"] == a["broken_b"] for a in row["attacks"])
    assert json.loads((out / "compare.json").read_text()) == comparison
    assert "| pgd-at | linf 0.1 |" in (out / "compare.md").read_text()


def test_deltas_are_the_net_of_the_samples_that_flipped(tmp_path):
    a, b = run(tmp_path, "a"), run(tmp_path, "weaker", train_eps=0.03)
    comparison = compare_runs(a, b)
    changed = [row for row in comparison["cells"] if row["defense"] == "pgd-at" and row["norm"] != "none"]
    assert any(row["delta"] < 0 for row in changed)  # training at a smaller eps costs robustness
    for row in comparison["cells"]:
        assert row["gained"] - row["lost"] == round(row["delta"] * row["n"])


@pytest.mark.parametrize(
    ("change", "message"),
    [({"eps": "[0.05, 0.2]"}, "different budgets: linf 0.1 only in A, linf 0.2 only in B"),
     ({"samples": 50}, "different samples")],
)  # fmt: skip
def test_runs_over_different_data_or_budgets_are_refused(tmp_path, change, message):
    with pytest.raises(AdvsecError, match=message):
        compare_runs(run(tmp_path, "a"), run(tmp_path, "other", **change))
