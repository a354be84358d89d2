"""The advsec CLI in a process that kills itself at a point counted in work done, never in time.

Run as ``python tests/killed.py run SPEC --out OUT ...``. A kill is a SIGKILL to itself, as an out-of-memory
killer or a power cut would end a run: nothing is flushed, no lock released. A busy machine moves no kill
point, so a test can say exactly where the run died.

- ``ADVSEC_TEST_KILL=statement:N``: just before the N-th SQL statement the run starts (it never runs).
- ``ADVSEC_TEST_KILL=cell:N``: just before the N-th cell's row is written, the last statement of that
  cell's transaction: N - 1 cells are committed, the N-th one's other rows written but not committed.
- ``ADVSEC_TEST_KILL=step:N``: just after the N-th optimizer step of any training.
- ``ADVSEC_TEST_COUNT=PATH``: a run that ends writes its counts there (JSON): statements, cells and steps,
  and the statement numbers of each cell's row (``cells_at``) and of the COMMIT that stored it
  (``committed_at``).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

from torch.optim.optimizer import register_optimizer_step_post_hook

counts: dict[str, int] = {"statement": 0, "cell": 0, "step": 0}
cell_statements: list[int] = []  # the statement number of each cell's row
commit_statements: list[int] = []  # and of the COMMIT that made it stored
kind, _, at = os.environ.get("ADVSEC_TEST_KILL", "").partition(":")


def _tick(what: str) -> None:
    counts[what] += 1
    if what == kind and counts[what] == int(at):
        os.kill(os.getpid(), signal.SIGKILL)


def _trace(statement: str) -> None:
    words = statement.lstrip().upper()
    if words.startswith("INSERT INTO CELLS"):
        cell_statements.append(counts["statement"] + 1)
        _tick("cell")
    elif words.startswith("COMMIT") and len(cell_statements) > len(commit_statements):
        commit_statements.append(counts["statement"] + 1)
    _tick("statement")


def _connect(*args, **kwargs) -> sqlite3.Connection:
    db = _sqlite_connect(*args, **kwargs)
    db.set_trace_callback(_trace)
    return db


def _write_counts() -> None:
    if path := os.environ.get("ADVSEC_TEST_COUNT"):
        Path(path).write_text(
            json.dumps({**counts, "cells_at": cell_statements, "committed_at": commit_statements})
        )


KILLED = Path(__file__).resolve()  # what a test runs: [sys.executable, KILLED, "run", ...]
_sqlite_connect = sqlite3.connect

if __name__ == "__main__":  # only the run's own process is watched, never one that imports KILLED
    sqlite3.connect = _connect  # the store opens its file through sqlite3.connect
    register_optimizer_step_post_hook(lambda *_: _tick("step"))
    atexit.register(_write_counts)
    from advsec.cli import main

    sys.argv[0] = "advsec"
    main()
