"""The harness: a spec becomes cells (defense × norm × eps × attack cascade), cells become stored rows.

Scoring: a sample is robust at a budget only if it is classified correctly clean AND under every attack of
the cascade. In cascade mode each attack sees only the samples all earlier attacks left robust. A random
defense's predictions are drawn ``repeats`` times: a sample counts only if every draw gets it right, and the
first draw alone gives the single-evaluation numbers shown beside them.
Every cell draws its randomness from a seed derived from its own content, so cells can run in any order,
be resumed after a crash, and reproduce bit for bit (at one torch thread count: see advsec.threads).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import torch
from torch import nn

import advsec.registry as registry
from advsec.admission import check_budgets
from advsec.attack import Attack
from advsec.cost import Estimate, gradient_steps, stage_key, work
from advsec.data import Dataset
from advsec.data.fakes import FAKE
from advsec.data.subset import draw_seed, drawn, stratified, subset_size
from advsec.defense import Defense
from advsec.detection import check_detector_data
from advsec.errors import CostError, SpecError
from advsec.escalate import causes, escalated_views, follow_ups, pristine_views
from advsec.forecast import forecast
from advsec.generator import Generator, fit_generator
from advsec.keys import content_key, seeded
from advsec.lira import ShadowRecipe
from advsec.precision import native_bfloat16
from advsec.privacy import membership_inference
from advsec.progress import Progress
from advsec.records import AttackRecord, CellResult, MembershipInference, SanityCheck, across_classes
from advsec.runtime import Runtime, Views, deployed_key, first_hit, now
from advsec.sanity import (
    EOT_PROBE_SAMPLES,
    cascade_check,
    certificate_check,
    eot_probe,
    loss_check,
    loss_not_raised,
    model_checks,
)
from advsec.spec import EOT_AUTO, AttackSpec, DefenseSpec, Spec, lira_trainable, make_plugin
from advsec.threat import ThreatModel, check_attack_output
from advsec.train import TrainedModel, is_cached, trained_on

CLEAN = "none"  # the norm of a defense's clean cell: no attack, just accuracy


@dataclass(frozen=True)
class Cell:
    key: str  # a hash of everything that determines the cell's rows, its label included
    defense: DefenseSpec
    norm: str
    eps: float
    attacks: tuple[AttackSpec, ...]
    # A hash of what determines its numbers, the label aside: the same model under two names (a checkpoint
    # saved twice, say) meets the same random starts and draws, and so gets the same table.
    randomness: str
    aspect: float = 1.0  # a patch's height over its width

    def threat(self, bounds: tuple[float, float]) -> ThreatModel | None:
        """The threat model this cell attacks under, within the data's ``bounds``; None for a clean cell."""
        return None if self.norm == CLEAN else ThreatModel(self.norm, self.eps, bounds, self.aspect)

    @property
    def title(self) -> str:
        return (
            f"{self.defense.label} clean"
            if self.norm == CLEAN
            else f"{self.defense.label} {self.norm} ε={self.eps:g}"
        )


