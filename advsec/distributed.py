"""Scale-out on Ray: one task per cell, on a local cluster started here or an existing one.

The driver trains (or loads) every model the cells need before any task starts, so tasks only read them
from the model cache: this machine's disk for a local cluster; for a remote one, point ``ADVSEC_CACHE``
at a path every node shares. Tasks evaluate with the driver's seeds and thread count and hand their
results back; only the driver writes the results store, so a task that dies loses nothing stored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch

import advsec.registry as registry
from advsec.checkpoints import cache_dir
from advsec.errors import AdvsecError
from advsec.harness import Cell, CellEvaluator
from advsec.progress import Progress
from advsec.records import CellResult
from advsec.runtime import Runtime
from advsec.spec import Spec


class RayExecutor:
    """Runs each cell as a Ray task; ``address`` joins an existing cluster, None starts a local one."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def map(self, evaluator: CellEvaluator, cells: list[Cell]) -> Iterator[CellResult]:
        ray = _ray()
        runtime = evaluator.runtime
        for defense in {cell.defense.label: cell.defense for cell in cells}.values():
            runtime.trained(defense)  # into the cache the workers read
            runtime.progress.finished(f"train/{defense.label}")
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(
                address=self.address, include_dashboard=False, logging_level="ERROR", log_to_driver=False
            )
        try:
            task = ray.remote(_evaluate)
            context = {
                "cache": str(cache_dir().parent),
                "data": os.environ.get("ADVSEC_DATA"),
                "threads": torch.get_num_threads(),
                "device": str(runtime.device),
            }
            pending = [task.remote(runtime.spec, cell, context) for cell in cells]
            while pending:
                finished, pending = ray.wait(pending, num_returns=1)
                yield ray.get(finished[0])
        finally:
            if started_here:
                ray.shutdown()


def _evaluate(spec: Spec, cell: Cell, context: dict[str, Any]) -> CellResult:
    """One cell in a Ray worker: the driver's cache, data, plugins and thread count, then the usual path."""
    os.environ["ADVSEC_CACHE"] = context["cache"]
    if context["data"]:
        os.environ["ADVSEC_DATA"] = context["data"]
    torch.set_num_threads(context["threads"])  # float sums in the same order as the driver's
    for plugin in spec.plugins:
        registry.load_plugin_file(plugin, via="spec key plugins")
    runtime = Runtime(spec, device=torch.device(context["device"]), progress=Progress(quiet=True))
    return CellEvaluator(runtime)(cell)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise AdvsecError(
            "the ray executor needs Ray, which is not installed: pip install 'advsec[ray]'"
        ) from exc
    return ray
