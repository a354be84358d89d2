"""The one progress helper: rich bars on a terminal's stderr, silent under ``--quiet``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Task:
    def __init__(self, bars: RichProgress | None, task_id: int | None) -> None:
        self._bars = bars
        self._id = task_id

    def advance(self, steps: int = 1) -> None:
        if self._bars is not None and self._id is not None:
            self._bars.advance(self._id, steps)

    def reset(self) -> None:
        """Back to no steps done: the work starts over."""
        if self._bars is not None and self._id is not None:
            self._bars.reset(self._id)


class Progress:
    """Progress bars and log lines for a long operation; everything goes to stderr."""

    def __init__(self, quiet: bool = False, *, warnings: bool = True) -> None:
        self.quiet = quiet
        self.warnings = warnings  # still printed when bars and logs are quiet (--json); not with --quiet
        self.console = Console(stderr=True)
        self._bars: RichProgress | None = None

    def __enter__(self) -> Progress:
        if not self.quiet:
            self._bars = RichProgress(
                TextColumn("{task.description:<32}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Task]:
        """A bar that disappears when done, so a long grid leaves only its log lines behind."""
        if self._bars is None:
            yield Task(None, None)
            return
        task_id = self._bars.add_task(description, total=total)
        try:
            yield Task(self._bars, task_id)
        finally:
            self._bars.remove_task(task_id)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False)

    def warn(self, message: str) -> None:
        """A warning about what is evaluated: printed unless every output is silenced."""
        if self.warnings:
            self.console.print(
                f"[bold yellow]advsec: warning:[/] {escape(message)}", highlight=False, soft_wrap=True
            )