def plan(spec: Spec, dataset: Dataset) -> list[Cell]:
    """All cells of a spec, each keyed by a hash of everything that determines its result."""
    for attack in spec.attacks:
        if isinstance(attack.target, int) and attack.target >= dataset.num_classes:
            raise SpecError(
                f"attacks: {attack.label!r} aims at class {attack.target}, but dataset {dataset.name!r} "
                f"has classes 0 to {dataset.num_classes - 1}"
            )
    if spec.detection is not None:
        check_detector_data(dataset)
    check_budgets(spec, dataset)
    cells = []
    reduced = spec.evaluation.search_precision == "auto" and native_bfloat16()
    # Which samples the cells score: since subsets are drawn by class (advsec.data.subset), their cells no
    # longer hold the rows of the first N, and are keyed apart from those stored before.
    subset = drawn(spec.evaluation.samples, len(dataset.y_test))
    how = {k: v for k, v in asdict(spec.evaluation).items() if k not in ("search_precision", "clean_check")}
    for defense in spec.defenses:
        model = deployed_key(spec, dataset, defense)
        attacks = bounded(spec.attacks) + adaptive_attacks(defense, spec)
        grid = [(CLEAN, 0.0, 1.0, ())] + [
            (t.norm, eps, t.aspect, attacks) for t in spec.threats for eps in t.eps
        ]
        for norm, eps, aspect, cell_attacks in grid:
            content = {
                "model": model,
                "defense": defense.label,
                "norm": norm,
                "eps": eps,
                "attacks": [asdict(a) for a in cell_attacks],
                "evaluation": how,
                "seed": spec.seed,
            }
            if subset:
                content["subset"] = "stratified"
            if reduced:  # only then: where every pass is float32, cells keep the keys they had before
                content["search"] = "bfloat16"
            if aspect != 1.0:  # only then: the cells of every square patch keep their keys
                content["aspect"] = aspect
            if norm == CLEAN and spec.privacy.shadows:  # the clean cell's rows hold LiRA's figures
                content["privacy"] = asdict(spec.privacy)
            randomness = content_key({k: v for k, v in content.items() if k not in ("defense", "privacy")})
            cells.append(
                Cell(content_key(content), defense, norm, eps, tuple(cell_attacks), randomness, aspect)
            )
    return cells


# The strong EOT stage of a random defense: APGD-CE's own schedule over 100 steps.
STRONG_EOT = AttackSpec("apgd-ce", "apgd-ce", {"steps": 100}, adaptive=True)
# What a deterministic non-differentiable defense also meets when the spec has no Square of its own: BPDA's
# surrogate gradient is an approximation, and a search that needs no gradient goes further against rounding
# (docs/results.md, escalation). It queries the deployed model, so it is no stage of BPDA's.
GRADIENT_FREE = AttackSpec("square", "square (gradient-free)", {})


def adaptive_attacks(defense: DefenseSpec, spec: Spec) -> tuple[AttackSpec, ...]:
    """The spec's attacks again, aimed at the defense's adaptive view, when a naive attack can be fooled.

    A random defense is attacked through the expectation of its predictions (EOT), a non-differentiable
    one through its surrogate gradient (BPDA); the labels say which, e.g. ``pgd+BPDA``. With ``eot_draws =
    "auto"`` a random defense's expectation measures its own draws (:class:`advsec.defense.Expectation`)
    and APGD-CE (``STRONG_EOT``) follows the spec's attacks through it: a spec's short attacks, through
    a few draws, stop short of what a strong EOT attack reaches, and APGD halves its step wherever the
    expected loss stops rising. A number of draws fixes the stage to the spec's attacks alone. A
    deterministic non-differentiable defense meets Square too (``GRADIENT_FREE``) unless the spec has it.
    """
    cls = registry.defenses.get(defense.name)
    auto = spec.evaluation.eot_draws == EOT_AUTO
    draws = "" if auto else spec.evaluation.eot_draws
    tricks = ["BPDA"] * (not cls.differentiable) + [f"EOT{draws}"] * cls.stochastic
    if not (spec.evaluation.adaptive and tricks):
        return ()
    suffix = "+" + "+".join(tricks)
    attacks = tuple(replace(a, label=a.label + suffix, adaptive=True) for a in bounded(spec.attacks))
    strong = registry.attacks.get(STRONG_EOT.name)
    label = STRONG_EOT.label + suffix
    if auto and cls.stochastic and all(t.norm in strong.norms for t in spec.threats):
        attacks += (replace(STRONG_EOT, label=label),) * (label not in {a.label for a in attacks})
    square = registry.attacks.get(GRADIENT_FREE.name)
    has_square = any(a.name == GRADIENT_FREE.name for a in spec.attacks)
    if not (cls.stochastic or has_square) and all(t.norm in square.norms for t in spec.threats):
        attacks += (GRADIENT_FREE,)
    return attacks


