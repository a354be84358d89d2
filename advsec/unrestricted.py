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

from advsec import registry
from advsec.attack import Source
from advsec.data import Dataset
from advsec.harness import (
    CellEvaluator,
    Views,
    check_output,
    deployed_key,
    first_hit,
    load_dataset,
    predict,
    run_meta,
)
from advsec.keys import content_key, key_seed, seeded
from advsec.progress import Progress
from advsec.spec import AttackSpec, Spec, make_plugin
from advsec.store import Store
from advsec.threat import ThreatModel
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


def unrestricted_spec(spec: Spec, store: Store, *, device: torch.device, progress: Progress) -> None:
    """Make and score every unrestricted attack's inputs against every defense not yet done."""
    dataset = load_dataset(spec.dataset)
    if "name" not in store.meta():
        store.set_meta(run_meta(spec, dataset, device))
    samples = spec.evaluation.samples or 100
    evaluator = CellEvaluator(spec, dataset, store, device, progress)  # trains or loads each model once
    listeners: dict[str, TrainedModel] = {}
    runs = []
    for defense in spec.defenses:
        for spec_attack in unrestricted_attacks(spec):
            attack = make_plugin(
                registry.attacks.get(spec_attack.name), spec_attack.params, spec_attack.label
            )
            architecture = attack.listener or spec.model
            content = {
                "model": deployed_key(spec, dataset, defense),
                "defense": defense.label,
                "attack": asdict(spec_attack),
                "listener": architecture,
                "samples": samples,
                "seed": spec.seed,
            }
            runs.append((defense, spec_attack, attack, architecture, content_key(content)))
    # The report shows this plan's runs only: rows an earlier spec left in a reused --out stay out of it.
    store.set_meta({"unrestricted_plan": [key for *_, key in runs]})
    done = store.unrestricted_keys()
    for defense, spec_attack, attack, architecture, key in runs:
        if key in done:
            continue
        if architecture not in listeners:
            listeners[architecture] = load_or_train(
                dataset, architecture, "standard", {}, spec.train, spec.seed + LISTENER_SEED,
                device=device, progress=progress, label=f"listener {architecture}",
            )  # fmt: skip
        trained, listener = evaluator.trained(defense), listeners[architecture]
        fit_seconds = attack.prepare(dataset, seed=spec.seed, device=device, progress=progress)
        with seeded(key_seed(key, spec.seed), device):  # random defenses draw from the global generator
            title = f"{spec_attack.label} vs {defense.label}"
            made = _attack(attack, spec_attack.target, trained, listener, dataset, spec, samples, title,
                           progress)  # fmt: skip
        rows, examples, seconds = made
        norm = attack.bound(dataset.bounds).norm
        store.save_unrestricted(key, defense.label, spec_attack.label, architecture, attack.source, norm,
                                fit_seconds, seconds, rows, examples)  # fmt: skip


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
    views = Views.of(trained, dataset, spec)
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
            logits = predict(views.deployed, sources, batch, classes)
            before = logits.argmax(1)
            target = None if aim == "none" else _aim(aim, logits)
            made = attack.perturb(views.adaptive, sources, before if labels is None else labels, threat,
                                  target=target)  # fmt: skip
            check_output(title, threat, sources, made)
            draws = views.predictions(made)
            pred = first_hit(draws, draws != labels if target is None else draws == target)
            listened = predict(listener.model, made, batch, classes).argmax(1)
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
