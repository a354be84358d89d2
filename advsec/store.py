"""The results store: one SQLite file per run, per-sample rows, one transaction per cell.

Every number in a report is an aggregate of rows here, so it can be recomputed and two runs diffed.
A cell is written whole or not at all; re-running a spec skips the cells already present.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from advsec.errors import AdvsecError
from advsec.records import (
    CellResult,
    CertificationResult,
    MembershipInference,
    ReplayResult,
    UnrestrictedResult,
)

FORMAT = 7  # the store's PRAGMA user_version: raised whenever a table changes shape
# Columns added within format 7: an older store of it gains them (empty) when opened for writing, and a
# reader finds them absent; what they hold is then unknown, never wrong.
ADDED_COLUMNS = {"models": ("description TEXT", "warnings TEXT")}
PRIVACY_FIELDS = tuple(f.name for f in fields(MembershipInference))  # the privacy table's, past its cell
SIDE_PLANS = ("certify_plan", "replay_plan", "unrestricted_plan")  # meta keys: what each protocol last ran
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plan (position INTEGER PRIMARY KEY, cell TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    defense TEXT PRIMARY KEY, family TEXT, name TEXT, params TEXT, model_key TEXT, train_seconds REAL,
    cached INTEGER, stochastic INTEGER, stateful INTEGER, history TEXT, false_alarm REAL, threshold REAL,
    description TEXT, warnings TEXT);
CREATE TABLE IF NOT EXISTS cells (
    cell TEXT PRIMARY KEY, defense TEXT, norm TEXT, eps REAL, attacks TEXT, cascade INTEGER,
    n INTEGER, clean_correct INTEGER, robust INTEGER, wall_seconds REAL,
    forwards INTEGER, backwards INTEGER, finished_at TEXT);
CREATE TABLE IF NOT EXISTS cell_attacks (
    cell TEXT, position INTEGER, attack TEXT, name TEXT, params TEXT, target TEXT, adaptive INTEGER,
    attacked INTEGER, broken INTEGER, forwards INTEGER, backwards INTEGER, wall_seconds REAL,
    fit_seconds REAL, fit_cached INTEGER, escalation TEXT, PRIMARY KEY (cell, position));
CREATE TABLE IF NOT EXISTS samples (
    cell TEXT, idx INTEGER, label INTEGER, clean_pred INTEGER, adv_pred INTEGER, robust INTEGER,
    clean_single INTEGER, robust_single INTEGER, broken_by TEXT, PRIMARY KEY (cell, idx));
CREATE TABLE IF NOT EXISTS attempts (
    cell TEXT, idx INTEGER, position INTEGER, pred INTEGER, distance REAL, target INTEGER,
    PRIMARY KEY (cell, idx, position));
CREATE TABLE IF NOT EXISTS sanity (
    cell TEXT, position INTEGER, name TEXT, value REAL, flagged INTEGER, detail TEXT,
    PRIMARY KEY (cell, position));
CREATE TABLE IF NOT EXISTS examples (
    cell TEXT, idx INTEGER, shape TEXT, clean BLOB, adversarial BLOB, PRIMARY KEY (cell, idx));
CREATE TABLE IF NOT EXISTS learned (
    cell TEXT, position INTEGER, shape TEXT, value BLOB, PRIMARY KEY (cell, position));
CREATE TABLE IF NOT EXISTS certifications (
    defense TEXT PRIMARY KEY, key TEXT, sigma REAL, n0 INTEGER, n INTEGER, alpha REAL, samples INTEGER,
    batch_size INTEGER, seed INTEGER, forwards INTEGER, wall_seconds REAL, finished_at TEXT);
CREATE TABLE IF NOT EXISTS certificates (
    defense TEXT, idx INTEGER, label INTEGER, prediction INTEGER, count INTEGER, p_lower REAL, radius REAL,
    PRIMARY KEY (defense, idx));
CREATE TABLE IF NOT EXISTS privacy (
    cell TEXT, signal TEXT, members INTEGER, nonmembers INTEGER, accuracy REAL, advantage REAL, auc REAL,
    auc_low REAL, auc_high REAL, tpr_001 REAL, tpr_001_low REAL, tpr_001_high REAL, tpr_01 REAL,
    tpr_01_low REAL, tpr_01_high REAL, shadows INTEGER, shadow_seconds REAL, PRIMARY KEY (cell, signal));
CREATE TABLE IF NOT EXISTS replays (
    defense TEXT, position INTEGER, key TEXT, attack TEXT, mode TEXT, samples INTEGER, crafted_fooled INTEGER,
    queries INTEGER, wall_seconds REAL, PRIMARY KEY (defense, position));
CREATE TABLE IF NOT EXISTS replay_trials (
    defense TEXT, position INTEGER, delay INTEGER, repeat INTEGER, fooled INTEGER, clean_wrong INTEGER,
    PRIMARY KEY (defense, position, delay, repeat));
CREATE TABLE IF NOT EXISTS unrestricted_runs (
    defense TEXT, attack TEXT, key TEXT, listener TEXT, source TEXT, norm TEXT, fit_seconds REAL,
    wall_seconds REAL, PRIMARY KEY (defense, attack));
CREATE TABLE IF NOT EXISTS unrestricted (
    defense TEXT, attack TEXT, idx INTEGER, target INTEGER, label INTEGER, carrier_pred INTEGER, pred INTEGER,
    listener_pred INTEGER, distance REAL, PRIMARY KEY (defense, attack, idx));
CREATE TABLE IF NOT EXISTS unrestricted_examples (
    defense TEXT, attack TEXT, idx INTEGER, shape TEXT, source BLOB, made BLOB,
    PRIMARY KEY (defense, attack, idx));
CREATE TABLE IF NOT EXISTS transfers (
    defense TEXT, source INTEGER, target INTEGER, fooled INTEGER, samples INTEGER,
    PRIMARY KEY (defense, source, target));
"""