def bounded(attacks: tuple[AttackSpec, ...]) -> tuple[AttackSpec, ...]:
    """The attacks that perturb test inputs within a budget: the cells' (advsec.unrestricted has the rest)."""
    return tuple(a for a in attacks if not registry.attacks.get(a.name).unrestricted)


def untrained_shadows(spec: Spec, dataset: Dataset, pending: list[Cell]) -> list[DefenseSpec]:
    """The defense of every LiRA shadow model the ``pending`` cells will train, once per model: the clean
    cell of a defense computes its membership inference, and a shadow in the cache costs no training."""
    if not spec.privacy.shadows:
        return []
    samples = subset_size(spec.evaluation.samples, len(dataset.y_test))  # as many members as non-members
    out = []
    for cell in (c for c in pending if c.norm == CLEAN):
        defense = cell.defense
        plugin = make_plugin(registry.defenses.get(defense.name), defense.params, defense.label)
        members = scored_members(dataset, defense, plugin, spec.seed, samples)
        recipe = _shadow_recipe(spec, dataset, defense, members, samples)
        out += [defense] * sum(not is_cached(key) for key in recipe.cache_keys())
    return out


def scored_members(
    dataset: Dataset, defense: DefenseSpec, plugin: Defense, seed: int, count: int
) -> torch.Tensor:
    """The ``count`` training samples membership inference scores as members, drawn by class from those the
    model learned from (:mod:`advsec.data.subset`). A checkpoint learned from the dataset's training split,
    as the user declares by giving one; a model advsec trained, from the samples its training used."""
    if defense.model is None or defense.fine_tune:
        pool = trained_on(dataset, plugin, seed)
    else:
        pool = torch.arange(len(dataset.x_train))
    return pool[stratified(dataset.y_train[pool], count, draw_seed("members", seed))]


def _shadow_recipe(
    spec: Spec, dataset: Dataset, defense: DefenseSpec, members: torch.Tensor, nonmembers: int
) -> ShadowRecipe:
    """LiRA's shadow models of ``defense``, none trained on the scored ``members`` or test samples."""
    return ShadowRecipe(dataset, spec.model, defense.name, defense.params, defense.train, spec.seed,
                        members=members, nonmembers=nonmembers, count=spec.privacy.shadows)  # fmt: skip


class Executor(Protocol):
    """Evaluates cells and yields their results, in any order; only the caller writes them to the store."""

    def map(self, evaluator: CellEvaluator, cells: list[Cell]) -> Iterator[CellResult]: ...


class LocalExecutor:
    """Runs cells one after another in this process (:mod:`advsec.distributed` runs one Ray task per cell)."""

    def map(self, evaluator: CellEvaluator, cells: list[Cell]) -> Iterator[CellResult]:
        for cell in cells:
            yield evaluator(cell)


