"""What a run will cost before it starts, in sample passes: one sample through the network forward, or back.

The estimate reads each plugin's own budget fields (steps, restarts, targets, queries, binary-search
rounds, EOT draws), so it needs nothing from a plugin author. For advsec's attacks it is an upper bound:
early exit and the cascade stop attacking samples that already fell, which the report's forward and
backward counts show. Training counts each epoch's forward and backward passes, and the attack steps of
adversarial training; LiRA's shadow models (``[privacy] shadows``) are trainings of their defense like any
other, shown apart. Models already in the cache and cells already in the store cost nothing.

The sanity checks and membership inference are priced apart (``checks``): they are no attack's, but on a
model that breaks at the first steps they cost more than its attacks.

The estimate is a list of :class:`Work`, one per piece of the run (a training, a cell's clean
predictions, each stage of its cascade, its checks), with its forward-only passes and its gradient passes
apart:
:mod:`advsec.forecast` prices them in seconds and the progress lines count them down. :class:`Estimate`
sums them per part.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import advsec.registry as registry
from advsec.attack import Attack
from advsec.data import Dataset
from advsec.data.subset import subset_size
from advsec.defense import AdversarialTraining, Defense
from advsec.privacy import ADVERSARIAL_STEPS
from advsec.sanity import UNBOUNDED_SAMPLES, UNBOUNDED_STEPS
from advsec.spec import AttackSpec, DefenseSpec, Spec, make_plugin, replay_attacks

ITERATIONS = ("steps", "max_iter", "iterations", "n_iter")  # the gradient evaluations of one run
# runs of those: APGD-T runs once per class it aims at
REPEATS = ("restarts", "n_restarts", "targets", "search_steps", "binary_search_steps", "eot_iter")
QUERIES = ("queries", "n_queries", "max_queries")


@dataclass(frozen=True)
class Work:
    """One piece of a run priced in sample passes through the network of the defense labelled ``defense``:
    ``forwards`` alone, ``gradients`` (a forward and its backward: two passes each), and ``queries``, the
    forwards a query attack makes (under ``torch.inference_mode``, so through the network's frozen copy
    where one is made: :mod:`advsec.frozen`).

    ``key`` names the piece as the run finishes it: ``train/<label>`` for a training, a cell's key for its
    clean predictions (and ``<cell key>/shadows`` for the LiRA shadows its membership inference trains),
    ``<cell key>/<i>`` for the i-th stage of its cascade, ``certify`` and ``replay`` for the side protocols.
    """

    part: str  # the Estimate field it counts in
    key: str
    defense: str
    forwards: int = 0
    gradients: int = 0
    queries: int = 0

    @property
    def passes(self) -> int:
        return self.forwards + 2 * self.gradients + self.queries


@dataclass(frozen=True)
class Estimate:
    training: int
    shadows: int  # LiRA's shadow models: K more trainings of each defense whose clean cell is to run
    attacks: int
    certify: int
    replay: int
    checks: int = 0  # the sanity checks' and membership inference's passes, which no attack counts

    @classmethod
    def of(cls, works: Iterable[Work]) -> Estimate:
        passes = dict.fromkeys((f.name for f in fields(cls)), 0)
        for work in works:
            passes[work.part] += work.passes
        return cls(**passes)

    @property
    def total(self) -> int:
        return sum(vars(self).values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {value:.3g}" for name, value in vars(self).items() if value)
        return f"estimated cost: {self.total:.3g} sample passes ({parts or 'nothing left to do'})"


def stage_key(cell_key: str, index: int) -> str:
    """The key of the ``index``-th stage (from 0) of a cell's cascade, as :class:`Work` names it."""
    return f"{cell_key}/{index}"


def estimate(
    spec: Spec,
    dataset: Dataset,
    pending: list[Any],
    untrained: list[DefenseSpec],
    shadows: Sequence[DefenseSpec] = (),
) -> Estimate:
    """The cost of the ``pending`` cells (:class:`advsec.harness.Cell`), of training ``untrained`` and of
    the LiRA ``shadows`` still to train (a defense once per shadow model)."""
    return Estimate.of(work(spec, dataset, pending, untrained, shadows))


