"""The harness end to end: worst-case scoring, resume, and a run killed mid-way."""

import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from advsec.errors import AdvsecError, SpecError
from advsec.progress import Progress
from advsec.results import cell_summaries
from advsec.runner import run_spec
from advsec.spec import parse_spec
from advsec.store import Store
from tests.killed import KILLED

SPEC = """
name = "grid"
seed = 1
[train]
epochs = 15
[[defenses]]
name = "standard"
[[defenses]]
name = "pgd-at"
eps = 0.1
steps = 3
[[threats]]
norm = "linf"
eps = [0.05, 0.1, 0.2]
[[threats]]
norm = "l2"
eps = [0.5, 1.0]
[[attacks]]
name = "fgsm"
[[attacks]]
name = "pgd"
steps = 10
restarts = 2
"""


def _run(tmp_path, text=SPEC, **kwargs):
    spec = parse_spec(text)
    return run_spec(spec, tmp_path, device=torch.device("cpu"), progress=Progress(quiet=True), **kwargs)


def table(store) -> list:
    """Everything a run measured except wall time: per-cell aggregates and every per-sample row."""
    rows = []
    for cell in cell_summaries(store):
        attacks = [replace(attack, wall_seconds=0.0) for attack in cell.attacks]
        rows.append(replace(cell, wall_seconds=0.0, attacks=attacks))
    for cell in store.cells():
        rows.append(store.samples(cell["cell"]))
        rows.append(store.attempts(cell["cell"]))
    return rows


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    return out, _run(out)


def test_worst_case_is_clean_and_every_attack(grid):
    _, store = grid
    for cell in store.cells():
        samples = {s["idx"]: s for s in store.samples(cell["cell"])}
        broken = {(a["idx"]) for a in store.attempts(cell["cell"]) if a["pred"] != samples[a["idx"]]["label"]}
        for idx, sample in samples.items():
            expected = sample["clean_pred"] == sample["label"] and idx not in broken
            assert sample["robust"] == expected
            assert (sample["broken_by"] is None) == (expected or sample["clean_pred"] != sample["label"])


def test_cascade_attacks_only_still_robust_samples(grid):
    _, store = grid
    for cell in store.cells():
        if cell["norm"] == "none":
            continue
        fgsm, pgd = store.cell_attacks(cell["cell"])
        assert fgsm["attacked"] == cell["clean_correct"]
        assert pgd["attacked"] == fgsm["attacked"] - fgsm["broken"]
        assert pgd["backwards"] > 0 and fgsm["backwards"] == fgsm["attacked"]


def test_robust_accuracy_falls_with_budget_and_the_defense_helps(grid):
    _, store = grid
    cells = cell_summaries(store)
    for defense in ("standard", "pgd-at"):
        linf = [c.robust_accuracy for c in cells if c.defense == defense and c.norm == "linf"]
        assert linf == sorted(linf, reverse=True)
    at = {(c.defense, c.norm, c.eps): c.robust_accuracy for c in cells}
    assert at[("pgd-at", "linf", 0.1)] > at[("standard", "linf", 0.1)]


def test_second_run_computes_nothing_and_matches(grid):
    out, store = grid
    before = table(store)
    again = _run(out)
    assert again.meta()["computed_cells"] == 0
    assert table(again) == before


def test_fresh_recomputes_to_the_same_table(grid, tmp_path):
    _, store = grid
    fresh = _run(tmp_path, fresh=True)
    assert fresh.meta()["computed_cells"] == len(store.cells())
    assert table(fresh) == table(store)


def test_growing_the_grid_computes_only_new_cells(grid, tmp_path):
    out, _ = grid
    grown = SPEC.replace("eps = [0.05, 0.1, 0.2]", "eps = [0.05, 0.1, 0.2, 0.3]")
    store = _run(out, grown)
    assert store.meta()["computed_cells"] == 2  # one new budget, two defenses
    assert len(store.cells()) == 2 * (1 + 4 + 2)
    assert _run(out).meta()["computed_cells"] == 0  # the original spec is still fully there