def run_grid(
    runtime: Runtime,
    *,
    fresh: bool = False,
    executor: Executor | None = None,
    max_cost: float | None = None,
) -> None:
    """Run every cell of the runtime's spec not already in its store.

    The cost of what is left is estimated first (:mod:`advsec.cost`); over ``max_cost`` sample passes,
    nothing runs.
    """
    spec, dataset, store, progress = runtime.spec, runtime.dataset, runtime.store, runtime.progress
    assert store is not None, "the grid writes its cells to the runtime's store"
    cells = plan(spec, dataset)
    if fresh:
        store.clear()
    done = store.finished()
    pending = [c for c in cells if c.key not in done]
    untrained = [
        d for d in spec.defenses if (d.model is None or d.fine_tune) and not is_cached(runtime.trained_key(d))
    ]
    works = work(spec, dataset, pending, untrained, untrained_shadows(spec, dataset, pending))
    cost = Estimate.of(works)
    progress.log(f"{spec.name}: {cost.describe()}; an upper bound for advsec's own attacks")
    if max_cost is not None and cost.total > max_cost:
        raise CostError(
            f"the run would cost up to {cost.total:.3g} sample passes, over --max-cost {max_cost:.3g}; "
            "shrink [evaluation] samples, the budgets or the attacks, or raise --max-cost"
        )
    # A pilot costs a few percent of the run: only worth it where someone reads the forecast as it runs.
    timing = forecast(runtime, pending, works, None if progress.quiet else pilot)
    progress.log(f"{spec.name}: {timing.describe()}")
    store.set_plan([c.key for c in cells])
    store.set_meta({**runtime.meta(), "estimated_cost": {**asdict(cost), **timing.to_meta()}})
    progress.log(
        f"{spec.name}: {len(cells)} cells, {len(cells) - len(pending)} already done, {len(pending)} to run"
    )
    progress.expect(timing.pieces)
    evaluator = CellEvaluator(runtime)
    titles = {c.key: c.title for c in pending}
    with progress.task("cells", total=len(pending)) as task:
        for done, result in enumerate((executor or LocalExecutor()).map(evaluator, pending), 1):
            store.save_cell(result)
            scored = "robust" if result.attacks else "correct"
            progress.status(f"{titles[result.cell]}: done in {result.wall_seconds:.1f} s, "
                            f"{int(result.robust.sum())} of {len(result.robust)} {scored}, "
                            f"{done} of {len(pending)} cells", finished=result.cell)  # fmt: skip
            task.advance()  # after the line, which says more than the task's own would
    store.set_meta({"finished_at": now(), "computed_cells": len(pending)})


class CellEvaluator:
    """Evaluates cells on the runtime's models, each trained (or loaded) once, on first use."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def __call__(self, cell: Cell) -> CellResult:
        runtime = self.runtime
        trained = runtime.trained(cell.defense)
        runtime.progress.finished(f"train/{cell.defense.label}")
        seed = runtime.seed(cell.randomness)
        with seeded(seed, runtime.device):  # random defenses draw from the global generator
            x, y = runtime.test_split(runtime.spec.evaluation.samples)
            return evaluate_cell(cell, trained, x, y, runtime.dataset, runtime.spec, seed, runtime.progress)


def pilot(runtime: Runtime, cell: Cell, chosen: torch.Tensor) -> list[AttackRecord] | None:
    """The cell's cascade on the ``chosen`` samples alone, for the forecast of its time
    (:mod:`advsec.forecast`): each stage's record of what it attacked and spent. None where a pilot would
    change or cost what it prices: a stateful model's queries move it, a generator trains first."""
    trained = runtime.trained(cell.defense)
    generators = any(registry.attacks.get(a.name).kind == "generator" for a in cell.attacks)
    if type(trained.defense).stateful or generators:
        return None
    spec = runtime.spec
    alone = replace(spec, evaluation=replace(spec.evaluation, escalate=False, examples=0))
    seed = runtime.seed(cell.randomness)
    with seeded(seed, runtime.device):
        x, y = runtime.test_split(spec.evaluation.samples)
        result = evaluate_cell(
            cell, trained, x[chosen], y[chosen], runtime.dataset, alone, seed, Progress(quiet=True)
        )
    return result.attacks


