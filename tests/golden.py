"""Per-sample rows recorded once, that a change meant to keep behaviour must reproduce bit for bit.

Each case runs a command as a user would, in a fresh process with one torch thread, float32 searches and a
cold model cache, and digests what its store holds per sample: every sample's verdict, every attempt (its
prediction, distance and target), every sanity check's value, every membership figure, every kept example.
Cells are named by what they are (model, norm, eps), not by their keys, so a change of how keys are made
is not a change of rows. Rows depend on the CPU's instruction set (oneDNN and MKL pick kernels by it), so
the digests are recorded with the machine's, and a machine of another kind skips with that reason.

    python -m tests.golden [CASE ...]   # re-record (only when a change is meant to alter rows)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from tests.brought import MEAN, STD, train_checkpoint

REPO = Path(__file__).resolve().parent.parent
RECORDED = Path(__file__).resolve().parent / "golden.json"
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "avx512_vnni", "fma")  # what picks the kernels
TABLES = {
    "samples": "SELECT c.defense, c.norm, c.eps, s.idx, s.label, s.clean_pred, s.adv_pred, s.robust, "
    "s.clean_single, s.robust_single, s.broken_by FROM samples s JOIN cells c USING (cell)",
    "attempts": "SELECT c.defense, c.norm, c.eps, a.idx, a.position, a.pred, a.distance, a.target "
    "FROM attempts a JOIN cells c USING (cell)",
    "sanity": "SELECT c.defense, c.norm, c.eps, s.position, s.name, s.value, s.flagged "
    "FROM sanity s JOIN cells c USING (cell)",
    "privacy": "SELECT c.defense, p.signal, p.members, p.nonmembers, p.accuracy, p.advantage, p.auc, "
    "p.tpr_001, p.tpr_01 FROM privacy p JOIN cells c USING (cell)",
    "examples": "SELECT c.defense, c.norm, c.eps, e.idx, e.clean, e.adversarial "
    "FROM examples e JOIN cells c USING (cell)",
    "attacks": "SELECT c.defense, c.norm, c.eps, a.position, a.attack, a.attacked, a.broken, a.forwards, "
    "a.backwards, a.escalation FROM cell_attacks a JOIN cells c USING (cell)",
}


def machine() -> dict[str, object]:
    """What decides which kernels compute the rows: the instruction set, the torch build."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split())
    except (OSError, IndexError):
        flags = set()
    return {"arch": platform.machine(), "torch": torch.__version__, "flags": [f for f in FLAGS if f in flags]}


def digest(out: Path) -> dict[str, dict[str, object]]:
    """Each table's row count and the sha256 of its rows, in a fixed order."""
    db = sqlite3.connect(out / "results.sqlite")
    found = {}
    for table, query in TABLES.items():
        rows = sorted(db.execute(query).fetchall(), key=repr)
        found[table] = {"rows": len(rows), "sha256": hashlib.sha256(repr(rows).encode()).hexdigest()}
    db.close()
    return found


def _command(args: list[str], folder: Path) -> subprocess.Popen:
    """``advsec ARGS --out folder/out`` started in a fresh process: one thread, a cold cache of its own."""
    data = os.environ.get("ADVSEC_DATA") or str(REPO.parent / "shared" / "data")  # as tests find it
    env = {**os.environ, "ADVSEC_THREADS": "1", "ADVSEC_CACHE": str(folder / "cache"), "ADVSEC_DATA": data}
    command = [sys.executable, "-m", "advsec.cli", *args, "--out", str(folder / "out"), "--quiet"]
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def quickstart(folder: Path) -> list[str]:
    """The README's quickstart, its searches in float32."""
    spec = (REPO / "evaluations" / "quickstart.toml").read_text()
    float32 = spec.replace("[evaluation]", '[evaluation]\nsearch_precision = "float32"')
    (folder / "quickstart.toml").write_text(float32)
    return ["run", str(folder / "quickstart.toml"), "--no-report"]


def checkpoint(folder: Path) -> list[str]:
    """The README's `advsec evaluate` of a checkpoint trained outside advsec (at one thread too), with the
    worst-case preset at two budgets; its searches are float32 on a CPU without native bfloat16, the only
    kind :func:`machine` lets compare."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_checkpoint(folder)
    finally:
        torch.set_num_threads(threads)
    model, weights, data = (
        f"{folder / 'nets.py'}:Net",
        str(folder / "net.safetensors"),
        str(folder / "test.npz"),
    )
    return ["evaluate", "--model", model, "--weights", weights, "--mean", str(MEAN), "--std", str(STD),
            "--data", data, "--eps", "8/255", "--eps", "0.1", "--samples", "100"]  # fmt: skip


def escalation(folder: Path, reduced: bool = True) -> list[str]:
    """evaluations/escalation-mnist.toml (hidden tricks and their truthful twins, flags that act), its
    searches in float32; reduced to a network trained on 3,000 images and 40 test images at ε 0.3."""
    spec = (REPO / "evaluations" / "escalation-mnist.toml").read_text()
    spec = spec.replace('plugins = ["plugins/', f'plugins = ["{REPO / "evaluations" / "plugins"}/')
    spec = spec.replace("[evaluation]", '[evaluation]\nsearch_precision = "float32"')
    if reduced:
        spec = spec.replace('dataset = "mnist"\n', "", 1)
        spec = spec.replace("[train]", '[dataset]\nname = "mnist"\ntrain_samples = 3000\n\n[train]', 1)
        spec = spec.replace("epochs = 5", "epochs = 1").replace("eps = [0.1, 0.3]", "eps = [0.3]")
        spec = spec.replace("samples = 500", "samples = 40").replace("steps = 40", "steps = 10")
    (folder / "escalation.toml").write_text(spec)
    return ["run", str(folder / "escalation.toml"), "--no-report"]


def full_escalation(folder: Path) -> list[str]:
    """evaluations/escalation-mnist.toml whole, its searches in float32 (minutes: ``pytest -m slow``)."""
    return escalation(folder, reduced=False)


CASES: dict[str, Callable[[Path], list[str]]] = {
    "quickstart": quickstart, "checkpoint": checkpoint, "escalation": escalation,
    "full_escalation": full_escalation,
}  # fmt: skip


def run_cases(names: list[str], root: Path) -> dict[str, dict[str, dict[str, object]]]:
    """The digests of the cases ``names``, each run in a folder of its own under ``root``, side by side
    (one thread each: what they compute does not depend on what runs beside them)."""
    started = {}
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        started[name] = (_command(CASES[name](folder), folder), folder)
    digests = {}
    for name, (process, folder) in started.items():
        _, errors = process.communicate()
        if process.returncode != 0:
            raise AssertionError(f"golden case {name} failed (exit {process.returncode}):\n{errors}")
        digests[name] = digest(folder / "out")
    return digests


def record(names: list[str]) -> None:
    """Run the cases ``names`` and write their digests, with this machine's facts, into ``golden.json``."""
    kept = json.loads(RECORDED.read_text())["cases"] if RECORDED.exists() else {}
    with tempfile.TemporaryDirectory() as root:
        kept |= run_cases(names, Path(root))
    RECORDED.write_text(json.dumps({"machine": machine(), "cases": kept}, indent=2) + "\n")


if __name__ == "__main__":
    record(sys.argv[1:] or list(CASES))
