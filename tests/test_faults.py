"""Faults: a killed run resumes to the same table, a second writer is refused, a failed write says why."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from advsec.cli import main
from advsec.errors import AdvsecError
from advsec.store import Store, claimed
from tests.killed import KILLED
from tests.rows import stored_results

SPEC = """
name = "faults"
[train]
epochs = 10
[[defenses]]
name = "standard"
[[defenses]]
name = "pgd-at"
eps = 0.1
steps = 3
[[threats]]
norm = "linf"
eps = [0.05, 0.1, 0.2]
[[attacks]]
name = "fgsm"
[[attacks]]
name = "pgd"
steps = 20
restarts = 2
[[attacks]]
name = "square"
queries = 100
[evaluation]
samples = 100
"""  # run eight times below (two whole, three killed, three resumed): kept small


def test_a_second_run_writing_the_same_store_is_refused_with_the_holder(tmp_path):
    store = tmp_path / "results.sqlite"
    refused = pytest.raises(AdvsecError, match=f"being written by advsec pid {os.getpid()}.*--out")
    with claimed(store), refused, claimed(store):
        pass
    with claimed(store):  # released when the first run ended
        pass


def test_a_full_disk_or_a_read_only_place_gives_a_clear_error(tmp_path):
    store = Store(tmp_path / "results.sqlite")
    store.db.execute("PRAGMA max_page_count = 1")  # SQLite's own "disk full": no page may be added
    with pytest.raises(AdvsecError, match=r"cannot write the results store .*full"):
        store.set_meta({"name": "x" * 100_000})
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, ["run", str(spec), "--out", "/proc/advsec-cannot-write-here"])
    assert result.exit_code == 2 and "advsec: error: cannot open the results store" in result.output
    assert "Traceback" not in result.output


def _run(spec: Path, out: Path, env: dict[str, str], **watch: str) -> subprocess.CompletedProcess:
    """The CLI run to the end, or killed where ``kill`` says (see tests/killed.py); ``count`` is where a run
    that ends writes what it counted."""
    command = [sys.executable, str(KILLED), "run", str(spec), "--out", str(out), "--quiet", "--no-report"]
    watched = {f"ADVSEC_TEST_{key.upper()}": value for key, value in watch.items()}
    return subprocess.run(command, env={**env, **watched}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow  # eight killed runs; test_harness kills and resumes one in the default suite
def test_runs_killed_at_random_points_resume_to_the_uninterruptedstored_results(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    env = {**os.environ, "ADVSEC_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    counted = {}
    for run in ("whole", "warm"):  # the second run finds the models the first one trained
        done = _run(spec, tmp_path / run, env, count=str(tmp_path / f"{run}.json"))
        assert done.returncode == 0, done.stderr.decode()
        counted[run] = json.loads((tmp_path / f"{run}.json").read_text())
    whole = stored_results(tmp_path / "whole")
    assert len(whole) > 1000 and stored_results(tmp_path / "warm") == whole
    total = _finished(tmp_path / "whole")
    assert counted["whole"]["step"] > 0 and counted["warm"]["step"] == 0  # warm: nothing trained
    assert counted["whole"]["cell"] == counted["warm"]["cell"] == total
    # Kill points are drawn in work done, not in seconds, so a busy machine moves none of them. The first
    # trial starts from a cold model cache and dies within its training (an optimizer step); the others
    # die just before an SQL statement after the warm run's first cell was committed and up to its last
    # cell's row: with some cells stored and some not, maybe mid-transaction.
    first_stored, last_cell = counted["warm"]["committed_at"][0], counted["warm"]["cells_at"][-1]
    kills = random.Random(0)
    points = [
        f"step:{kills.randint(1, counted['whole']['step'])}",
        *(f"statement:{kills.randint(first_stored + 1, last_cell)}" for _ in range(2)),
    ]
    for trial, point in enumerate(points):
        out = tmp_path / f"killed-{trial}"
        trial_env = {**env, "ADVSEC_CACHE": str(tmp_path / "cold-cache")} if trial == 0 else env
        killed = _run(spec, out, trial_env, kill=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr.decode())
        done = _finished(out)
        assert trial == 0 or 0 < done < total, (point, done)  # some cells committed, some not
        resumed = _run(spec, out, trial_env)  # also proves the dead run's claim on the store died with it
        assert resumed.returncode == 0, resumed.stderr.decode()
        assert stored_results(out) == whole, f"trial {trial}, killed at {point}"


def _finished(out: Path) -> int:
    if not (out / "results.sqlite").exists():
        return 0
    db = sqlite3.connect(out / "results.sqlite")
    (count,) = db.execute("SELECT COUNT(*) FROM cells").fetchone()
    db.close()
    return count
