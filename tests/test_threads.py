"""Thread sharing: torch gets the cores other processes leave idle, at least one."""

import torch

from advsec import threads
from advsec.threads import Balancer, Reading, others_busy, threads_for


def test_threads_are_the_cores_left_idle_and_never_none() -> None:
    assert threads_for(2, 0.0) == 2  # alone: every core
    assert threads_for(2, 1.1) == 1  # beside one busy process: the core it leaves
    assert threads_for(2, 3.0) == 1  # crowded out: still one
    assert threads_for(16, 4.4) == 12


def test_only_other_processes_work_counts_as_busy() -> None:
    before = Reading(at=10.0, machine_busy=100.0, own=40.0)
    # Two seconds later the machine had worked 3.5 CPU-seconds, 2 of them this process's own.
    assert others_busy(before, Reading(at=12.0, machine_busy=103.5, own=42.0)) == 0.75
    assert others_busy(before, Reading(at=12.0, machine_busy=101.0, own=42.0)) == 0.0  # clock skew


def test_a_fixed_thread_count_is_kept(monkeypatch) -> None:
    kept = torch.get_num_threads()
    monkeypatch.setenv("ADVSEC_THREADS", "1")
    try:
        balancer = Balancer()
        torch.set_num_threads(2)
        balancer.rebalance()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(kept)


def test_rebalancing_measures_at_most_once_an_interval(monkeypatch) -> None:
    kept = torch.get_num_threads()
    monkeypatch.delenv("ADVSEC_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    reads = []
    monkeypatch.setattr(threads, "_read", lambda now: reads.append(now) or Reading(now, 0.0, 0.0))
    clock = [100.0]
    try:
        balancer = Balancer(clock=lambda: clock[0])
        for now in (100.0, 100.0, 100.5, 100.999, 101.25, 102.0, 102.5, 102.5):
            clock[0] = now
            balancer.rebalance()
        assert reads == [100.0, 101.25, 102.5]  # the first call, then each first call an interval later
        assert 1 <= torch.get_num_threads() <= balancer.cores
    finally:
        torch.set_num_threads(kept)
