"""Several evaluations on one machine: the quickstart alone, two at once and three at once, cold caches.

    python benchmarks/contention.py [--spec evaluations/quickstart.toml] [--baseline]

Each run is `advsec run SPEC --quiet --no-report --fresh` in its own process with its own empty model
cache, so each trains its two models and attacks them, as a user's first run does. Printed: each setting's
wall time (the slowest of the runs started together) and its ratio to one run alone. With `--baseline`
the same is measured with torch's own thread count pinned (`ADVSEC_THREADS` set to every core), which is
what advsec did before it shared the cores (advsec.threads).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, Output, benchmark_parser, parse_benchmark_args, record


def together(spec: Path, runs: int, pinned: int | None) -> float:
    """Seconds until the last of ``runs`` quickstarts started together has finished."""
    started = time.perf_counter()
    processes = []
    for _ in range(runs):
        folder = Path(tempfile.mkdtemp(prefix="contention-"))
        env = {**os.environ, "ADVSEC_CACHE": str(folder / "cache")}
        env.pop("ADVSEC_THREADS", None)
        env.pop("OMP_NUM_THREADS", None)
        if pinned is not None:
            env["ADVSEC_THREADS"] = str(pinned)
        command = [sys.executable, "-m", "advsec.cli", "run", str(spec), "--out", str(folder / "run"),
                   "--quiet", "--no-report", "--fresh"]  # fmt: skip
        processes.append(subprocess.Popen(command, env=env, cwd=REPO))
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"a run failed with exit code {process.returncode}")
    return time.perf_counter() - started


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--spec", type=Path, default=REPO / "evaluations" / "quickstart.toml")
    parser.add_argument("--baseline", action="store_true", help="also measure with the threads pinned")
    args = parse_benchmark_args(parser)
    say = Output()
    cores = len(os.sched_getaffinity(0))
    say(f"{args.spec.name}, each run with a cold model cache, on {cores} cores")
    say(f"{'threads':<34} {'runs at once':>12} {'seconds':>9} {'× one alone':>12}")
    settings = [("shared (advsec.threads)", None)] + [(f"pinned to {cores} (torch's default)", cores)] * (
        args.baseline
    )
    together(args.spec, 1, None)  # warm-up, untimed: the first run also pays for cold file caches
    for name, pinned in settings:
        alone = together(args.spec, 1, pinned)
        say(f"{name:<34} {1:>12} {alone:>9.1f} {1:>12.2f}")
        for runs in (2, 3):
            seconds = together(args.spec, runs, pinned)
            say(f"{name:<34} {runs:>12} {seconds:>9.1f} {seconds / alone:>12.2f}")
    record("contention", say.lines)


if __name__ == "__main__":
    main()