def evaluate_cell(
    cell: Cell,
    trained: TrainedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    dataset: Dataset,
    spec: Spec,
    seed: int,
    progress: Progress,
) -> CellResult:
    """Clean predictions, then the cascade at this cell's budget; per-sample worst case.

    Every prediction that scores a sample comes from the model as deployed; adaptive attacks only
    compute their perturbations through the adaptive view.
    """
    started = time.perf_counter()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    views = Views.of(trained, dataset, spec.evaluation)
    threat = cell.threat(dataset.bounds)
    escalates = spec.evaluation.escalate and threat is not None
    # Taken before the first query: a model that keeps state it did not declare is restored to this.
    pristine = pristine_views(views) if escalates and not type(trained.defense).stateful else None
    clean_logits = views.logits(x)
    verdicts = Verdicts.clean(x, y, views.redraw(clean_logits.argmax(1), x))

    def fit(attack: Generator, spec_attack: AttackSpec, model: nn.Module) -> tuple[float, bool]:
        with views.counted.paused():  # the fit is charged once, apart from the per-sample passes
            aim = _fitted_target(spec_attack)
            view = "adaptive" if spec_attack.adaptive else "deployed"
            return fit_generator(attack, spec_attack.name, model, dataset, threat, target=aim, view=view,
                                 model_key=trained.key, seed=spec.seed, progress=progress)  # fmt: skip

    records, checks, judged = [], [], []
    # A defense attacked adaptively declared its tricks and met the attacks made for them, so a stage's
    # stalled loss calls for nothing more: behind rounding, a loss no attack raises is often one that no
    # input within the budget changes. It is still reported.
    answered = any(a.adaptive for a in cell.attacks)
    stages = len(cell.attacks)
    progress.status(f"{cell.title}: {stages} attack stages on {len(x)} samples" if stages else
                    f"{cell.title}: clean predictions on {len(x)} samples")  # fmt: skip
    with progress.task(cell.title, total=stages) as task:
        for index, spec_attack in enumerate(cell.attacks):
            candidates = verdicts.robust if spec.evaluation.cascade else verdicts.clean_correct
            todo = candidates.nonzero().squeeze(1)
            record, check = _attack_stage(
                spec_attack, todo, views, verdicts, x, y, clean_logits, threat, generator, fit
            )
            records.append(record)
            checks += [check] if check is not None else []
            judged += [check] if check is not None and not answered else []
            progress.status(f"{cell.title}: {_stage_done(record, verdicts)}, {index + 1} of {stages} stages",
                            finished=stage_key(cell.key, index))  # fmt: skip
            task.advance()
    with views.counted.paused():
        own = _checks(cell, trained, views, x, y, verdicts.robust, records, dataset, spec)
        own += _certificate(cell, trained, views, x, verdicts, dataset)
        checks += own
        found = (
            causes(judged + own + _model_checks(cell, trained, views, x, y, dataset, spec))
            if escalates
            else {}
        )
    escalated = escalated_views(views, pristine, found, spec.evaluation)
    for spec_attack, reason in follow_ups(found, cell.norm, cell.attacks):
        todo = verdicts.robust.nonzero().squeeze(1)
        record, _ = _attack_stage(
            spec_attack, todo, escalated, verdicts, x, y, clean_logits, threat, generator, fit
        )
        record.escalation = reason
        records.append(record)
        progress.status(f"{cell.title}: {_stage_done(record, verdicts)}, a follow-up ({reason})")
    with views.counted.paused():
        # A checkpoint's members are the dataset's training split, where the user gave one.
        known_members = cell.defense.model is None or len(dataset.x_train) > 0
        attacked = threat is not None or not known_members
        privacy = (
            []
            if attacked
            else _membership(cell.defense, trained, views.deployed, x, y, dataset, spec, progress)
        )
    shown = across_classes(y.tolist(), spec.evaluation.examples) if cell.attacks else []
    if spec.detection is not None:  # a detector's examples are the fakes it caught that the attacks passed
        passed = verdicts.clean_correct & ~verdicts.robust & (y == FAKE)
        shown = passed.nonzero().squeeze(1)[: len(shown)].tolist()
    return CellResult(
        cell=cell.key,
        defense=cell.defense.label,
        norm=cell.norm,
        eps=cell.eps,
        cascade=spec.evaluation.cascade,
        labels=y.cpu().numpy(),
        clean_pred=verdicts.clean_pred.cpu().numpy(),
        adv_pred=verdicts.adv_pred.cpu().numpy(),
        robust=verdicts.robust.cpu().numpy(),
        clean_single=verdicts.clean_first_draw.cpu().numpy(),
        robust_single=verdicts.robust_first_draw.cpu().numpy(),
        broken_by=verdicts.broken_by,
        attacks=records,
        wall_seconds=time.perf_counter() - started,
        examples=[(i, x[i].cpu().numpy(), verdicts.x_final[i].cpu().numpy()) for i in shown],
        checks=checks,
        privacy=privacy,
    )


