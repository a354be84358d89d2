"""The sitting-duck protocol: craft adversarial examples against a model at one moment, replay them later.

A static model is a sitting duck: an adversarial example found once works forever. A dynamic model (random,
stateful, drifting) claims to deny the attacker that. This protocol measures the claim. At one moment the
attacker crafts adversarial examples in one of three ways:

- ``snapshot``: white-box, against the model held still as it is at that moment (:meth:`Defense.snapshot`);
- ``eot``: adaptively, through the expectation over the live model's randomness (gradient attacks on a
  random model);
- ``queries``: with a query-only attack against the live model, which may move under the attacker's queries.

The live model then answers Δ further queried samples of ordinary traffic (test samples nobody attacks) and
the examples are replayed: the share it now gets wrong is the replay success at Δ. Each replay is repeated
from the same moment with fresh randomness; successes pool over the repeats (Wilson interval over samples).
The model's error on the clean inputs at the same moment is measured beside it, the error it makes anyway.
Only a stateful model answers the traffic: a stateless model's next answer does not depend, by definition,
on the queries in between, so sending it traffic would change nothing but the run time.
For an ensemble, adversarial examples crafted on each member are also scored on every other member.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

import advsec.registry as registry
from advsec.attack import Attack
from advsec.data.subset import drawn
from advsec.defense import Defense, Expectation
from advsec.keys import content_key
from advsec.protocol import Job, SideProtocol
from advsec.records import Craft, ReplayResult
from advsec.runtime import CountingModel, Runtime, batched_logits
from advsec.spec import AttackSpec, EvaluationConfig, ReplayConfig, make_plugin, replay_attacks
from advsec.store import Store
from advsec.threat import ThreatModel, check_attack_output
from advsec.train import TrainedModel


class Replay(SideProtocol):
    """The sitting-duck protocol of the spec's ``[replay]`` table, for every defense not yet replayed."""

    name = "replay"
    plan_meta = "replay_plan"

    def _settings(self, runtime: Runtime) -> tuple[ReplayConfig, list[AttackSpec], ThreatModel]:
        spec = runtime.spec
        settings = spec.replay or ReplayConfig()
        threat = ThreatModel(spec.threats[0].norm, settings.eps or spec.report_eps, runtime.dataset.bounds)
        return settings, replay_attacks(spec.attacks, settings), threat

    def jobs(self, runtime: Runtime) -> list[Job]:
        settings, attacks, threat = self._settings(runtime)
        protocol = {
            "settings": asdict(settings),
            "attacks": [asdict(a) for a in attacks],
            "threat": [threat.norm, threat.eps],
            "eot_draws": runtime.spec.evaluation.eot_draws,
        }
        if drawn(settings.samples, len(runtime.dataset.y_test)):
            protocol["subset"] = "stratified"  # keyed apart from replays of the first N samples
        return [
            Job(content_key({"model": runtime.deployed_key(d), "defense": d.label, **protocol}), d)
            for d in runtime.spec.defenses
        ]

    def plan_extras(self, runtime: Runtime) -> dict[str, Any]:
        threat = self._settings(runtime)[2]
        return {"replay_threat": [threat.norm, threat.eps]}

    def done(self, store: Store) -> set[str]:
        return store.replay_keys()

    def save(self, store: Store, result: ReplayResult) -> None:
        store.save_replay(result)

    def run(self, runtime: Runtime, job: Job, seed: int) -> ReplayResult:
        settings, attacks, threat = self._settings(runtime)
        x, y = runtime.test_split(settings.samples)
        crafted = torch.zeros(len(runtime.dataset.x_test), dtype=torch.bool)
        crafted[runtime.test_subset(settings.samples)] = True
        traffic = runtime.dataset.x_test[~crafted].to(runtime.device)  # the test samples not crafted on
        trained, classes = runtime.trained(job.defense), runtime.dataset.num_classes
        replayer = Replayer(trained, threat, settings, runtime.spec.evaluation, classes)
        generator = torch.Generator(device=runtime.device).manual_seed(seed)
        crafts = []
        with runtime.progress.task(f"replay {job.defense.label}", total=len(attacks)) as task:
            for attack in attacks:
                crafts += replayer.attack(attack, x, y, traffic if len(traffic) else x, generator)
                task.advance()
        transfers = replayer.transfers(attacks, x, y, generator)
        return ReplayResult(job.defense.label, job.key, crafts, transfers)


def modes(defense: type[Defense], kind: str) -> tuple[str, ...]:
    """How an attack of ``kind`` crafts against ``defense``: query attacks query the live model, gradient
    attacks differentiate a snapshot and, when the model is random, its expectation."""
    if kind == "query":
        return ("queries",)
    return ("snapshot", "eot") if defense.stochastic else ("snapshot",)