@contextmanager
def claimed(path: Path) -> Iterator[None]:
    """Hold the store at ``path`` for one run: a second run writing it meanwhile is refused at once.

    SQLite would keep either run's rows whole, but both would spend their time computing the same cells.
    The claim is an advisory lock on ``<store>.lock``, released when the run ends or its process dies.
    """
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a+")
    except OSError as exc:
        raise AdvsecError(f"cannot open the results store {path}: {exc}") from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise AdvsecError(
                f"the results store {path} is being written by {holder}; wait for that run to finish, "
                "or write this one elsewhere with --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"advsec pid {os.getpid()}")
        handle.flush()
        yield


# SQLite's result codes for a file that is not (or no longer) a whole SQLite database: a damaged store
# (ERROR: e.g. a table it should hold is missing).
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_ERROR"}


class Store:
    """A run's SQLite file (WAL), opened for reading and writing, or only for reading (``readonly``).

    A reader never writes the file: not its schema, not its journal mode, not even to an empty file. A
    damaged file (overwritten, truncated) is an :class:`AdvsecError` naming it, when opened or when read.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            self._open_to_read()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30)
            written = self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
            # A damaged store is refused before anything is written to it, and before any compute.
            damage = _damage(self.db.execute("PRAGMA quick_check(1)").fetchall()) if written else None
            if damage is None:
                self.db.execute("PRAGMA journal_mode=WAL")
                version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if not written:
                self.db.executescript(SCHEMA)
                self.db.execute(f"PRAGMA user_version = {FORMAT}")
            elif damage is None and version == FORMAT:
                self._add_columns()
        except (OSError, sqlite3.Error) as exc:
            raise AdvsecError(f"cannot open the results store {self.path}: {exc}") from exc
        if damage is not None:
            self.db.close()
            raise AdvsecError(f"cannot open the results store {self.path}: damaged: {damage}")
        if written and version != FORMAT:
            self.db.close()
            raise AdvsecError(
                f"the results store {self.path} has format {version}; this advsec reads format {FORMAT}. "
                "Delete it to run again, or write elsewhere with --out"
            )

    def _add_columns(self) -> None:
        """The :data:`ADDED_COLUMNS` an older store of this format lacks."""
        for table, columns in ADDED_COLUMNS.items():
            present = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column.split()[0] not in present:
                    with self.db:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def _open_to_read(self) -> None:
        """Open the file read-only (SQLite's ``mode=ro``) and check it is an advsec store of our format."""
        try:
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from exc
        try:
            tables = self._query("SELECT count(*) FROM sqlite_master")[1][0][0]
            # Every page, read once: a damaged page is named now, whichever pages the command goes on to read.
            damage = _damage(self._query("PRAGMA quick_check(1)")[1])
            version = self._query("PRAGMA user_version")[1][0][0]
        except AdvsecError:
            self.db.close()
            raise
        if not tables or damage is not None or version != FORMAT:
            self.db.close()
            if not tables:
                raise AdvsecError(f"{self.path} is not a readable advsec results store (it holds no tables)")
            if damage is not None:
                raise AdvsecError(f"{self.path} is not a readable advsec results store (damaged: {damage})")
            raise AdvsecError(
                f"the results store {self.path} has format {version}; this advsec reads format {FORMAT}. "
                "Delete it to run again, or write elsewhere with --out"
            )

    def _unreadable(self, exc: sqlite3.Error) -> AdvsecError:
        """The error for a failed read: a damaged file is named as such, anything else (locked, I/O) said."""
        if getattr(exc, "sqlite_errorname", "SQLITE_ERROR") in _DAMAGED:
            return AdvsecError(f"{self.path} is not a readable advsec results store ({exc})")
        return AdvsecError(f"cannot read the results store {self.path}: {exc}")

    def _query(self, query: str, args: tuple = ()) -> tuple[list[str], list[tuple]]:
        """Every row of ``query`` (fetched here, so a damaged page fails here) and its column names."""
        try:
            cursor = self.db.execute(query, args)
            return [d[0] for d in cursor.description or ()], cursor.fetchall()
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from exc

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction; a failed write (disk full, read-only, locked) becomes a clear error."""
        try:
            with self.db:
                yield
        except sqlite3.Error as exc:
            raise AdvsecError(f"cannot write the results store {self.path}: {exc}") from exc

    def clear(self) -> None:
        """Forget every result (``--fresh``)."""
        with self._transaction():
            for table in (
                "plan",
                "models",
                "cells",
                "cell_attacks",
                "samples",
                "attempts",
                "examples",
                "learned",
                "sanity",
                "privacy",
                "certifications",
                "certificates",
                "replays",
                "replay_trials",
                "transfers",
                "unrestricted_runs",
                "unrestricted",
                "unrestricted_examples",
            ):
                self.db.execute(f"DELETE FROM {table}")  # fmt: skip

    def set_meta(self, values: dict[str, Any]) -> None:
        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
            )

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._query("SELECT key, value FROM meta")[1]}

    def set_plan(self, cells: list[str]) -> None:
        """The run's grid, in order. The side protocols' plans are emptied: each one the spec runs sets its
        own, so what an earlier spec left in a reused store stays out of this run's report."""
        with self._transaction():
            self.db.execute("DELETE FROM plan")
            self.db.executemany("INSERT INTO plan VALUES (?, ?)", enumerate(cells))
            self.db.executemany("DELETE FROM meta WHERE key = ?", [(key,) for key in SIDE_PLANS])

    def finished(self) -> set[str]:
        return {row[0] for row in self._query("SELECT cell FROM cells")[1]}

    def save_model(self, defense: str, row: dict[str, Any]) -> None:
        """What a defense's model is and cost (:func:`advsec.runtime._record_model`); ``description`` (what
        the model is) and ``warnings`` (what to beware of in its numbers) may be left out."""
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO models (defense, family, name, params, model_key, train_seconds, "
                "cached, stochastic, stateful, history, false_alarm, threshold, description, warnings) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    defense,
                    row["family"],
                    row["name"],
                    json.dumps(row["params"], sort_keys=True),
                    row["model_key"],
                    row["train_seconds"],
                    row["cached"],
                    row["stochastic"],
                    row["stateful"],
                    json.dumps(row["history"]),
                    row.get("false_alarm"),
                    row.get("threshold"),
                    json.dumps(row.get("description") or {}, sort_keys=True),
                    json.dumps(list(row.get("warnings") or [])),
                ),
            )

    def save_cell(self, result: CellResult) -> None:
        """Write a whole cell in one transaction: after a crash it is either all there or absent."""
        attacks = result.attacks
        with self._transaction():
            self.db.execute("DELETE FROM cells WHERE cell = ?", (result.cell,))
            for table in ("cell_attacks", "samples", "attempts", "examples", "learned", "sanity", "privacy"):
                self.db.execute(f"DELETE FROM {table} WHERE cell = ?", (result.cell,))
            self.db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (result.cell, i, int(label), int(clean), int(adv), int(robust), int(c1), int(r1), broken)
                    for i, (label, clean, adv, robust, c1, r1, broken) in enumerate(
                        zip(
                            result.labels,
                            result.clean_pred,
                            result.adv_pred,
                            result.robust,
                            result.clean_single,
                            result.robust_single,
                            result.broken_by,
                            strict=True,
                        )
                    )
                ],
            )
            for position, a in enumerate(attacks):
                self.db.execute(
                    "INSERT INTO cell_attacks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (result.cell, position, a.label, a.name, json.dumps(a.params, sort_keys=True),
                     str(a.target), a.adaptive, a.attacked, a.broken, a.forwards, a.backwards, a.wall_seconds,
                     a.fit_seconds, a.fit_cached, a.escalation),
                )  # fmt: skip
                self.db.executemany(
                    "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?)",
                    [(result.cell, i, position, pred, dist, aim) for i, pred, dist, aim in a.attempts],
                )
                if a.learned is not None:
                    row = (result.cell, position, *_blob(a.learned))
                    self.db.execute("INSERT INTO learned VALUES (?, ?, ?, ?)", row)
            self.db.executemany(
                "INSERT INTO examples VALUES (?, ?, ?, ?, ?)",
                [(result.cell, *_packed(*example)) for example in result.examples],
            )
            self.db.executemany(
                "INSERT INTO sanity VALUES (?, ?, ?, ?, ?, ?)",
                [(result.cell, i, c.name, c.value, int(c.flagged), c.detail)
                 for i, c in enumerate(result.checks)],
            )  # fmt: skip
            self.db.executemany(
                f"INSERT INTO privacy VALUES ({', '.join('?' * (1 + len(PRIVACY_FIELDS)))})",
                [(result.cell, *(getattr(m, f) for f in PRIVACY_FIELDS)) for m in result.privacy],
            )
            self.db.execute(
                "INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, datetime('now'))",
                (
                    result.cell,
                    result.defense,
                    result.norm,
                    result.eps,
                    json.dumps([a.label for a in attacks]),
                    int(result.cascade),
                    len(result.labels),
                    int((result.clean_pred == result.labels).sum()),
                    int(result.robust.sum()),
                    result.wall_seconds,
                    sum(a.forwards for a in attacks),
                    sum(a.backwards for a in attacks),
                ),
            )

    def save_certification(self, result: CertificationResult) -> None:
        """Write one defense's certificates in one transaction, replacing any it had before."""
        settings = result.settings
        with self._transaction():
            for table in ("certifications", "certificates"):
                self.db.execute(f"DELETE FROM {table} WHERE defense = ?", (result.defense,))
            self.db.executemany(
                "INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (result.defense, i, int(label), int(prediction), int(count), float(p_lower),
                     None if np.isnan(radius) else float(radius))
                    for i, (label, prediction, count, p_lower, radius) in enumerate(
                        zip(result.labels, result.predictions, result.counts, result.p_lower, result.radii,
                            strict=True)
                    )
                ],
            )  # fmt: skip
            self.db.execute(
                "INSERT INTO certifications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, datetime('now'))",
                (result.defense, result.key, settings["sigma"], settings["n0"], settings["n"],
                 settings["alpha"], settings["samples"], settings["batch_size"], settings["seed"],
                 result.forwards, result.wall_seconds),
            )  # fmt: skip

    def save_replay(self, result: ReplayResult) -> None:
        """Write one defense's replay protocol in one transaction, replacing any it had before."""
        with self._transaction():
            for table in ("replays", "replay_trials", "transfers"):
                self.db.execute(f"DELETE FROM {table} WHERE defense = ?", (result.defense,))
            for position, craft in enumerate(result.crafts):
                self.db.execute(
                    "INSERT INTO replays VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (result.defense, position, result.key, craft.attack, craft.mode, craft.samples,
                     craft.crafted_fooled, craft.queries, craft.wall_seconds),
                )  # fmt: skip
                self.db.executemany(
                    "INSERT INTO replay_trials VALUES (?, ?, ?, ?, ?, ?)",
                    [(result.defense, position, *trial) for trial in craft.trials],
                )
            self.db.executemany(
                "INSERT INTO transfers VALUES (?, ?, ?, ?, ?)",
                [(result.defense, *transfer) for transfer in result.transfers],
            )

    def save_unrestricted(self, result: UnrestrictedResult) -> None:
        """One unrestricted attack's made inputs against one defense, per input, in one transaction, and a
        few of them with what each was made from (a carrier, a test input) for the report."""
        defense, attack = result.defense, result.attack
        with self._transaction():
            for table in ("unrestricted_runs", "unrestricted", "unrestricted_examples"):
                self.db.execute(f"DELETE FROM {table} WHERE defense = ? AND attack = ?", (defense, attack))
            self.db.execute(
                "INSERT INTO unrestricted_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (defense, attack, result.key, result.listener, result.source, result.norm, result.fit_seconds,
                 result.wall_seconds),
            )  # fmt: skip
            self.db.executemany(
                "INSERT INTO unrestricted VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(defense, attack, *r) for r in result.rows],
            )
            self.db.executemany(
                "INSERT INTO unrestricted_examples VALUES (?, ?, ?, ?, ?, ?)",
                [(defense, attack, *_packed(*example)) for example in result.examples],
            )

    def unrestricted_keys(self) -> set[str]:
        return {row[0] for row in self._query("SELECT key FROM unrestricted_runs")[1]}

    def unrestricted_runs(self) -> list[dict[str, Any]]:
        """Each run of the last unrestricted plan (meta ``unrestricted_plan``), in plan order."""
        return self._planned("unrestricted_runs", "unrestricted_plan")

    def unrestricted(self, defense: str, attack: str) -> list[dict[str, Any]]:
        query = "SELECT * FROM unrestricted WHERE defense = ? AND attack = ? ORDER BY idx"
        return self._rows(query, (defense, attack))

    def replay_keys(self) -> set[str]:
        return {row[0] for row in self._query("SELECT DISTINCT key FROM replays")[1]}

    def certification_keys(self) -> set[str]:
        return {row[0] for row in self._query("SELECT key FROM certifications")[1]}

    # Reading: only what the current plan holds, in plan order.

    def cells(self) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT c.* FROM plan p JOIN cells c ON c.cell = p.cell ORDER BY p.position",
        )
        for row in rows:
            row["attacks"] = json.loads(row["attacks"])
        return rows

    def sanity(self, cell: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM sanity WHERE cell = ? ORDER BY position", (cell,))

    def privacy(self, cell: str) -> list[dict[str, Any]]:
        query = f"SELECT {', '.join(PRIVACY_FIELDS)} FROM privacy WHERE cell = ? ORDER BY rowid"
        return self._rows(query, (cell,))

    def cell_attacks(self, cell: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM cell_attacks WHERE cell = ? ORDER BY position", (cell,))

    def samples(self, cell: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM samples WHERE cell = ? ORDER BY idx", (cell,))

    def attempts(self, cell: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM attempts WHERE cell = ? ORDER BY position, idx", (cell,))

    def examples(self, cell: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
        query = "SELECT idx, shape, clean, adversarial FROM examples WHERE cell = ? ORDER BY idx"
        return _arrays(self._query(query, (cell,))[1])

    def learned(self, cell: str) -> dict[int, np.ndarray]:
        """What each generator of the cell learned (:attr:`advsec.records.AttackRecord.learned`), by the
        attack's position in the cell; generators with nothing to show are absent."""
        query = "SELECT position, shape, value FROM learned WHERE cell = ? ORDER BY position"
        return {position: _array(shape, value) for position, shape, value in self._query(query, (cell,))[1]}

    def unrestricted_examples(self, defense: str, attack: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
        query = (
            "SELECT idx, shape, source, made FROM unrestricted_examples WHERE defense = ? AND attack = ? "
            "ORDER BY idx"
        )
        return _arrays(self._query(query, (defense, attack))[1])

    def certifications(self) -> list[dict[str, Any]]:
        """Each defense's certification in the last certify plan (meta ``certify_plan``), in plan order."""
        return self._planned("certifications", "certify_plan")

    def certificates(self, defense: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM certificates WHERE defense = ? ORDER BY idx", (defense,))

    def replays(self) -> list[dict[str, Any]]:
        """Each attacker of the last replay plan (meta ``replay_plan``), in plan order, with its trials."""
        plan = self.meta().get("replay_plan", [])
        stored = self._rows("SELECT * FROM replays ORDER BY position")
        rows = [row for key in plan for row in stored if row["key"] == key]
        for row in rows:  # trials only for the rows in the plan, not for stale ones of earlier settings
            row["trials"] = self._rows(
                "SELECT delay, repeat, fooled, clean_wrong FROM replay_trials"
                " WHERE defense = ? AND position = ? ORDER BY delay, repeat",
                (row["defense"], row["position"]),
            )
        return rows

    def transfers(self, defense: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM transfers WHERE defense = ? ORDER BY source, target", (defense,))

    def models(self) -> list[dict[str, Any]]:
        """Every model recorded; a store written before models were described has an empty description
        and no warnings."""
        rows = self._rows("SELECT * FROM models")
        for row in rows:
            row["params"] = json.loads(row["params"])
            row["history"] = json.loads(row["history"])
            row["description"] = json.loads(row.get("description") or "{}")
            row["warnings"] = json.loads(row.get("warnings") or "[]")
        return rows

    def _planned(self, table: str, plan: str) -> list[dict[str, Any]]:
        """The rows of ``table`` whose key is in the meta entry ``plan``, in its order."""
        rows = {row["key"]: row for row in self._rows(f"SELECT * FROM {table}")}
        return [rows[key] for key in self.meta().get(plan, []) if key in rows]

    def _rows(self, query: str, args: tuple = ()) -> list[dict[str, Any]]:
        names, rows = self._query(query, args)
        return [dict(zip(names, row, strict=True)) for row in rows]


def _damage(checked: list[tuple[str]]) -> str | None:
    """The first problem in SQLite's ``quick_check`` rows (every page read once), or None when it says ok."""
    found = [line for (row,) in checked for line in str(row).splitlines() if line not in ("", "ok")]
    return next((line for line in found if not line.startswith("***")), found[0]) if found else None


def _blob(array: np.ndarray) -> tuple[str, bytes]:
    """An array as stored: its shape (JSON) and its values as little-endian float32 bytes; see _array."""
    return json.dumps(list(array.shape)), array.astype("<f4").tobytes()


def _array(shape: str, value: bytes) -> np.ndarray:
    return np.frombuffer(value, "<f4").reshape(json.loads(shape))


def _packed(idx: int, before: np.ndarray, after: np.ndarray) -> tuple[int, str, bytes, bytes]:
    """(index, shape, before, after) as stored, the two arrays of one shape; see _arrays."""
    shape, packed = _blob(before)
    return idx, shape, packed, _blob(after)[1]


def _arrays(rows: Iterable[tuple[int, str, bytes, bytes]]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(index, before, after) pairs of stored float32 arrays, reshaped as recorded."""
    return [(idx, _array(shape, before), _array(shape, after)) for idx, shape, before, after in rows]
