"""Unrestricted attacks: inputs an attack makes of its own, scored apart from norm-bounded robustness.

An unrestricted attack (``unrestricted = True``) does not perturb a test input within a budget; it makes
new inputs that the model classifies as the attacker wants. Mixing them into robust accuracy would mean
nothing, so each defense gets its own numbers here, for ``samples`` made inputs, next to what a *listener*
makes of them: a second model trained independently (another seed, or another architecture), standing in
for a person. An attack makes its inputs from one of two sources (its ``source``):

- ``carrier``: inputs of its own (noise, a tone), aimed at the entry's target (``hidden-command``). How
  often the model puts them in the target class (any of a random model's draws), and how often the
  listener does: a hidden command works when the model hears the target and the listener does not.
- ``test``: from each test input (``natural-gan``, through a GAN). How often the model gets the made input
  wrong (any draw), and how often the listener still sees the test input's class in it: a natural
  adversarial example is one the model gets wrong and the listener does not. Its distance from the test
  input is kept beside it.

Results are written per defense and attack, under a key of everything that determines them, and resume.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Protocol

import numpy as np
import torch
from torch import nn

import advsec.registry as registry
from advsec.attack import Source
from advsec.data import Dataset
from advsec.keys import content_key
from advsec.progress import Progress
from advsec.protocol import Job, SideProtocol
from advsec.records import UnrestrictedResult
from advsec.runtime import Runtime, Views, batched_logits, first_hit
from advsec.spec import AttackSpec, Spec, make_plugin
from advsec.store import Store
from advsec.threat import ThreatModel, check_attack_output
from advsec.train import TrainedModel, load_or_train

LISTENER_SEED = 1  # the listener's seed is the run's plus this: trained apart from every evaluated model


class MakesInputs(Protocol):
    """What an unrestricted attack plugin provides besides :meth:`Attack.perturb` and
    :meth:`Attack.prepare`; ``carriers`` only where its ``source`` is "carrier"."""

    listener: str  # the listener's architecture; "" for the evaluated model's
    source: Source

    def carriers(self, n: int, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` inputs to start from, shaped like one input of ``like``."""
        ...

    def bound(self, bounds: tuple[float, float]) -> ThreatModel:
        """How far the attack may move a carrier."""
        ...

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
                target: torch.Tensor | None = None) -> torch.Tensor: ...  # fmt: skip

    def prepare(self, dataset: Dataset, *, seed: int, device: torch.device, progress: Progress) -> float: ...


def unrestricted_attacks(spec: Spec) -> list[AttackSpec]:
    return [a for a in spec.attacks if registry.attacks.get(a.name).unrestricted]


class Unrestricted(SideProtocol):
    """Make and score every unrestricted attack's inputs against every defense not yet done."""

    name = "unrestricted"
    plan_meta = "unrestricted_plan"

    def __init__(self) -> None:
        self._listeners: dict[str, TrainedModel] = {}

    def jobs(self, runtime: Runtime) -> list[Job]:
        spec = runtime.spec
        jobs = []
        for defense in spec.defenses:
            for spec_attack in unrestricted_attacks(spec):
                content = {
                    "model": runtime.deployed_key(defense),
                    "defense": defense.label,
                    "attack": asdict(spec_attack),
                    "listener": _plugin(spec_attack).listener or spec.model,
                    "samples": _samples(spec),
                    "seed": spec.seed,
                }
                jobs.append(Job(content_key(content), defense, spec_attack))
        return jobs

    def done(self, store: Store) -> set[str]:
        return store.unrestricted_keys()

    def save(self, store: Store, result: UnrestrictedResult) -> None:
        store.save_unrestricted(result)

    def run(self, runtime: Runtime, job: Job, seed: int) -> UnrestrictedResult:
        spec, dataset, spec_attack = runtime.spec, runtime.dataset, job.attack
        assert spec_attack is not None
        attack = _plugin(spec_attack)
        architecture = attack.listener or spec.model
        listener = self._listener(runtime, architecture)
        trained = runtime.trained(job.defense)
        progress = runtime.progress
        fit_seconds = attack.prepare(dataset, seed=spec.seed, device=runtime.device, progress=progress)
        title = f"{spec_attack.label} vs {job.defense.label}"
        rows, examples, seconds = _attack(attack, spec_attack.target, trained, listener, dataset, spec,
                                          _samples(spec), title, progress)  # fmt: skip
        norm = attack.bound(dataset.bounds).norm
        return UnrestrictedResult(job.key, job.defense.label, spec_attack.label, architecture, attack.source,
                                  norm, fit_seconds, seconds, rows, examples)  # fmt: skip

    def _listener(self, runtime: Runtime, architecture: str) -> TrainedModel:
        """The listener of ``architecture``: a standard model trained apart from every evaluated model."""
        if architecture not in self._listeners:
            spec = runtime.spec
            self._listeners[architecture] = load_or_train(
                runtime.dataset, architecture, "standard", {}, spec.train, spec.seed + LISTENER_SEED,
                device=runtime.device, progress=runtime.progress, label=f"listener {architecture}",
            )  # fmt: skip
        return self._listeners[architecture]