def test_run_killed_mid_way_resumes_to_the_identical_table(grid, tmp_path):
    _, reference = grid
    spec_path = tmp_path / "grid.toml"
    spec_path.write_text(SPEC)
    out = tmp_path / "killed"
    command = [
        sys.executable,
        str(KILLED),
        "run",
        str(spec_path),
        "--out",
        str(out),
        "--quiet",
        "--no-report",
    ]
    # Killed (SIGKILL, by itself) as it was about to write the 4th cell's row: 3 cells are committed, the
    # 4th one's samples and attempts written but not committed. Counted in cells, not in seconds.
    killed = subprocess.run(command, env={**os.environ, "ADVSEC_TEST_KILL": "cell:4"})
    assert killed.returncode == -signal.SIGKILL
    total = len(reference.cells())
    assert _count(out / "results.sqlite") == 3 < total
    resumed = subprocess.run(command, env=os.environ.copy(), check=True)
    assert resumed.returncode == 0
    store = Store(out / "results.sqlite")
    # the resumed run skips exactly the cells committed before the kill, and redoes the one it cut short
    assert store.meta()["computed_cells"] == total - 3
    assert table(store) == table(reference)


def _count(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM cells").fetchone()[0]


def test_run_records_what_produced_it(grid):
    _, store = grid
    meta = store.meta()
    assert meta["spec"] == SPEC and meta["seed"] == 1 and meta["device"] == "cpu"
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["bounds"] == [0.0, 1.0] and meta["classes"][:2] == ["0", "1"]
    assert "git_commit" in meta and meta["finished_at"] >= meta["started_at"]


def test_an_attack_left_nothing_to_attack_is_skipped(tmp_path):
    spec = parse_spec(
        """
[train]
epochs = 15
[[defenses]]
name = "standard"
[[threats]]
norm = "linf"
eps = [0.5]
[[attacks]]
name = "pgd"
[[attacks]]
name = "apgd-t"
[evaluation]
samples = 50
"""
    )
    store = run_spec(spec, tmp_path, device=torch.device("cpu"), progress=Progress(quiet=True))
    cell = next(c for c in cell_summaries(store) if c.norm == "linf")
    assert cell.robust_accuracy == 0 and [a.attacked for a in cell.attacks][1] == 0


AIMED = """
[train]
epochs = 15
[[defenses]]
name = "standard"
[[threats]]
norm = "linf"
eps = [0.3]
[[attacks]]
name = "apgd-t"
steps = 20
target = 3
[evaluation]
samples = 80
"""


def test_a_chosen_class_is_aimed_at_by_every_sample_not_already_in_it(tmp_path):
    store = _run(tmp_path, AIMED)
    cell = next(c for c in cell_summaries(store) if c.norm == "linf")
    samples = {s["idx"]: s for s in store.samples(cell.cell)}
    attempts = store.attempts(cell.cell)
    assert {a["target"] for a in attempts} == {3}
    assert all(samples[a["idx"]]["label"] != 3 for a in attempts)  # threes have nothing to aim for
    aimed = [s for s in samples.values() if s["label"] != 3 and s["clean_pred"] == s["label"]]
    [stage] = cell.attacks
    assert stage.attack == "apgd-t-3" and stage.attacked == len(aimed) == len(attempts)
    heard = sum(a["pred"] == 3 for a in attempts)
    assert stage.targeted_success == heard / len(attempts) > 0.5
    low, high = stage.targeted_interval
    assert low < stage.targeted_success < high


def test_a_class_the_dataset_lacks_is_refused_before_any_training(tmp_path):
    with pytest.raises(
        SpecError, match=r"attacks: 'apgd-t-10' aims at class 10, but dataset 'digits' has classes 0 to 9"
    ):
        _run(tmp_path, AIMED.replace("target = 3", "target = 10"))
    assert not (tmp_path / "results.sqlite").exists()


def test_a_store_of_another_format_is_refused_not_misread(tmp_path):
    path = tmp_path / "results.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE cells (cell TEXT)")
    with pytest.raises(AdvsecError, match=r"has format 0; this advsec reads format \d+\. Delete it"):
        Store(path)
