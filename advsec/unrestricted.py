"""Unrestricted attacks: inputs an attack makes of its own, scored apart from norm-bounded robustness.

An unrestricted attack (``unrestricted = True``, e.g. ``hidden-command``) does not perturb a test input
within a budget; it makes new inputs (from noise, a tone, a generative model) that the model classifies as
the attacker wants. Mixing them into robust accuracy would mean nothing, so each defense gets its own
numbers here: for ``samples`` made inputs aimed at the entry's target, how often the deployed model puts
them in the target class (any of a random model's draws), and how often a *listener* does: a second model
trained independently (another seed, or another architecture), standing in for a person. A hidden command
works when the model hears the target and the listener does not (chance is one in the number of classes).
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
from advsec.data import Dataset
from advsec.harness import (
    CellEvaluator,
    Views,
    check_output,
    load_dataset,
    predict,
    run_meta,
    trained_model_key,
)
from advsec.keys import content_key, key_seed, seeded
from advsec.progress import Progress
from advsec.spec import AttackSpec, Spec, make_plugin
from advsec.store import Store
from advsec.threat import ThreatModel
from advsec.train import TrainedModel, load_or_train

LISTENER_SEED = 1  # the listener's seed is the run's plus this: trained apart from every evaluated model


class MakesInputs(Protocol):
    """What an unrestricted attack plugin provides besides :meth:`Attack.perturb` (``hidden-command``)."""

    listener: str  # the listener's architecture; "" for the evaluated model's

    def carriers(self, n: int, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` inputs to start from, shaped like one input of ``like``."""
        ...

    def bound(self, bounds: tuple[float, float]) -> ThreatModel:
        """How far the attack may move a carrier."""
        ...

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
                target: torch.Tensor | None = None) -> torch.Tensor: ...  # fmt: skip


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
    done = store.unrestricted_keys()
    for defense in spec.defenses:
        for spec_attack in unrestricted_attacks(spec):
            attack = make_plugin(
                registry.attacks.get(spec_attack.name), spec_attack.params, spec_attack.label
            )
            architecture = attack.listener or spec.model
            content = {
                "model": trained_model_key(spec, dataset, defense),
                "defense": defense.label,
                "attack": asdict(spec_attack),
                "listener": architecture,
                "samples": samples,
                "seed": spec.seed,
            }
            key = content_key(content)
            if key in done:
                continue
            if architecture not in listeners:
                listeners[architecture] = load_or_train(
                    dataset, architecture, "standard", {}, spec.train, spec.seed + LISTENER_SEED,
                    device=device, progress=progress, label=f"listener {architecture}",
                )  # fmt: skip
            trained, listener = evaluator.trained(defense), listeners[architecture]
            with seeded(key_seed(key, spec.seed), device):  # random defenses draw from the global generator
                title = f"{spec_attack.label} vs {defense.label}"
                made = _attack(attack, spec_attack.target, trained, listener, dataset, spec, samples, title,
                               progress)  # fmt: skip
            rows, examples, seconds = made
            store.save_unrestricted(
                key, defense.label, spec_attack.label, architecture, seconds, rows, examples
            )


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
) -> tuple[list[tuple[int, int, int, int, int, float]], list[tuple[int, np.ndarray, np.ndarray]], float]:
    """Per made input: (index, target, what the model heard in the bare carrier, what it hears now, what
    the listener hears, the perturbation's level under the carrier in dB); the first few as (index,
    carrier, made input) for the report; and the seconds it took."""
    views = Views.of(trained, dataset, spec)
    batch, classes = spec.evaluation.batch_size, dataset.num_classes
    threat = attack.bound(dataset.bounds)
    like = dataset.x_test[:1].to(next(trained.network.parameters()).device)
    started = time.perf_counter()
    out, examples = [], []
    with progress.task(title, total=samples) as task:
        for start in range(0, samples, batch):
            n = min(batch, samples - start)
            carriers = attack.carriers(n, like)
            carrier_logits = predict(views.deployed, carriers, batch, classes)
            heard_before = carrier_logits.argmax(1)
            target = _aim(aim, carrier_logits)
            made = attack.perturb(views.adaptive, carriers, heard_before, threat, target=target)
            check_output(title, threat, carriers, made)
            draws = views.predictions(made)
            heard = torch.where((draws == target).any(0), target, draws[0])  # any draw hearing it counts
            listened = predict(listener.model, made, batch, classes).argmax(1)
            levels = threat.distance(carriers, made)
            out += zip(range(start, start + n), target.tolist(), heard_before.tolist(), heard.tolist(),
                       listened.tolist(), levels.tolist(), strict=True)  # fmt: skip
            shown = range(min(spec.evaluation.examples - len(examples), n))
            examples += [(start + i, carriers[i].cpu().numpy(), made[i].cpu().numpy()) for i in shown]
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
