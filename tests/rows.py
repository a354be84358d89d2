"""A run's stored results as plain rows in a fixed order: what two runs must agree on, not their timing."""

import sqlite3
from pathlib import Path


def stored_results(out: Path) -> list[tuple]:
    """Every per-sample row, attempt and sanity check in ``out``'s results store."""
    db = sqlite3.connect(out / "results.sqlite")
    rows = db.execute("SELECT * FROM samples ORDER BY cell, idx").fetchall()
    rows += db.execute("SELECT * FROM attempts ORDER BY cell, idx, position").fetchall()
    rows += db.execute("SELECT cell, name, value, flagged FROM sanity ORDER BY cell, position").fetchall()
    rows += db.execute("SELECT * FROM privacy ORDER BY cell, signal").fetchall()
    db.close()
    return rows
