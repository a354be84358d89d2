"""How long a run will take on this machine: the cost estimate's sample passes priced in seconds.

Before the run, a few real passes of each network that will make them are timed at the run's batch size:
forward alone (a prediction), forward with the backward to the input gradient (an attack's step), and a query
attack's forward, through the network's frozen copy where the run will make one (a deterministic, stateless
model: :mod:`advsec.frozen`), which can take a fraction of a plain forward's time. The network is the user's
loaded model or, for a model advsec will train, a fresh instance of its architecture: weights do not change
how long a pass takes. A training is priced by timing a few of its real steps
(:func:`advsec.train.trial_steps`: the defense's loss with its attack steps, the backward and the optimizer's
step) times the steps it takes.

The pass counts of :mod:`advsec.cost` are an upper bound for the attacks: the cascade attacks only what
every earlier stage left robust, and APGD and Square stop on a sample once it falls, so on a model that
breaks easily the bound overstates them many times over. Where the model exists before the run (the user's
checkpoint, a model in the cache), each attacked cell's cascade is therefore piloted on a few of its samples
(a seeded draw of one in ``PILOT_SHARE``, at most ``PILOT_MOST``), and the passes each stage spent there per
sample stand for the cell's. A model advsec has yet to train cannot be piloted: its attacks are priced at
the bound, which the running estimate of what is left corrects as stages finish
(:class:`advsec.progress.Pace`). Neither prices what is not a pass (sanity checks, the report) nor an
escalation's follow-up attacks.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

import advsec.registry as registry
from advsec.cost import Estimate, Work, stage_key, training_cost
from advsec.data.subset import subset_size
from advsec.defense import Defense
from advsec.frozen import FrozenTwin
from advsec.keys import seeded
from advsec.progress import duration
from advsec.records import AttackRecord
from advsec.runtime import CountingModel, Runtime
from advsec.spec import DefenseSpec, make_plugin
from advsec.train import TrainedModel, build_model, is_cached, trial_steps
from advsec.user_models import load_user_model

PILOT_SHARE = 16  # a cell's pilot attacks one sample in this many...
PILOT_MOST = 32  # ...and at most this many
PILOT_LEAST = 4  # a run of fewer samples a cell than PILOT_SHARE times this is priced at the bound
TIMED = 3  # timed runs of each pass or step, after an untimed one that pays one-off costs
PARTS = tuple(f.name for f in fields(Estimate))
TRAININGS = ("training", "shadows")  # the parts priced by timed training steps, not passes

# The harness's pilot (advsec.harness.pilot): a cell's cascade on the chosen samples, its stages' records
Pilot = Callable[[Runtime, Any, torch.Tensor], list[AttackRecord] | None]


@dataclass(frozen=True)
class PassTimes:
    """Seconds a sample's pass through one network takes on this machine, at the run's batch size."""

    forward: float  # forward alone: a prediction
    gradient: float  # forward and the backward to the input gradient: an attack's step
    query: float  # a query attack's forward, through the network's frozen copy where one is made

    def seconds(self, work: Work) -> float:
        return work.forwards * self.forward + work.gradients * self.gradient + work.queries * self.query


def time_passes(network: nn.Module, x: torch.Tensor, *, frozen: bool = False) -> PassTimes:
    """A few forward and input-gradient passes of ``network`` on the batch ``x``, timed, per sample; with
    ``frozen`` (a network that neither draws randomness nor keeps state) queries through its frozen copy,
    made at once here rather than after the samples the attacks pass first."""
    counted = CountingModel(network)  # the path an attack's passes take, its input-gradient split included
    twin = FrozenTwin(network, after=0) if frozen else None

    def forward() -> None:
        with torch.no_grad():
            counted(x)

    def query() -> None:
        with torch.inference_mode():
            if twin is None or twin(x) is None:
                counted(x)

    def gradient() -> None:
        probe = x.clone().requires_grad_(True)
        torch.autograd.grad(counted(probe).sum(), probe)

    return PassTimes(*(timed(run, x.device) / len(x) for run in (forward, gradient, query)))


def timed(run: Callable[[], object], device: torch.device) -> float:
    """The median seconds of ``TIMED`` runs of ``run`` on ``device``, after one untimed run (allocations,
    lazy imports and kernel choices are paid once, not per pass)."""
    run()
    times = []
    for _ in range(TIMED):
        started = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@dataclass(frozen=True)
class Forecast:
    """The seconds each piece of a run will take on this machine (:class:`advsec.cost.Work`'s keys)."""

    pieces: tuple[tuple[str, str, float], ...]  # (key, part, seconds): what the progress lines count down
    attacks_at_most: float  # the attacks priced at the bound, pilots or not
    pilot_samples: int  # samples each piloted cell's pilot attacked
    piloted: int  # attacked cells priced by their pilot
    attacked: int  # attacked cells to run
    timed: dict[str, dict[str, float]]  # per defense: seconds of a sample's passes, and of a training step

    def seconds(self, part: str) -> float:
        return sum(seconds for _, kind, seconds in self.pieces if kind == part)

    @property
    def total(self) -> float:
        return sum(seconds for _, _, seconds in self.pieces)

    def describe(self) -> str:
        parts = [self._part(p) for p in PARTS if self.seconds(p) or (p == "attacks" and self.attacked)]
        if not self.pieces:
            return "estimated time: nothing left to do"
        return (
            f"estimated time: ~{duration(self.total)} ({'; '.join(parts)}), from passes timed on this machine"
        )

    def _part(self, part: str) -> str:
        if part != "attacks" or not self.attacked:
            return f"{part} ~{duration(self.seconds(part))}"
        bound = duration(self.attacks_at_most)
        if not self.piloted:
            return f"attacks at most {bound}, less where the cascade or an attack stops early"
        cells = "each cell" if self.piloted == self.attacked else f"{self.piloted} of {self.attacked} cells"
        return (
            f"attacks ~{duration(self.seconds(part))} from a pilot of {cells} on {self.pilot_samples} "
            f"samples, at most {bound}"
        )

    def to_meta(self) -> dict[str, Any]:
        """What the run's meta (and ``--json``) adds to the estimate in sample passes."""
        seconds = {part: self.seconds(part) for part in PARTS}
        return {
            "seconds": {**seconds, "total": self.total, "attacks_at_most": self.attacks_at_most},
            "pilot": {"samples": self.pilot_samples, "cells": self.piloted, "attacked_cells": self.attacked},
            "pass_seconds": self.timed,
        }


def forecast(
    runtime: Runtime, pending: Sequence[Any], works: Sequence[Work], pilot: Pilot | None
) -> Forecast:
    """The seconds each of ``works`` (the pieces of the ``pending`` cells and of what they train) will take:
    passes timed per network, trainings per step, attacks piloted where their model exists (without a
    ``pilot``, priced at their bound)."""
    spec, dataset, device = runtime.spec, runtime.dataset, runtime.device
    defenses = {d.label: d for d in spec.defenses}
    samples = subset_size(spec.evaluation.samples, len(dataset.y_test))
    batch = dataset.x_test[: min(spec.evaluation.batch_size, samples)].to(device)
    trains = {w.defense for w in works if w.part in TRAININGS}
    alike: dict[str, PassTimes] = {}  # networks of one architecture pass alike, whatever their weights
    with seeded(spec.seed, device):  # a random network's passes draw from the global generator
        speeds = {label: _speed(runtime, defenses[label], batch, label in trains, alike)
                  for label in dict.fromkeys(w.defense for w in works)}  # fmt: skip
    attacked = [c for c in pending if c.attacks]
    measured, k = _piloted(runtime, [c for c in attacked if speeds[c.defense.label].model], samples, pilot)
    pieces = []
    for work in works:
        speed = speeds[work.defense]
        if work.part in TRAININGS:
            seconds = work.gradients * speed.training / (training_cost(defenses[work.defense], dataset) // 2)
        else:
            seconds = speed.passes.seconds(measured.get(work.key, work))
        pieces.append((work.key, work.part, seconds))
    at_most = sum(speeds[w.defense].passes.seconds(w) for w in works if w.part == "attacks")
    timed_here = {label: speed.describe() for label, speed in speeds.items()}
    piloted = len({key.rpartition("/")[0] for key in measured})
    return Forecast(tuple(pieces), at_most, k if measured else 0, piloted, len(attacked), timed_here)


@dataclass(frozen=True)
class _Speed:
    """How fast one defense's network goes on this machine, and its trained model if it exists yet."""

    passes: PassTimes
    step: float  # seconds of one training step (0 where it is not trained here)
    training: float  # seconds of one training: its steps
    model: TrainedModel | None

    def describe(self) -> dict[str, float]:
        step = {"training_step": self.step} if self.step else {}
        passes = self.passes
        return {"forward": passes.forward, "gradient": passes.gradient, "query": passes.query, **step}


def _speed(
    runtime: Runtime, defense: DefenseSpec, batch: torch.Tensor, trains: bool, alike: dict[str, PassTimes]
) -> _Speed:
    """``defense``'s network's passes timed (once per architecture: ``alike``), and its training's steps
    where it ``trains`` here."""
    spec = runtime.spec
    plugin = make_plugin(registry.defenses.get(defense.name), defense.params, defense.label)
    network, model = _network(runtime, defense, plugin)
    same = defense.model or spec.model if type(plugin).network is Defense.network else defense.label
    frozen = not (type(plugin).stochastic or type(plugin).stateful)  # as advsec.runtime.Views makes it
    key = f"{same} frozen" if frozen else same
    passes = alike[key] = alike.get(key) or time_passes(network, batch, frozen=frozen)
    if not trains:
        return _Speed(passes, 0.0, 0.0, model)
    with trial_steps(
        network, runtime.dataset, plugin, defense.train, spec.seed, device=runtime.device
    ) as trial:
        step, steps = trial
        seconds = timed(step, runtime.device)
    return _Speed(passes, seconds, seconds * steps, model)


def _piloted(
    runtime: Runtime, cells: Sequence[Any], samples: int, pilot: Pilot | None
) -> tuple[dict[str, Work], int]:
    """Each stage of the ``cells`` as its pilot on a few of their ``samples`` found it, scaled to them all
    (none where the run is too small to pilot), and how many samples a pilot attacks."""
    k = min(PILOT_MOST, samples // PILOT_SHARE)
    if k < PILOT_LEAST or not cells or pilot is None:
        return {}, k
    runtime.progress.log(
        f"{runtime.spec.name}: piloting the attacks of {len(cells)} cells on {k} samples each"
    )
    chosen = torch.randperm(samples, generator=torch.Generator().manual_seed(runtime.spec.seed))[:k]
    measured = {}
    for cell in cells:
        for index, record in enumerate(pilot(runtime, cell, chosen) or []):
            key = stage_key(cell.key, index)
            forwards, gradients = record.forwards - record.backwards, record.backwards
            scaled = (forwards * samples // k, gradients * samples // k, 0)
            if registry.attacks.get(record.name).kind == "query":  # its forwards are all but its scoring
                scaled = (0, scaled[1], scaled[0])
            measured[key] = Work("attacks", key, cell.defense.label, *scaled)
    return measured, k


def _network(
    runtime: Runtime, defense: DefenseSpec, plugin: Defense
) -> tuple[nn.Module, TrainedModel | None]:
    """The network that will make ``defense``'s passes (``plugin``, its defense, builds a new one), and its
    trained model where that exists before the run (the user's checkpoint, a model in the cache): the model
    a pilot attacks."""
    spec = runtime.spec
    if (defense.model is not None and not defense.fine_tune) or is_cached(runtime.trained_key(defense)):
        trained = runtime.trained(defense)
        return trained.network, trained
    if defense.model is not None:  # the user's model, to fine-tune
        entry = spec.checkpoint(defense.model)
        network = load_user_model(entry, runtime.dataset, runtime.device, runtime.in_memory.get(entry.label))
    else:
        network = plugin.network(lambda member: build_model(spec.model, runtime.dataset, spec.seed + member))
    return network.to(runtime.device).eval(), None
