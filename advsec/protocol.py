"""The side protocols' one skeleton: certify, replay and unrestricted each plan pieces of work keyed by their
content, skip those the store already holds, and run the rest under their own seeds, saving each whole.

A protocol says what its pieces are (:meth:`SideProtocol.jobs`), how one runs and how its result is
stored; :func:`run_side_protocol` does the rest, the same way for all three, so an interrupted run resumes
with the next piece and a reused ``--out`` reports only what this run planned.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from advsec.keys import seeded
from advsec.runtime import Runtime
from advsec.spec import AttackSpec, DefenseSpec
from advsec.store import Store


@dataclass(frozen=True)
class Job:
    """One piece of a protocol's work: a defense (and, where the protocol has several, an attack)."""

    key: str  # a hash of everything that determines the result: a result stored under it is reused
    defense: DefenseSpec
    attack: AttackSpec | None = None


class SideProtocol(ABC):
    """A protocol run after the grid on the same trained models, with its own plan in the store."""

    name: ClassVar[str]  # for the log: "certify", "replay", "unrestricted"
    plan_meta: ClassVar[str]  # the store's meta entry holding this protocol's plan (store.SIDE_PLANS)

    @abstractmethod
    def jobs(self, runtime: Runtime) -> list[Job]:
        """Every piece of work the spec asks of this protocol, in report order."""

    @abstractmethod
    def done(self, store: Store) -> set[str]:
        """The keys of the pieces already in the store."""

    @abstractmethod
    def run(self, runtime: Runtime, job: Job, seed: int) -> Any:
        """One piece's result (a record of :mod:`advsec.records`); the global generator is seeded ``seed``."""

    @abstractmethod
    def save(self, store: Store, result: Any) -> None:
        """Write one piece's result in one transaction."""

    def plan_extras(self, runtime: Runtime) -> dict[str, Any]:
        """Meta entries the report reads beside the plan; none by default."""
        return {}


def run_side_protocol(protocol: SideProtocol, runtime: Runtime) -> None:
    """Run every piece of ``protocol`` that the runtime's store does not hold yet."""
    store, progress = runtime.store, runtime.progress
    assert store is not None, "a protocol writes its results to the runtime's store"
    if "name" not in store.meta():
        store.set_meta(runtime.meta())
    jobs = protocol.jobs(runtime)
    store.set_meta({protocol.plan_meta: [job.key for job in jobs], **protocol.plan_extras(runtime)})
    done = protocol.done(store)
    pending = [job for job in jobs if job.key not in done]
    progress.log(
        f"{runtime.spec.name}: {protocol.name}: {len(pending)} to run, {len(jobs) - len(pending)} done before"
    )
    for job in pending:
        seed = runtime.seed(job.key)
        with seeded(seed, runtime.device):  # moving models draw from the global generator
            result = protocol.run(runtime, job, seed)
        protocol.save(store, result)
    progress.finished(protocol.name)  # the grid's forecast priced the whole protocol as one piece
