"""How long a run will take on this machine: the cost estimate's sample passes priced in seconds.

Before the run, a few real passes of each network that will make them are timed at the run's batch size:
forward alone (a prediction, a query) and forward with the backward to the input gradient (an attack's
step), through the path an attack's passes take. The network is the user's loaded model or, for a model
advsec will train, a fresh instance of its architecture: weights do not change how long a pass takes. A
training is priced by timing a few of its real steps (:func:`advsec.train.trial_steps`: the defense's loss
with its attack steps, the backward and the optimizer's step) times the steps it takes.

The pass counts of :mod:`advsec.cost` are an upper bound for the attacks: the cascade attacks only what
every earlier stage left robust, and APGD and Square stop on a sample once it falls, so on a model that
breaks easily the bound overstates the attacks tenfold. Where the model exists before the run (the user's
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
from advsec.defense import Defense
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

# The harness's pilot (advsec.harness.pilot): a cell's cascade on the chosen samples, its stages' records
Pilot = Callable[[Runtime, Any, torch.Tensor], list[AttackRecord] | None]


@dataclass(frozen=True)
class PassTimes:
    """Seconds a sample's pass through one network takes on this machine, at the run's batch size."""

    forward: float  # forward alone: a prediction or a query
    gradient: float  # forward and the backward to the input gradient: an attack's step

    def seconds(self, work: Work) -> float:
        return work.forwards * self.forward + work.gradients * self.gradient


def time_passes(network: nn.Module, x: torch.Tensor) -> PassTimes:
    """A few forward and input-gradient passes of ``network`` on the batch ``x``, timed, per sample."""
    counted = CountingModel(network)  # the path an attack's passes take, its input-gradient split included

    def forward() -> None:
        with torch.inference_mode():
            counted(x)

    def gradient() -> None:
        probe = x.clone().requires_grad_(True)
        torch.autograd.grad(counted(probe).sum(), probe)

    return PassTimes(timed(forward, x.device) / len(x), timed(gradient, x.device) / len(x))


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
        detail = "; ".join(parts) or "nothing left to do"
        return f"estimated time: ~{duration(self.total)} ({detail}), from passes timed on this machine"

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


def forecast(runtime: Runtime, pending: Sequence[Any], works: Sequence[Work], pilot: Pilot) -> Forecast:
    """The seconds each of ``works`` (the pieces of the ``pending`` cells and of what they train) will take:
    passes timed per network, trainings per step, attacks piloted where their model exists."""
    spec, dataset, device = runtime.spec, runtime.dataset, runtime.device
    defenses = {d.label: d for d in spec.defenses}
    samples = min(spec.evaluation.samples or len(dataset.x_test), len(dataset.x_test))
    batch = dataset.x_test[: min(spec.evaluation.batch_size, samples)].to(device)
    models, times, timed_here, step_seconds, per_training_pass = {}, {}, {}, {}, {}
    trains = {w.defense for w in works if w.part in ("training", "shadows")}
    for label in dict.fromkeys(w.defense for w in works):
        defense = defenses[label]
        network, models[label] = _network(runtime, defense)
        plugin = make_plugin(registry.defenses.get(defense.name), defense.params, label)
        # networks of one architecture pass alike, whatever their weights
        same = defense.model or spec.model if type(plugin).network is Defense.network else label
        times[label] = timed_here.setdefault(same, time_passes(network, batch))
        if label in trains:
            with trial_steps(network, dataset, plugin, defense.train, spec.seed, device=device) as (
                step,
                steps,
            ):
                step_seconds[label] = timed(step, device)
                per_training_pass[label] = (
                    step_seconds[label] * steps / (training_cost(defense, dataset) // 2)
                )
    k = min(PILOT_MOST, samples // PILOT_SHARE)
    attacked = [c for c in pending if c.attacks]
    piloted = [c for c in attacked if models[c.defense.label] is not None] if k >= PILOT_LEAST else []
    chosen = torch.randperm(samples, generator=torch.Generator().manual_seed(spec.seed))[:k]
    if piloted:
        runtime.progress.log(f"{spec.name}: piloting the attacks of {len(piloted)} cells on {k} samples each")
    measured: dict[str, Work] = {}
    for cell in piloted:
        for index, record in enumerate(pilot(runtime, cell, chosen) or []):
            key = stage_key(cell.key, index)
            measured[key] = Work("attacks", key, cell.defense.label, (record.forwards - record.backwards)
                                 * samples // k, record.backwards * samples // k)  # fmt: skip
    pieces = []
    for work in works:
        if work.part in ("training", "shadows"):
            seconds = work.gradients * per_training_pass[work.defense]
        else:
            seconds = times[work.defense].seconds(measured.get(work.key, work))
        pieces.append((work.key, work.part, seconds))
    at_most = sum(times[w.defense].seconds(w) for w in works if w.part == "attacks")
    timed_passes = {label: {"forward": t.forward, "gradient": t.gradient} for label, t in times.items()}
    for label, seconds in step_seconds.items():
        timed_passes[label]["training_step"] = seconds
    piloted_cells = len({key.rpartition("/")[0] for key in measured})
    return Forecast(tuple(pieces), at_most, k if measured else 0, piloted_cells, len(attacked), timed_passes)


def _network(runtime: Runtime, defense: DefenseSpec) -> tuple[nn.Module, TrainedModel | None]:
    """The network that will make ``defense``'s passes, and its trained model where that exists before the
    run (the user's checkpoint, a model in the cache): the model a pilot attacks."""
    spec = runtime.spec
    if (defense.model is not None and not defense.fine_tune) or is_cached(runtime.trained_key(defense)):
        trained = runtime.trained(defense)
        return trained.network, trained
    if defense.model is not None:  # the user's model, to fine-tune
        entry = spec.checkpoint(defense.model)
        network = load_user_model(entry, runtime.dataset, runtime.device, runtime.in_memory.get(entry.label))
    else:
        plugin = make_plugin(registry.defenses.get(defense.name), defense.params, defense.label)
        network = plugin.network(lambda member: build_model(spec.model, runtime.dataset, spec.seed + member))
    return network.to(runtime.device).eval(), None
