"""The one progress helper: where a run is, on stderr; silent under ``--quiet``.

On a terminal (or in a notebook) it draws rich bars. Anywhere else (a log file, a pipe, a CI job) bars
print nothing, so the run says where it is in plain lines instead: the harness writes one as each cell
starts and finishes and one per attack stage (:meth:`Progress.status`), and any other long task (a
training) writes one a minute at most. Each line starts with the run's elapsed time and, once the run has
a forecast (:mod:`advsec.forecast`), an estimate of what is left (:class:`Pace`)::

    [12:03 elapsed, ~8 min left] standard linf ε=0.1: apgd-t done (41 of 300 robust), 2 of 3 stages
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.progress import Task as RichTask
from rich.text import Text

LINE_EVERY = 60.0  # seconds: a long task's lines where stderr is no terminal come no closer than this
PRIOR_WEIGHT = 0.05  # the share of a kind's forecast its first measurements are weighed against


class Pace:
    """What is left of a run, in seconds: the forecast of each piece still to do, corrected by how long
    the finished pieces of its kind (training, attacks, ...) took against their forecast.

    A piece's measured time is the wall time from the previous piece's end to its own (pieces that finish
    together, as a distributed run's cells do, share it by their forecast), so time no piece was forecast
    for, such as checks or loading a model, is charged to the piece it delays. Per kind the correction is
    ``(measured + w) / (forecast done + w)``, with ``w`` the forecast of ``PRIOR_WEIGHT`` of that kind's
    work: it starts at 1, trusting the timed passes, and follows the measurements once a few pieces are
    done. What is left is the sum over the pieces to do of forecast × correction, less the time already
    spent on the first of them (at most its own share).
    """

    def __init__(self, pieces: Iterable[tuple[str, str, float]], now: float) -> None:
        self._todo: dict[str, list[tuple[str, float]]] = {}  # key -> its (kind, forecast seconds)
        self._total: dict[str, float] = defaultdict(float)
        for key, kind, seconds in pieces:
            self._todo.setdefault(key, []).append((kind, seconds))
            self._total[kind] += seconds
        self._forecast_done: dict[str, float] = defaultdict(float)
        self._measured: dict[str, float] = defaultdict(float)
        self._since = now
        self._lock = threading.Lock()  # a terminal's bars read what is left from their own thread

    def finish(self, key: str, now: float) -> None:
        """The piece ``key`` is done, with every piece under it (``key/...``); a key never forecast (an
        escalation's follow-up) leaves its time to the next piece that is."""
        with self._lock:
            done = [k for k in self._todo if k == key or k.startswith(f"{key}/")]
            pieces = [piece for k in done for piece in self._todo.pop(k)]
            if not pieces:
                return
            spent, self._since = now - self._since, now
            forecast = sum(seconds for _, seconds in pieces)
            for kind, seconds in pieces:
                self._forecast_done[kind] += seconds
                self._measured[kind] += spent * (seconds / forecast if forecast > 0 else 1 / len(pieces))

    def correction(self, kind: str) -> float:
        """Measured over forecast seconds of the finished pieces of ``kind``, weighed against the forecast."""
        weight = PRIOR_WEIGHT * self._total[kind]
        done = self._forecast_done[kind] + weight
        return (self._measured[kind] + weight) / done if done > 0 else 1.0

    def left(self, now: float) -> float:
        with self._lock:
            ahead = [sum(s * self.correction(kind) for kind, s in pieces) for pieces in self._todo.values()]
            if not ahead:
                return 0.0
            return max(sum(ahead) - min(now - self._since, ahead[0]), 0.0)


class Task:
    """One long operation's progress: a bar on a terminal, a line a minute at most elsewhere."""

    def __init__(self, progress: Progress, description: str, total: int, unit: str) -> None:
        self._progress, self.description, self.total, self.unit = progress, description, total, unit
        self._bar = None if progress.bars is None else progress.bars.add_task(description, total=total)
        self.completed = 0
        self._started = progress.clock()

    def advance(self, steps: int = 1) -> None:
        self.completed += steps
        progress = self._progress
        if progress.bars is not None and self._bar is not None:
            progress.bars.advance(self._bar, steps)
        elif progress.plain and progress.clock() - progress.last_line >= LINE_EVERY:
            unit = f" {self.unit}" if self.unit else ""
            progress.status(f"{self.description}: {self.completed} of {self.total}{unit}", left=self._left())

    def reset(self) -> None:
        """Back to no steps done: the work starts over."""
        self.completed, self._started = 0, self._progress.clock()
        if self._progress.bars is not None and self._bar is not None:
            self._progress.bars.reset(self._bar)

    def _left(self) -> float | None:
        """This task's own remaining seconds at its rate so far (for a run without a forecast)."""
        if not self.completed:
            return None
        return (self._progress.clock() - self._started) / self.completed * (self.total - self.completed)

    def close(self) -> None:
        """Take the bar away."""
        if self._progress.bars is not None and self._bar is not None:
            self._progress.bars.remove_task(self._bar)


class Progress:
    """Progress bars and log lines for a long operation; everything goes to stderr."""

    def __init__(
        self,
        quiet: bool = False,
        *,
        warnings: bool = True,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> None:
        """``warnings`` still print when bars and logs are quiet (``--json``), not with ``--quiet``;
        ``started``: when the run began on ``clock`` (a command's start, before its imports); now by
        default."""
        self.quiet = quiet
        self.warnings = warnings
        self.console = Console(stderr=True)
        self.clock = clock
        self.started = clock() if started is None else started
        self.last_line = self.started
        self.pace: Pace | None = None
        self.bars: RichProgress | None = None

    @property
    def plain(self) -> bool:
        """Whether progress is told in plain lines: not quiet, and stderr is no terminal (nor a notebook,
        where the bars draw)."""
        return not (self.quiet or self.console.is_terminal or self.console.is_jupyter)

    def __enter__(self) -> Progress:
        if not (self.quiet or self.plain):
            self.bars = RichProgress(
                TextColumn("{task.description:<32}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                _LeftColumn(self),
                console=self.console,
            )
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None

    @contextmanager
    def task(self, description: str, total: int, unit: str = "") -> Iterator[Task]:
        """A bar that disappears when done, so a long grid leaves only its log lines behind."""
        task = Task(self, description, total, unit)
        try:
            yield task
        finally:
            task.close()

    def expect(self, pieces: Iterable[tuple[str, str, float]]) -> None:
        """The run's forecast: (key, kind, seconds) of each piece of work to do, counted down as
        :meth:`finished` names them."""
        self.pace = Pace(pieces, self.clock())

    def finished(self, key: str) -> None:
        """The piece of work ``key`` (of :meth:`expect`) is done."""
        if self.pace is not None:
            self.pace.finish(key, self.clock())

    def status(self, message: str, *, finished: str | None = None, left: float | None = None) -> None:
        """A line saying where the run is, where stderr is no terminal (the bars say it there): the
        elapsed time, what is left (the forecast's, else ``left``) and ``message``. ``finished`` names the
        piece of work just done."""
        if finished is not None:
            self.finished(finished)
        if not self.plain:
            return
        now = self.clock()
        left = self.pace.left(now) if self.pace is not None else left
        where = f"{clock_time(now - self.started)} elapsed"
        where += "" if left is None else f", ~{duration(left)} left"
        self.log(f"[{where}] {message}")

    def log(self, message: str) -> None:
        if not self.quiet:
            self.last_line = self.clock()
            self.console.print(message, highlight=False, soft_wrap=self.plain)

    def warn(self, message: str) -> None:
        """A warning about what is evaluated: printed unless every output is silenced."""
        if self.warnings:
            self.console.print(
                f"[bold yellow]advsec: warning:[/] {escape(message)}", highlight=False, soft_wrap=True
            )


class _LeftColumn(TimeRemainingColumn):
    """What is left of the whole run where it has a forecast, else rich's estimate for the bar's task."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def render(self, task: RichTask) -> Text:
        pace = self.progress.pace
        if pace is None:
            return super().render(task)
        return Text(f"run ~{duration(pace.left(self.progress.clock()))} left", style="progress.remaining")


def duration(seconds: float) -> str:
    """A length of time as a person reads it: "40 s", "12 min", "3.5 h"."""
    if seconds < 90:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def clock_time(seconds: float) -> str:
    """Elapsed time as a clock shows it: "12:03", "1:02:03"."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