def work(
    spec: Spec,
    dataset: Dataset,
    pending: list[Any],
    untrained: list[DefenseSpec],
    shadows: Sequence[DefenseSpec] = (),
) -> list[Work]:
    """:func:`estimate`'s pieces, in the order the run does them."""
    samples = subset_size(spec.evaluation.samples, len(dataset.y_test))
    trainings = {
        d.label: Work("training", f"train/{d.label}", d.label, gradients=training_cost(d, dataset) // 2)
        for d in untrained
    }
    # A defense's model is trained just before its first cell runs
    works = [trainings[d] for d in trainings if d not in {c.defense.label for c in pending}]
    for cell in pending:
        label = cell.defense.label
        works += [trainings.pop(label)] if label in trainings else []
        defense = make_plugin(registry.defenses.get(cell.defense.name), cell.defense.params, label)
        draws = spec.evaluation.repeats if defense.stochastic else 1
        per_pass = defense.network_passes_per_query(dataset.input_shape)
        # the clean predictions and their redraws
        works.append(Work("attacks", cell.key, label, forwards=per_pass * samples * (1 + draws)))
        if cell.threat(dataset.bounds) is None:  # a clean cell's membership inference trains the shadows
            # A shadow's data is the training split's size at most (the test split may fall short of
            # topping it up), so pricing it as the target's training keeps the estimate an upper bound
            gradients = sum(training_cost(d, dataset) // 2 for d in shadows if d.label == label)
            works += [Work("shadows", f"{cell.key}/shadows", label, gradients=gradients)] if gradients else []
        works.append(_checks(spec, dataset, cell, defense, samples, per_pass))
        for index, attack in enumerate(cell.attacks):
            eot = spec.evaluation.most_eot_draws if attack.adaptive and defense.stochastic else 1
            queries, gradients = _runs(attack, per_pass * samples * eot)
            # A generator fits through the defended model (or its adaptive view), so each of its passes
            # costs the defense's network passes too.
            gradients += per_pass * fit_passes(attack, dataset) // 2
            scored = per_pass * samples * draws  # each attempt
            works.append(Work("attacks", stage_key(cell.key, index), label, scored, gradients, queries))
    if spec.certify is not None:
        per_sample = spec.certify.n0 + spec.certify.n
        certified = min(spec.certify.samples, len(dataset.x_test))
        works += [Work("certify", "certify", d.label, forwards=certified * per_sample)
                  for d in spec.defenses if registry.defenses.get(d.name).certifiable]  # fmt: skip
    if spec.replay is not None:
        settings = spec.replay
        replayed = 2 * settings.samples * len(settings.delays) + max(settings.delays)  # + the traffic
        for d in spec.defenses:
            runs = [_runs(a, settings.samples * (1 + spec.evaluation.most_eot_draws))
                    for a in replay_attacks(spec.attacks, settings)]  # fmt: skip
            queries, gradients = sum(q for q, _ in runs), sum(g for _, g in runs)
            works.append(Work("replay", "replay", d.label, settings.repeats * replayed, gradients, queries))
    return works


def _checks(spec: Spec, dataset: Dataset, cell: Any, defense: Defense, samples: int, per_pass: int) -> Work:
    """The passes of a cell's sanity checks (:mod:`advsec.sanity`) and membership inference
    (:mod:`advsec.privacy`): the model's own checks in its clean cell and again in each attacked cell that
    may escalate, membership inference in the clean cell where the training split is known."""
    clean = cell.threat(dataset.bounds) is None
    eot = spec.evaluation.most_eot_draws if defense.stochastic and spec.evaluation.adaptive else 1
    forwards = gradients = 0
    if clean or spec.evaluation.escalate:
        probed = min(UNBOUNDED_SAMPLES, samples)
        gradients += eot * (samples + probed * UNBOUNDED_STEPS)  # every input gradient; the unbounded PGD
        # its iterates measured; the randomness and state probes' queries of a batch
        forwards += eot * probed * (UNBOUNDED_STEPS + 1) + 8 * min(spec.evaluation.batch_size, samples)
    if clean and (cell.defense.model is None or len(dataset.x_train)):
        members = min(samples, len(dataset.x_train))  # and as many non-members
        forwards += 2 * 2 * members  # their losses, benign and adversarial
        gradients += 2 * members * ADVERSARIAL_STEPS
    return Work("checks", f"{cell.key}/checks", cell.defense.label, per_pass * forwards, per_pass * gradients)


def _runs(spec_attack: AttackSpec, runs: int) -> tuple[int, int]:
    """The queries and the gradient passes of ``runs`` runs of an attack on one sample each."""
    passes = runs * attack_passes(spec_attack)
    return (passes, 0) if registry.attacks.get(spec_attack.name).kind == "query" else (0, passes // 2)


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
