"""What every benchmark script shares: a command line with --threads, where the data sets live, and where
its figures go: ``record`` writes them to the script's own section of docs/results.md, with the date, the
machine and the command line, so that no measured figure is ever typed by hand.

    python benchmarks/common.py    # adds a "not run yet" section for every script that has none
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "docs" / "results.md"
RESULTS_HEADER = """# Measured results

Every figure on this page was written by a script in [`benchmarks/`](../benchmarks), from its own run, never
typed by hand: each section says when (UTC), on what machine, at which commit and with which command line it
was measured. Run a script again to replace its section (`record` in `benchmarks/common.py` rewrites only
that script's section, between its markers). Scripts run with reduced arguments say so in their command
line. The rest of the documentation describes what these scripts measure but quotes none of their numbers.
"""


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser that prints the script's docstring as its help and takes ``--threads`` (default 2)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser


def parse_benchmark_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line, pin torch's threads (advsec.threads keeps them), and use ../shared/data
    unless $ADVSEC_DATA is set."""
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["ADVSEC_THREADS"] = str(args.threads)
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


class Output:
    """Prints a benchmark's lines and keeps them, so that :func:`record` writes exactly what was printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.extend(text.split("\n"))


def benchmark_names() -> list[str]:
    """The scripts that measure, by name: every ``benchmarks/*.py`` but this one."""
    return sorted(path.stem for path in Path(__file__).parent.glob("*.py") if path.stem != "common")


def _markers(section: str) -> tuple[str, str]:
    return f"<!-- results: {section} -->", f"<!-- /results: {section} -->"


def _block(section: str, body: str) -> str:
    start, end = _markers(section)
    return f"{start}\n## {section}\n\n{body.strip()}\n{end}"


def _command(argv: Sequence[str]) -> str:
    """The command line as typed from the repository root: ``python benchmarks/x.py --flag``."""
    script = Path(argv[0]).resolve() if argv else Path("?")
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return shlex.join(["python", str(shown), *argv[1:]])


def machine() -> str:
    """Cores, CPU model, system, Python and torch versions, and torch's threads: what a timing depends on."""
    cpu = platform.processor() or platform.machine()
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = names[0].strip() if names else cpu
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}"
    )


def _commit() -> str:
    """The git commit measured, marked when the working tree differs from it (docs/results.md aside, which
    the scripts themselves write); empty outside a checkout."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/results.md"):
        commit += " (working tree modified)"
    return commit


def _ensure_sections(text: str, sections: Sequence[str]) -> str:
    """``text`` with a "not run yet" section appended for every name in ``sections`` that has none."""
    for section in sections:
        if _markers(section)[0] not in text:
            body = f"Not run yet: run `python benchmarks/{section}.py`."
            text = text.rstrip("\n") + "\n\n" + _block(section, body) + "\n"
    return text


def record(
    section: str,
    lines: Sequence[str],
    *,
    path: Path = RESULTS,
    sections: Sequence[str] | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Replace ``section`` of ``path`` (docs/results.md) with ``lines``, stamped with the date, the machine,
    the commit and the command line; every other section and the text around them stay as they are."""
    text = path.read_text() if path.exists() else RESULTS_HEADER
    text = _ensure_sections(text, [*(benchmark_names() if sections is None else sections), section])
    commit, command = _commit(), _command(sys.argv if argv is None else argv)
    stamp = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`",
        f"on {machine()}"
        + (f", at commit {commit}" if commit else "")
        + f"; load average {os.getloadavg()[0]:.1f} when recorded (other work on the machine slows timings).",
    ]
    body = "\n".join([*stamp, "", "```text", *(line.rstrip() for line in lines), "```"])
    start, end = (re.escape(marker) for marker in _markers(section))
    text = re.sub(f"{start}.*?{end}", lambda _: _block(section, body), text, count=1, flags=re.S)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    RESULTS.write_text(_ensure_sections(RESULTS.read_text() if RESULTS.exists() else RESULTS_HEADER,
                                        benchmark_names()))  # fmt: skip