def _stage_done(record: AttackRecord, verdicts: Verdicts) -> str:
    return f"{record.label} done ({int(verdicts.robust.sum())} of {len(verdicts.y)} robust)"


@dataclass
class Verdicts:
    """Each sample's standing in a cell: its clean prediction, whether every draw still gets it right
    under every attack so far (and whether the first draw alone does), and which attack broke it."""

    y: torch.Tensor
    clean_pred: torch.Tensor
    robust: torch.Tensor
    robust_first_draw: torch.Tensor  # what one evaluation per sample would have said
    clean_first_draw: torch.Tensor
    adv_pred: torch.Tensor
    x_final: torch.Tensor  # the input each sample ends on: what broke it, or the last attempt it survived
    broken_by: list[str | None]

    @classmethod
    def clean(cls, x: torch.Tensor, y: torch.Tensor, draws: torch.Tensor) -> Verdicts:
        clean_pred = _worst(draws, y)
        first_draw = draws[0] == y
        return cls(y, clean_pred, clean_pred == y, first_draw, first_draw.clone(), clean_pred.clone(),
                   x.clone(), [None] * len(x))  # fmt: skip

    @property
    def clean_correct(self) -> torch.Tensor:
        return self.clean_pred == self.y

    def update(
        self, chunk: torch.Tensor, x_adv: torch.Tensor, draws: torch.Tensor, label: str
    ) -> tuple[torch.Tensor, int]:
        """Score an attack's outputs for the samples ``chunk``; its worst-case predictions and how many
        samples it broke that were robust until now."""
        y = self.y[chunk]
        pred = _worst(draws, y)
        self.robust_first_draw[chunk] &= draws[0] == y
        newly = (pred != y) & self.robust[chunk]
        for i in chunk[newly].tolist():
            self.broken_by[i] = label
        self.adv_pred[chunk[newly]] = pred[newly]
        still = self.robust[chunk] & ~newly
        self.x_final[chunk[newly | still]] = x_adv[newly | still].detach()
        self.robust[chunk[newly]] = False
        return pred, int(newly.sum())