def _plugin(spec_attack: AttackSpec) -> MakesInputs:
    return make_plugin(registry.attacks.get(spec_attack.name), spec_attack.params, spec_attack.label)


def _samples(spec: Spec) -> int:
    return spec.evaluation.samples or 100


def _attack(
    attack: MakesInputs,
    aim: str | int,
    trained: TrainedModel,
    listener: TrainedModel,
    dataset: Dataset,
    spec: Spec,
    samples: int,
    title: str,
    progress: Progress,
) -> tuple[list[tuple[int, int, int, int, int, int, float]], list[tuple[int, np.ndarray, np.ndarray]], float]:
    """Per made input: (index, target or -1, the test input's label or -1, what the model made of what it
    was made from, what it makes of it now, what the listener does, its distance from what it was made
    from in the attack's norm); the first few as (index, source, made input) for the report; the seconds.

    A random model's answer is the first of its draws that hits (the target, or any wrong class), else its
    first draw: a made input counts if any draw is fooled, as in the grid."""
    views = Views.of(trained, dataset, spec.evaluation)
    batch, classes = spec.evaluation.batch_size, dataset.num_classes
    threat = attack.bound(dataset.bounds)
    device = next(trained.network.parameters()).device
    if attack.source == "test":
        samples = min(samples, len(dataset.x_test))
    started = time.perf_counter()
    out, examples = [], []
    with progress.task(title, total=samples) as task:
        for start in range(0, samples, batch):
            n = min(batch, samples - start)
            if attack.source == "test":
                sources, labels = (t[start : start + n].to(device) for t in (dataset.x_test, dataset.y_test))
            else:
                sources, labels = attack.carriers(n, dataset.x_test[:1].to(device)), None
            logits = views.logits(sources)
            before = logits.argmax(1)
            target = None if aim == "none" else _aim(aim, logits)
            made = attack.perturb(views.adaptive, sources, before if labels is None else labels, threat,
                                  target=target)  # fmt: skip
            check_attack_output(title, threat, sources, made)
            draws = views.predictions(made)
            pred = first_hit(draws, draws != labels if target is None else draws == target)
            listened = batched_logits(listener.model, made, batch, classes).argmax(1)
            distances = threat.distance(sources, made)
            unset = torch.full_like(before, -1)
            out += zip(range(start, start + n), (unset if target is None else target).tolist(),
                       (unset if labels is None else labels).tolist(), before.tolist(), pred.tolist(),
                       listened.tolist(), distances.tolist(), strict=True)  # fmt: skip
            shown = range(min(spec.evaluation.examples - len(examples), n))
            examples += [(start + i, sources[i].cpu().numpy(), made[i].cpu().numpy()) for i in shown]
            task.advance(n)
    return out, examples, time.perf_counter() - started


def _aim(mode: str | int, carrier_logits: torch.Tensor) -> torch.Tensor:
    """The class each made input is aimed at: a chosen one, one drawn at random, or the one the model
    finds least likely in the bare carrier."""
    n, classes = carrier_logits.shape
    if isinstance(mode, int):
        return torch.full((n,), mode, dtype=torch.long, device=carrier_logits.device)
    if mode == "least-likely":
        return carrier_logits.argmin(1)
    return torch.randint(0, classes, (n,), device=carrier_logits.device)
