"""How many CPU threads torch uses: the cores other processes leave idle, re-measured as advsec works.

torch starts one thread per core, and its OpenMP threads spin while they wait for the next parallel
region. Alone, that is the fastest choice; beside other busy processes it is the slowest, because spinning
threads hold the cores the other processes' threads are waiting for, and a model of small layers waits
more than it computes. advsec measures how busy the other processes keep the machine (``/proc/stat`` less
its own CPU time) at most once a second, from the loops that do its work, and gives torch the cores left
idle, at least one. Several evaluations on one machine then share it instead of fighting over it.

``ADVSEC_THREADS`` (or ``OMP_NUM_THREADS``) fixes the number instead; so does any system without
``/proc/stat``, where torch keeps its default.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

INTERVAL = 1.0  # seconds between measurements


@dataclass(frozen=True)
class Reading:
    """CPU time the whole machine and this process had spent, at one moment."""

    at: float  # monotonic seconds
    machine_busy: float  # CPU-seconds all cores spent not idle since boot
    own: float  # CPU-seconds this process spent, every thread of it


def threads_for(cores: int, others_busy: float) -> int:
    """Threads for the cores that ``others_busy`` (cores' worth of other processes' work) leaves idle;
    at least one."""
    return max(1, min(cores, round(cores - others_busy)))


def others_busy(before: Reading, after: Reading) -> float:
    """Cores' worth of work other processes did between two readings."""
    elapsed = after.at - before.at
    if elapsed <= 0:
        return 0.0
    return max(0.0, (after.machine_busy - before.machine_busy) - (after.own - before.own)) / elapsed


class Balancer:
    """Sets torch's thread count from the load of other processes, when :meth:`rebalance` is called."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # monotonic seconds; a test's own clock steps through the intervals
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.checked_at = -INTERVAL
        self.last: Reading | None = None

    def rebalance(self) -> None:
        """Set the threads, deciding at most once per :data:`INTERVAL`; cheap to call in a loop."""
        now = self.clock()
        if now - self.checked_at < INTERVAL:
            return
        self.checked_at = now
        threads = _fixed_threads() or self._measured(now)
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def _measured(self, now: float) -> int | None:
        """The cores other processes left idle since the last reading; None without ``/proc/stat``."""
        reading = _read(now)
        if reading is None:
            return None
        busy = _running_others() if self.last is None else others_busy(self.last, reading)
        self.last = reading
        return threads_for(self.cores, busy)


def _fixed_threads() -> int | None:
    for variable in ("ADVSEC_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _read(now: float) -> Reading | None:
    try:
        with open("/proc/stat") as stat:
            ticks = [int(t) for t in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle and waiting for I/O
    times = os.times()
    return Reading(now, (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), times.user + times.system)


def _running_others() -> float:
    """Before any interval has passed: the threads running right now, this one aside (``/proc/loadavg``)."""
    try:
        with open("/proc/loadavg") as loadavg:
            running = int(loadavg.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0, running - 1)


_BALANCER = Balancer()


def rebalance() -> None:
    """Give torch the cores other processes leave idle (see the module's docstring)."""
    _BALANCER.rebalance()
