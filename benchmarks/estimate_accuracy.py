"""How close the time estimate printed before a run comes to the run's measured wall time.

    python benchmarks/estimate_accuracy.py [--samples 300] [--eps 0.1 --eps 0.3] [--epochs 1]

Each case runs as a user runs it, in a subprocess whose stderr is a pipe (so progress comes as log lines,
stamped here as they arrive): the quickstart (`advsec run evaluations/quickstart.toml`, with a cold model
cache, so its two trainings are included) and a checkpoint evaluation (`advsec evaluate` with the
worst-case preset on a small MNIST CNN trained outside advsec, its test images in an .npz) at each
``--eps``: 0.1 leaves most of the samples robust, 0.3 breaks nearly all of them at the first stage, where the
attacks' upper bound in passes overstates them most. Printed per case: the estimate in seconds, the wall
time from the estimate's line to the last cell (what the estimate prices) and to the command's end (the
report included, which it does not price), the whole command's wall time (its start-up included, which
has passed when the estimate is printed), and their ratios; and the attacks' sample passes at the bound
against those they spent.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, Output, benchmark_parser, parse_benchmark_args, record
from own_checkpoint import MEAN, STD, Net, train_outside_advsec

ESTIMATE_LINE = "estimated time:"


def stamped_run(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Run ``command``; seconds from its start to its estimate's line, to its last cell's line and to its
    end."""
    started = time.perf_counter()
    done = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    estimate_at = last_cell_at = None
    for line in done.stderr:
        now = time.perf_counter() - started
        estimate_at = now if ESTIMATE_LINE in line and estimate_at is None else estimate_at
        last_cell_at = now if " cells\n" in line and "done in" in line else last_cell_at
    if done.wait() != 0 or estimate_at is None or last_cell_at is None:
        raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode})")
    return estimate_at, last_cell_at, time.perf_counter() - started


def case(say: Output, name: str, command: list[str], out: Path, env: dict[str, str]) -> None:
    from advsec.results import RunResults
    from advsec.store import Store

    estimate_at, last_cell_at, ended = stamped_run(command, env)
    results = RunResults.read(Store(out / "results.sqlite", readonly=True))
    cost = results.meta["estimated_cost"]
    seconds = cost["seconds"]
    spent = sum(cell.forwards + cell.backwards for cell in results.cells)
    priced, to_end = last_cell_at - estimate_at, ended - estimate_at
    say(f"{name}: {cost['pilot']['cells']} of {cost['pilot']['attacked_cells']} attacked cells piloted "
        f"on {cost['pilot']['samples']} samples")  # fmt: skip
    say(f"  estimate {seconds['total']:7.1f} s (training {seconds['training']:.1f}, attacks "
        f"{seconds['attacks']:.1f}, attacks at most {seconds['attacks_at_most']:.1f})")  # fmt: skip
    say(f"  wall     {priced:7.1f} s estimate to last cell, {to_end:.1f} s estimate to end, "
        f"{ended:.1f} s whole command")  # fmt: skip
    over = cost["attacks"] / max(spent, 1)
    say(f"  attack passes: bound {cost['attacks']:.3g}, spent {spent:.3g} (the bound {over:.1f}x over)")
    say(f"  ratio estimate / wall: {seconds['total'] / priced:.2f} to last cell, "
        f"{seconds['total'] / to_end:.2f} to end, {seconds['total'] / ended:.2f} whole command")  # fmt: skip
    # What a reader of the lines expects: the run ends its estimate after the elapsed time they show
    say(f"  ratio (elapsed at the estimate + estimate) / whole command: "
        f"{(estimate_at + seconds['total']) / ended:.2f}")  # fmt: skip


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--eps", type=float, action="append", help="budgets of the checkpoint case")
    parser.add_argument("--epochs", type=int, default=1)
    args = parse_benchmark_args(parser)
    say = Output()
    import torch
    from safetensors.torch import save_file

    from advsec.data.load import load_dataset

    folder = Path(tempfile.mkdtemp(prefix="estimate-accuracy-"))
    env = {**os.environ, "ADVSEC_CACHE": str(folder / "cache")}  # cold: the quickstart trains its models
    advsec = [sys.executable, "-m", "advsec.cli"]
    say(f"load average before the runs: {os.getloadavg()[0]:.1f}")
    case(say, "quickstart (cold cache)", [*advsec, "run", str(REPO / "evaluations" / "quickstart.toml"),
         "--out", str(folder / "quickstart")], folder / "quickstart", env)  # fmt: skip

    mnist = load_dataset("mnist")  # only to read the idx files; the model never meets advsec's training
    net = train_outside_advsec(mnist.x_train, mnist.y_train, args.epochs)
    save_file(net.state_dict(), folder / "net.safetensors")
    (folder / "net.py").write_text("import torch\nfrom torch import nn\n\n\n" + inspect.getsource(Net))
    x, y = mnist.x_test[: args.samples], mnist.y_test[: args.samples]
    np.savez(folder / "test.npz", x=x.numpy(), y=y.numpy())
    for eps in args.eps or [0.1, 0.3]:
        out = folder / f"checkpoint-{eps:g}"
        command = [*advsec, "evaluate", "--model", f"{folder / 'net.py'}:Net", "--weights",
                   str(folder / "net.safetensors"), "--mean", str(MEAN), "--std", str(STD), "--data",
                   str(folder / "test.npz"), "--eps", str(eps), "--out", str(out)]  # fmt: skip
        case(say, f"checkpoint, MNIST CNN ({args.epochs} epoch), {len(x)} images, worst-case, linf {eps:g}",
             command, out, env)  # fmt: skip
    say(f"load average after the runs: {os.getloadavg()[0]:.1f}; torch threads {torch.get_num_threads()}")
    record("estimate_accuracy", say.lines)


if __name__ == "__main__":
    main()
