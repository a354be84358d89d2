"""What every benchmark script shares: a command line with --threads, and where the data sets live."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser that prints the script's docstring as its help and takes ``--threads`` (default 2)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser


def parse_benchmark_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line, pin torch's threads, and use ../shared/data unless $ADVSEC_DATA is set."""
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "ADVSEC_DATA" not in os.environ and SHARED_DATA.is_dir():
        os.environ["ADVSEC_DATA"] = str(SHARED_DATA)
    return args


def fastest(run: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """The fastest of ``repeats`` runs (timing noise on a shared machine only ever adds), and its result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result
