"""What a run will cost before it starts, in sample passes: one sample through the network forward, or back.

The estimate reads each plugin's own budget fields (steps, restarts, queries, binary-search rounds, EOT
draws), so it needs nothing from a plugin author. For advsec's attacks it is an upper bound: early exit
and the cascade stop attacking samples that already fell, which the report's forward and backward counts
show. Training counts each epoch's forward and backward passes, and the attack steps of adversarial
training; LiRA's shadow models (``[privacy] shadows``) are trainings of their defense like any other, shown
apart. Models already in the cache and cells already in the store cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import advsec.registry as registry
from advsec.attack import Attack
from advsec.data import Dataset
from advsec.defense import AdversarialTraining
from advsec.spec import AttackSpec, DefenseSpec, Spec, make_plugin, replay_attacks

ITERATIONS = ("steps", "max_iter", "iterations", "n_iter")  # the gradient evaluations of one run
REPEATS = ("restarts", "n_restarts", "search_steps", "binary_search_steps", "eot_iter")  # runs of those
QUERIES = ("queries", "n_queries", "max_queries")


@dataclass(frozen=True)
class Estimate:
    training: int
    shadows: int  # LiRA's shadow models: K more trainings of each defense whose clean cell is to run
    attacks: int
    certify: int
    replay: int

    @property
    def total(self) -> int:
        return self.training + self.shadows + self.attacks + self.certify + self.replay

    def describe(self) -> str:
        parts = ", ".join(f"{name} {value:.3g}" for name, value in vars(self).items() if value)
        return f"estimated cost: {self.total:.3g} sample passes ({parts or 'nothing left to do'})"


def estimate(
    spec: Spec,
    dataset: Dataset,
    pending: list[Any],
    untrained: list[DefenseSpec],
    shadows: Sequence[DefenseSpec] = (),
) -> Estimate:
    """The cost of the ``pending`` cells (:class:`advsec.harness.Cell`), of training ``untrained`` and of
    the LiRA ``shadows`` still to train (a defense once per shadow model)."""
    samples = min(spec.evaluation.samples or len(dataset.x_test), len(dataset.x_test))
    training = sum(training_cost(spec_defense, dataset) for spec_defense in untrained)
    # A shadow's data is the training split's size at most (the test split may fall short of topping it
    # up), so pricing it as the target's training keeps the estimate an upper bound
    shadow_training = sum(training_cost(spec_defense, dataset) for spec_defense in shadows)
    attacks = 0
    for cell in pending:
        defense = make_plugin(
            registry.defenses.get(cell.defense.name), cell.defense.params, cell.defense.label
        )
        draws = spec.evaluation.repeats if defense.stochastic else 1
        per_pass = defense.network_passes_per_query(dataset.input_shape)
        attacks += per_pass * samples * (1 + draws)  # the clean predictions and their redraws
        for attack in cell.attacks:
            eot = spec.evaluation.most_eot_draws if attack.adaptive and defense.stochastic else 1
            passes = samples * (eot * attack_passes(attack) + draws)
            # A generator fits through the defended model (or its adaptive view), so each of its passes
            # costs the defense's network passes too.
            attacks += per_pass * (passes + fit_passes(attack, dataset))
    certify = 0
    if spec.certify is not None:
        per_sample = spec.certify.n0 + spec.certify.n
        certify = sum(
            min(spec.certify.samples, len(dataset.x_test)) * per_sample
            for d in spec.defenses
            if registry.defenses.get(d.name).certifiable
        )
    replay = 0
    if spec.replay is not None:
        settings = spec.replay
        per_defense = sum(
            settings.samples * attack_passes(a) * (1 + spec.evaluation.most_eot_draws)
            for a in replay_attacks(spec.attacks, settings)
        )
        replayed = 2 * settings.samples * len(settings.delays) + max(settings.delays)  # + the traffic
        replay = len(spec.defenses) * (per_defense + settings.repeats * replayed)
    return Estimate(training, shadow_training, attacks, certify, replay)


def attack_passes(spec_attack: AttackSpec) -> int:
    """Passes per sample of one attack: two per gradient step, one per query, times its restarts."""
    cls = registry.attacks.get(spec_attack.name)
    attack: Attack = make_plugin(cls, spec_attack.params, spec_attack.label)
    repeats = math.prod(_field(attack, name, 1) for name in REPEATS)
    if attack.kind == "query":
        return repeats * _first(attack, QUERIES)
    if attack.kind == "generator":
        return 0  # one pass through its own network; the model only scores the result
    return 2 * (gradient_steps(attack) + 1) * repeats  # + 1: the final iterate is measured too


def fit_passes(spec_attack: AttackSpec, dataset: Dataset) -> int:
    """A generator's fit: a forward and a backward per sample it trains on, over its ``epochs`` of the
    training split or its ``max_steps`` batches (0 for other attacks)."""
    cls = registry.attacks.get(spec_attack.name)
    attack: Attack = make_plugin(cls, spec_attack.params, spec_attack.label)
    if attack.kind != "generator":
        return 0
    batches = _field(attack, "max_steps") * _field(attack, "batch_size", 1)
    return 2 * (batches or _field(attack, "epochs", 1) * len(dataset.x_train))


def gradient_steps(attack: Attack) -> int:
    """The gradient steps of one run of an attack (1 for a single-step attack such as FGSM)."""
    return _first(attack, ITERATIONS)


def training_cost(spec_defense: DefenseSpec, dataset: Dataset) -> int:
    """Sample passes of one training of ``spec_defense`` on ``dataset``'s training split."""
    return spec_defense.train.epochs * len(dataset.x_train) * training_passes(spec_defense)


def training_passes(spec_defense: DefenseSpec) -> int:
    """Passes per training sample and epoch: a forward and a backward, plus two per attack step of
    adversarial training, for each network an ensemble trains."""
    defense = make_plugin(registry.defenses.get(spec_defense.name), spec_defense.params, spec_defense.label)
    steps = _field(defense, "steps", 1) if isinstance(defense, AdversarialTraining) else 0
    return _field(defense, "members", 1) * 2 * (1 + steps)


def _first(plugin: Any, names: tuple[str, ...]) -> int:
    """The first of ``names`` the plugin sets to a positive number, else 1."""
    return next((value for name in names if (value := _field(plugin, name))), 1)


def _field(plugin: Any, name: str, default: int = 0) -> int:
    """A positive numeric field of a plugin, else ``default`` (flags and unset options are not budgets)."""
    value = getattr(plugin, name, None)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return int(value) if numeric and value > 0 else default