def _attack_stage(
    spec_attack: AttackSpec,
    todo: torch.Tensor,
    views: Views,
    verdicts: Verdicts,
    x: torch.Tensor,
    y: torch.Tensor,
    clean_logits: torch.Tensor,
    threat: ThreatModel,
    generator: torch.Generator,
    fit: Callable[[Generator, AttackSpec, nn.Module], tuple[float, bool]],
) -> tuple[AttackRecord, SanityCheck | None]:
    """One attack of the cascade on the samples ``todo``, in batches: its record, and its loss check.
    A generator is fitted first (``fit``), its fit recorded apart."""
    attack: Attack = make_plugin(
        registry.attacks.get(spec_attack.name), spec_attack.params, spec_attack.label
    )
    record = AttackRecord(spec_attack.label, spec_attack.name, spec_attack.params, spec_attack.target,
                          spec_attack.adaptive)  # fmt: skip
    if isinstance(spec_attack.target, int):  # a sample of the chosen class already is what it aims for
        todo = todo[y[todo] != spec_attack.target]
    model = views.adaptive if spec_attack.adaptive else views.deployed
    if isinstance(attack, Generator) and len(todo):  # nothing left to attack: nothing to fit for
        record.fit_seconds, record.fit_cached = fit(attack, spec_attack, model)
        learned = attack.learned(threat, tuple(x.shape[1:]))
        record.learned = None if learned is None else learned.cpu().numpy()
    counted = views.counted
    forwards, backwards, started = counted.forwards, counted.backwards, time.perf_counter()
    # Iterative gradient attacks must climb the loss they follow; one step may overshoot (FGSM).
    climbs = attack.kind == "gradient" and gradient_steps(attack) > 1
    stalled = 0
    search = counted.searching if attack.reduced_search else nullcontext
    for chunk, target, x_adv in _perturbed(attack, model, spec_attack.target, todo, views.batch, x, y,
                                           clean_logits, threat, generator, search):  # fmt: skip
        check_attack_output(spec_attack.label, threat, x[chunk], x_adv)
        if climbs:
            with counted.paused():
                stalled += loss_not_raised(attack, views.adaptive, x[chunk], x_adv, y[chunk], target)
        pred, broken = verdicts.update(chunk, x_adv, views.predictions(x_adv), spec_attack.label)
        distances = threat.distance(x[chunk], x_adv).tolist()
        aims = [None] * len(chunk) if target is None else target.tolist()
        record.attempts += zip(chunk.tolist(), pred.tolist(), distances, aims, strict=True)
        record.broken += broken
    record.attacked = len(todo)
    record.forwards = counted.forwards - forwards
    record.backwards = counted.backwards - backwards
    record.wall_seconds = time.perf_counter() - started
    return record, loss_check(spec_attack.label, stalled, len(todo)) if climbs and len(todo) else None