class Replayer:
    """One trained defense under the protocol: crafts at a moment, then replays from that moment."""

    def __init__(
        self,
        trained: TrainedModel,
        threat: ThreatModel,
        settings: ReplayConfig,
        evaluation: EvaluationConfig,
        num_classes: int,
    ) -> None:
        self.trained, self.threat, self.settings, self.num_classes = trained, threat, settings, num_classes
        self.eot_draws, self.batch = evaluation.eot_draws, evaluation.batch_size
        for parameter in trained.network.parameters():
            parameter.requires_grad_(False)  # attacks need input gradients only

    def attack(
        self,
        spec_attack: AttackSpec,
        x: torch.Tensor,
        y: torch.Tensor,
        traffic: torch.Tensor,
        generator: torch.Generator,
    ) -> list[Craft]:
        """Craft with ``spec_attack`` in each mode that applies, and replay each at every delay."""
        cls = registry.attacks.get(spec_attack.name)
        attack: Attack = make_plugin(cls, spec_attack.params, spec_attack.label)
        defense = self.trained.defense
        crafts = []
        for mode in modes(type(defense), cls.kind):
            counted = CountingModel(self.trained.network)
            live = defense.wrap(counted, bounds=self.threat.bounds)
            if mode == "snapshot":
                against = defense.snapshot(live)
                if against is None:
                    continue  # a moving model that cannot be held still: only the live modes apply
            elif mode == "eot":
                against = Expectation(defense.adaptive(live), self.eot_draws)
            else:
                against = live
            started = time.perf_counter()
            x_adv = self.craft(attack, spec_attack.label, against, x, y, generator)
            queries = counted.forwards
            crafted = self.wrong(against, x_adv, y) if mode == "snapshot" else None
            crafts.append(
                Craft(spec_attack.label, mode, len(x), crafted, queries, time.perf_counter() - started,
                      self.replays(live, x, x_adv, y, traffic))
            )  # fmt: skip
        return crafts

    def replays(
        self, live: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, traffic: torch.Tensor
    ) -> list[tuple[int, int, int, int]]:
        """(delay, repeat, adversarial examples fooling it, clean inputs it gets wrong) per replay.

        Every repeat starts from a copy of the model as the attacker left it; every replay is made on a copy
        of the model at that delay, so neither the replay nor the clean check moves the model they measure.
        """
        stateful = type(self.trained.defense).stateful
        trials = []
        for repeat in range(self.settings.repeats):
            moving = copy.deepcopy(live)
            elapsed = 0
            for delay in self.settings.delays:
                if stateful:
                    self.answer(moving, traffic, elapsed, delay)
                    elapsed = delay
                fooled = self.wrong(copy.deepcopy(moving), x_adv, y)
                trials.append((delay, repeat, fooled, self.wrong(copy.deepcopy(moving), x, y)))
        return trials

    def transfers(
        self, attacks: list[AttackSpec], x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> list[tuple[int, int, int, int]]:
        """For an ensemble: (source, target, fooled, samples) of the first gradient attack's examples crafted
        on each member, scored on each member. Empty for models without members."""
        live = self.trained.defense.wrap(self.trained.network, bounds=self.threat.bounds)
        gradient = [a for a in attacks if registry.attacks.get(a.name).kind == "gradient"]
        if not hasattr(live, "members") or not gradient:
            return []
        spec_attack = gradient[0]
        attack = make_plugin(registry.attacks.get(spec_attack.name), spec_attack.params, spec_attack.label)
        members = live.members()
        rows = []
        for i, source in enumerate(members):
            x_adv = self.craft(attack, spec_attack.label, source, x, y, generator)
            rows += [(i, j, self.wrong(target, x_adv, y), len(x)) for j, target in enumerate(members)]
        return rows

    def craft(
        self,
        attack: Attack,
        label: str,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        crafted = []
        for xb, yb in zip(x.split(self.batch), y.split(self.batch), strict=True):
            x_adv = attack.perturb(model, xb, yb, self.threat, generator=generator)
            check_attack_output(label, self.threat, xb, x_adv)
            crafted.append(x_adv.detach())
        return torch.cat(crafted)

    def wrong(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
        return int((batched_logits(model, x, self.batch, self.num_classes).argmax(1) != y).sum())

    @torch.no_grad()
    def answer(self, model: nn.Module, traffic: torch.Tensor, begin: int, end: int) -> None:
        """Let ``model`` answer the ``begin``-th to ``end``-th samples of ordinary traffic, which cycles
        through ``traffic``: each sample once, unless more are asked for than it holds."""
        for start in range(begin, end, self.batch):
            model(traffic[torch.arange(start, min(start + self.batch, end)) % len(traffic)])
