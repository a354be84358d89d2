"""One call runs everything a spec asks for: the grid of cells, then each side protocol the spec names.

The command line's ``run`` is this function; so is a notebook's. Every step resumes from the results store
in ``out_dir``, which one run at a time may write (:func:`advsec.store.claimed`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from advsec.certify import Certification
from advsec.harness import Executor, plan, run_grid
from advsec.progress import Progress
from advsec.protocol import SideProtocol, run_side_protocol
from advsec.replay import Replay
from advsec.runtime import Runtime
from advsec.spec import Spec
from advsec.store import Store, claimed
from advsec.unrestricted import Unrestricted, unrestricted_attacks


def side_protocols(spec: Spec) -> list[SideProtocol]:
    """The protocols ``spec`` asks for besides the grid, in the order they run."""
    asked = [(spec.certify is not None, Certification), (spec.replay is not None, Replay),
             (bool(unrestricted_attacks(spec)), Unrestricted)]  # fmt: skip
    return [protocol() for wanted, protocol in asked if wanted]


def run_spec(
    spec: Spec,
    out_dir: Path,
    *,
    device: torch.device,
    progress: Progress,
    fresh: bool = False,
    executor: Executor | None = None,
    max_cost: float | None = None,
) -> Store:
    """Run the grid of ``spec`` into ``out_dir``'s results store, then its side protocols; return the store.

    ``fresh`` forgets what the store held; ``max_cost`` refuses a grid estimated to cost more sample passes;
    ``executor`` runs the grid's cells elsewhere (:class:`advsec.distributed.RayExecutor`).
    """
    runtime = Runtime(spec, device=device, progress=progress)
    plan(spec, runtime.dataset)  # a spec its data cannot serve is refused before anything is written
    path = Path(out_dir) / "results.sqlite"
    with claimed(path):
        store = runtime.store = Store(path)
        run_grid(runtime, fresh=fresh, executor=executor, max_cost=max_cost)
        for protocol in side_protocols(spec):
            run_side_protocol(protocol, runtime)
    return store