def _perturbed(
    attack: Attack,
    model: nn.Module,
    aim: str | int,
    todo: torch.Tensor,
    batch: int,
    x: torch.Tensor,
    y: torch.Tensor,
    clean_logits: torch.Tensor,
    threat: ThreatModel,
    generator: torch.Generator,
    search: Callable[[], AbstractContextManager[None]],
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
    """The attack's outputs on the samples ``todo``, as (samples, targets, outputs) per batch. An attack
    that streams is called once for them all and keeps ``batch`` in flight itself; any other, per batch.
    Its passes run inside ``search`` (advsec.precision); what is done with its outputs, outside."""
    if attack.streams:
        attack.batch = batch
    for call in [todo] if attack.streams else todo.split(batch):
        if not len(call):
            continue
        target = _targets(aim, y[call], clean_logits[call], generator)
        with search():
            x_adv = attack.perturb(model, x[call], y[call], threat, target=target, generator=generator)
        for rows in torch.arange(len(call)).split(batch):
            yield call[rows], None if target is None else target[rows], x_adv[rows]


def _membership(
    defense: DefenseSpec,
    trained: TrainedModel,
    deployed: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    dataset: Dataset,
    spec: Spec,
    progress: Progress,
) -> list[MembershipInference]:
    """Membership inference against the deployed model: as many training samples it learned from as test
    samples evaluated, told apart by their loss, benign and at the report's budget, and by offline LiRA
    when ``[privacy] shadows`` asks for it (:mod:`advsec.privacy`, :mod:`advsec.lira`). A user's checkpoint
    learned from the dataset's training split, as the user declares by giving one; the spec refuses LiRA
    for it (:func:`advsec.spec.lira_trainable`), as advsec cannot train its like."""
    members = scored_members(dataset, defense, trained.defense, spec.seed, len(x))
    shadows = None
    if spec.privacy.shadows:
        lira_trainable((defense,), spec.models)  # a Spec built in code has not met the parser's refusal
        recipe = _shadow_recipe(spec, dataset, defense, members, len(x))
        shadows = recipe.models(device=x.device, progress=progress, label=defense.label)
    threat = ThreatModel(spec.threats[0].norm, spec.report_eps, dataset.bounds)
    return membership_inference(
        deployed,
        (dataset.x_train[members].to(x.device), dataset.y_train[members].to(x.device)),
        (x, y),
        threat=threat,
        batch=spec.evaluation.batch_size,
        shadows=shadows.models if shadows else (),
        shadow_seconds=shadows.train_seconds if shadows else 0.0,
    )


def _checks(
    cell: Cell,
    trained: TrainedModel,
    views: Views,
    x: torch.Tensor,
    y: torch.Tensor,
    robust: torch.Tensor,
    records: list[AttackRecord],
    dataset: Dataset,
    spec: Spec,
) -> list[SanityCheck]:
    """Sanity checks (:mod:`advsec.sanity`): the model's own in its clean cell, the evaluation's elsewhere."""
    flags = type(trained.defense)
    if cell.norm == CLEAN:
        return _model_checks(cell, trained, views, x, y, dataset, spec)
    checks = []
    # A defense attacked adaptively is judged by those attacks: its naive stage losing to a query attack is
    # the masking they exist for, so the order checked is the adaptive stage's alone.
    stages = list(zip(cell.attacks, records, strict=True))
    judged = [(attack, record) for attack, record in stages if attack.adaptive] or stages
    order = [(registry.attacks.get(attack.name).kind, record.broken) for attack, record in judged]
    if spec.evaluation.cascade and (check := cascade_check(order, len(x))):
        checks.append(check)
    if flags.stochastic and not any(a.adaptive for a in cell.attacks):
        probed = slice(0, EOT_PROBE_SAMPLES)

        def correct(x_adv: torch.Tensor) -> torch.Tensor:
            return (views.predictions(x_adv) == y[probed]).all(0)

        threat = cell.threat(dataset.bounds)
        checks.append(eot_probe(views.adaptive, x[probed], y[probed], robust[probed], threat, correct))
    return checks


def _certificate(
    cell: Cell, trained: TrainedModel, views: Views, x: torch.Tensor, verdicts: Verdicts, dataset: Dataset
) -> list[SanityCheck]:
    """The defense's own certificate at this cell's budget, scored against what the attacks did."""
    threat = cell.threat(dataset.bounds)
    if threat is None:
        return []
    found = [trained.defense.certified(views.deployed, chunk, threat) for chunk in x.split(views.batch)]
    if not found or any(f is None for f in found):
        return []
    return [certificate_check(torch.cat(found), verdicts.clean_correct, verdicts.robust)]


def _model_checks(
    cell: Cell,
    trained: TrainedModel,
    views: Views,
    x: torch.Tensor,
    y: torch.Tensor,
    dataset: Dataset,
    spec: Spec,
) -> list[SanityCheck]:
    """The model's own checks (:func:`advsec.sanity.model_checks`), its gradients as the cell's attacks
    see them."""
    flags = type(trained.defense)
    attacked = views.adaptive if adaptive_attacks(cell.defense, spec) else views.deployed
    return model_checks(views.deployed, attacked, x, y, stochastic=flags.stochastic,
                        stateful=flags.stateful, batch=views.batch, bounds=dataset.bounds)  # fmt: skip


def _worst(predictions: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample, the first wrong prediction among the draws, else the (correct) first one."""
    return first_hit(predictions, predictions != y)


def _fitted_target(spec_attack: AttackSpec) -> int | None:
    """The class a generator learns to aim at: a chosen one, or none (specs refuse the other modes)."""
    return spec_attack.target if isinstance(spec_attack.target, int) else None


def _targets(
    mode: str | int, y: torch.Tensor, clean_logits: torch.Tensor, generator: torch.Generator
) -> torch.Tensor | None:
    if mode == "none":
        return None
    if isinstance(mode, int):
        return torch.full_like(y, mode)
    if mode == "least-likely":
        return clean_logits.argmin(dim=1)
    classes = clean_logits.shape[1]  # "random": uniform over the classes other than the true one
    shift = torch.randint(1, classes, y.shape, generator=generator, device=y.device)
    return (y + shift) % classes
