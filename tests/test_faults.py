"""Faults: a killed run resumes to the same table, a second writer is refused, a failed write says why."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from advsec.cli import main
from advsec.errors import AdvsecError
from advsec.store import Store, claimed
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
restarts = 3
[[attacks]]
name = "square"
queries = 300
[evaluation]
samples = 200
"""


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
    assert result.exit_code == 1 and "advsec: error: cannot open the results store" in result.output
    assert "Traceback" not in result.output


def _run(spec: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    advsec = [sys.executable, "-c", "from advsec.cli import main; main()"]
    command = [*advsec, "run", str(spec), "--out", str(out), "--quiet", "--no-report"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_runs_killed_at_random_points_resume_to_the_uninterruptedstored_results(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    env = {**os.environ, "ADVSEC_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    durations = {}
    for run in ("whole", "warm"):  # the second run finds the models the first one trained
        started = time.perf_counter()
        assert _run(spec, tmp_path / run, env).wait() == 0
        durations[run] = time.perf_counter() - started
    whole = stored_results(tmp_path / "whole")
    assert len(whole) > 1000 and stored_results(tmp_path / "warm") == whole
    kills, partial = random.Random(0), []
    for trial in range(3):
        out = tmp_path / f"killed-{trial}"
        # The first trial starts from a cold model cache, so it may be killed while training; the others
        # skip training and finish sooner, so their kill points are drawn within a warm run's time.
        trial_env = {**env, "ADVSEC_CACHE": str(tmp_path / "cold-cache")} if trial == 0 else env
        process = _run(spec, out, trial_env)
        time.sleep(kills.uniform(0.2, 0.8) * durations["whole" if trial == 0 else "warm"])
        process.send_signal(signal.SIGKILL)
        process.wait()
        partial.append(_finished(out))
        resumed = _run(spec, out, trial_env)  # also proves the dead run's claim on the store died with it
        assert resumed.wait() == 0, resumed.stderr.read().decode()
        assert stored_results(out) == whole, f"trial {trial}"
    total = _finished(tmp_path / "whole")
    assert any(0 < done < total for done in partial), partial  # some kill landed between cells


def _finished(out: Path) -> int:
    if not (out / "results.sqlite").exists():
        return 0
    db = sqlite3.connect(out / "results.sqlite")
    (count,) = db.execute("SELECT COUNT(*) FROM cells").fetchone()
    db.close()
    return count
