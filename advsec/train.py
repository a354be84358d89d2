"""The training loop and the model cache.

A trained model is cached under a content hash of everything that determines it (dataset contents,
architecture, defense and its parameters, training config, seed), as safetensors: loading a cached model
never unpickles anything.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Literal

import torch
from torch import nn

import advsec.registry as registry
from advsec.attack import accuracy
from advsec.checkpoints import cache_dir, load_checkpoint, save_checkpoint
from advsec.data import Dataset
from advsec.defense import Defense
from advsec.errors import InputError
from advsec.keys import content_key, seeded
from advsec.progress import Progress
from advsec.spec import TrainConfig, make_plugin
from advsec.threads import rebalance

CACHE_FORMAT = 4  # bump when training semantics change, so old checkpoints are not reused


@dataclass
class TrainedModel:
    """A trained network and its defense, plus where it came from and what it cost."""

    network: nn.Module
    defense: Defense
    bounds: tuple[float, float]
    key: str
    train_seconds: float
    cached: bool
    history: list[dict[str, float]]

    @property
    def model(self) -> nn.Module:
        """The model as deployed: the network behind the defense's inference-time behaviour."""
        return self.defense.wrap(self.network, bounds=self.bounds)


def is_cached(key: str) -> bool:
    """Whether the model under ``key`` (:func:`model_key`) is in the cache: loading it costs no training."""
    return (cache_dir() / f"{key}.safetensors").exists()


def model_key(
    dataset: Dataset,
    model_name: str,
    defense_name: str,
    params: dict[str, Any],
    config: TrainConfig,
    seed: int,
) -> str:
    """A hash of everything that determines a trained model.

    The defense enters with all its fields, defaults included, so changing a default retrains.
    """
    defense = make_plugin(registry.defenses.get(defense_name), params, defense_name)
    if defense.trained_like is not None:
        return model_key(dataset, model_name, defense.trained_like, {}, config, seed)
    fields = asdict(defense) if is_dataclass(defense) else params
    content = {
        "format": CACHE_FORMAT,
        "dataset": [dataset.name, dataset.fingerprint],
        "model": model_name,
        "defense": [defense_name, fields],
        "train": asdict(config),
        "seed": seed,
    }
    return content_key(content)


def build_model(model_name: str, dataset: Dataset, seed: int) -> nn.Module:
    """A freshly initialized model; its initial weights depend on ``seed`` only.

    It is tried on one input first: a model that cannot take the dataset's inputs, or answers with the
    wrong number of classes, is refused here with a message rather than deep inside training or an attack.
    """
    with seeded(seed, torch.device("cpu")):
        model = registry.models.get(model_name)(dataset.input_shape, dataset.num_classes)
    probe = torch.zeros(1, *dataset.input_shape)
    try:
        with torch.no_grad():
            shape = tuple(model.eval()(probe).shape)
    except Exception as exc:  # whatever a plugin's forward raises, its message is the one to show
        raise InputError(
            f"model {model_name!r} cannot take {dataset.name!r} inputs shaped {dataset.input_shape}: {exc}"
        ) from exc
    if shape != (1, dataset.num_classes):
        raise InputError(
            f"model {model_name!r} answers an input with outputs shaped {shape[1:]}, "
            f"but {dataset.name!r} has {dataset.num_classes} classes"
        )
    return model.train()


def load_or_train(
    dataset: Dataset,
    model_name: str,
    defense_name: str,
    params: dict[str, Any],
    config: TrainConfig,
    seed: int,
    *,
    device: torch.device,
    progress: Progress,
    label: str | None = None,
) -> TrainedModel:
    """The trained model from the cache, or trained now (and cached) when absent, with what its defense
    needs besides (:meth:`Defense.prepare`); its training seconds include that fit's."""
    defense = make_plugin(registry.defenses.get(defense_name), params, defense_name)
    key = model_key(dataset, model_name, defense_name, params, config, seed)
    model = defense.network(lambda member: build_model(model_name, dataset, seed + member))
    return fit_or_load(
        model, key, dataset, defense, config, seed, device=device, progress=progress, label=label
    )


def fit_or_load(
    model: nn.Module,
    key: str,
    dataset: Dataset,
    defense: Defense,
    config: TrainConfig,
    seed: int,
    *,
    device: torch.device,
    progress: Progress,
    label: str | None = None,
) -> TrainedModel:
    """``model`` with the weights cached under ``key``, or trained from the weights it has (and cached);
    in eval mode on ``device``, its defense prepared."""
    path = cache_dir() / f"{key}.safetensors"
    if is_cached(key):
        meta = load_checkpoint(model, path)
        cached = True
    else:
        started = time.perf_counter()
        history = train(model, dataset, defense, config, seed, device=device, progress=progress, label=label)
        meta = {"train_seconds": time.perf_counter() - started, "history": history}
        save_checkpoint(model, path, meta)
        cached = False
    model.to(device).eval()
    prepared_seconds = defense.prepare(dataset, seed=seed, device=device, progress=progress)
    return TrainedModel(
        network=model,
        defense=defense,
        bounds=dataset.bounds,
        key=key,
        train_seconds=meta["train_seconds"] + prepared_seconds,
        cached=cached,
        history=meta["history"],
    )


def train(
    model: nn.Module,
    dataset: Dataset,
    defense: Defense,
    config: TrainConfig,
    seed: int,
    *,
    device: torch.device,
    progress: Progress,
    label: str | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``dataset`` with the defense's batch loss; returns per-epoch stats.

    A defense with ``guard_samples`` holds that many training samples out and is checked on them after
    every epoch (:class:`OverfittingGuard`).
    """
    if len(dataset.x_train) <= defense.guard_samples:
        raise InputError(
            f"dataset {dataset.name!r} has {len(dataset.x_train)} training samples, too few to train on: "
            "evaluate a trained model instead (a [[models]] entry), or give the dataset a training split"
        )
    with seeded(seed, device):  # models that augment while training draw from the global generator
        generator = torch.Generator().manual_seed(seed)
        held_out, kept = training_split(len(dataset.x_train), defense.guard_samples, generator)
        x, y = dataset.x_train[kept].to(device), dataset.y_train[kept].to(device)
        model.to(device).train()
        name = label or type(defense).__name__

        def log(message: str) -> None:
            progress.log(f"{name}: {message}")

        # The defense says how steps are taken: which samples make a batch, how the optimizer steps.
        trainer = defense.trainer(model, _optimizer(model, config), samples=len(x),
                                  batch_size=config.batch_size, epochs=config.epochs, generator=generator,
                                  log=log)  # fmt: skip
        optimizer = trainer.optimizer
        guard = None
        if len(held_out):
            checked = (dataset.x_train[held_out].to(device), dataset.y_train[held_out].to(device))
            guard = OverfittingGuard(defense, model, optimizer, checked, dataset.bounds, generator, log=log)
        steps = config.epochs * trainer.batches
        learning_rate = _schedule(config, steps)
        history: list[dict[str, float]] = []
        step = epoch = 0
        with trainer, progress.task(f"train {name}", total=steps, unit="steps") as task:
            while epoch < config.epochs:
                epoch += 1
                total, seen = 0.0, 0
                for batch in trainer.epoch():
                    rebalance()
                    batch = batch.to(device)
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate(step)
                    loss = _step(model, defense, optimizer, x[batch], y[batch], dataset.bounds, generator,
                                 progress=step / steps)  # fmt: skip
                    total += loss * len(batch)
                    seen += len(batch)
                    step += 1
                    task.advance()
                history.append({"epoch": epoch, "loss": total / max(seen, 1), **trainer.record()})
                verdict = "train on" if guard is None else guard.after_epoch(epoch, history[-1])
                if verdict == "stop":
                    break
                if verdict == "start over":  # from fresh weights, learning rate schedule and all
                    step = epoch = 0
                    task.reset()
        model.eval()
        return history


def _step(
    model: nn.Module,
    defense: Defense,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    bounds: tuple[float, float],
    generator: torch.Generator,
    *,
    progress: float,
) -> float:
    """One optimizer step on the defense's loss of the batch ``(x, y)``; the loss."""
    loss = defense.loss(model, x, y, bounds=bounds, generator=generator, progress=progress)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


@contextmanager
def trial_steps(
    model: nn.Module,
    dataset: Dataset,
    defense: Defense,
    config: TrainConfig,
    seed: int,
    *,
    device: torch.device,
) -> Iterator[tuple[Callable[[], float], int]]:
    """A training step as :func:`train` takes it (the defense's loss on a batch, its attack steps included,
    the backward and the optimizer's step), to time, and the steps one training takes. The step trains a
    copy of ``model``, which keeps its weights."""
    trial = copy.deepcopy(model).to(device).train().requires_grad_(True)  # a loaded model's are frozen
    samples = len(dataset.x_train) - defense.guard_samples
    with seeded(seed, device):
        generator = torch.Generator().manual_seed(seed)
        trainer = defense.trainer(trial, _optimizer(trial, config), samples=samples,
                                  batch_size=config.batch_size, epochs=config.epochs, generator=generator,
                                  log=lambda _: None)  # fmt: skip
        with trainer:
            batch = next(trainer.epoch())
            x, y = dataset.x_train[batch].to(device), dataset.y_train[batch].to(device)

            def step() -> float:
                return _step(trial, defense, trainer.optimizer, x, y, dataset.bounds, generator, progress=1.0)

            yield step, config.epochs * trainer.batches


def training_split(n: int, held_out: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the ``held_out`` training samples kept for the overfitting guard, and of those trained on:
    the two ends of one permutation drawn from ``generator``."""
    order = torch.randperm(n, generator=generator)
    return order[:held_out], order[held_out:]


def trained_on(dataset: Dataset, defense: Defense, seed: int) -> torch.Tensor:
    """The indices of the training samples a model trained with ``seed`` learned from, in a random order."""
    return training_split(len(dataset.x_train), defense.guard_samples, torch.Generator().manual_seed(seed))[1]


Verdict = Literal["train on", "stop", "start over"]  # the overfitting guard's word after an epoch
CONSTANT_MARGIN = 0.05  # clean held-out accuracy within this of a constant answer's: training collapsed


class OverfittingGuard:
    """Keeps the best epoch by robust accuracy on held-out samples, and puts it back after a collapse.

    When the check falls more than ``guard_drop`` below the best epoch's, or the defense sees the sign of
    collapse in it, training has collapsed (catastrophic overfitting, Wong et al. 2020); so has it when
    the model does no better on clean held-out samples than one answer for all would. The best epoch's
    weights and optimizer state are restored and training goes on, the learning rate following its
    schedule; when no epoch was good yet, training starts over from freshly drawn weights (the initial ones
    had led into the collapse). After more than ``guard_retries`` collapses it stops (with 0 retries this
    is Wong et al.'s early stopping).
    """

    def __init__(
        self,
        defense: Defense,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        held_out: tuple[torch.Tensor, torch.Tensor],
        bounds: tuple[float, float],
        generator: torch.Generator,
        *,
        log: Callable[[str], None],
    ) -> None:
        self.defense, self.model, self.optimizer = defense, model, optimizer
        self.held_out, self.bounds, self.generator, self.log = held_out, bounds, generator, log
        # what always answering the held-out samples' commonest class would score: a constant model's best
        self.guessing = torch.bincount(held_out[1]).max().item() / len(held_out[1])
        # check, epoch, weights, optimizer state; before any epoch, no weights worth going back to
        self.best: tuple[float, int, dict[str, Any] | None, dict[str, Any]]
        self.best = (float("-inf"), 0, None, copy.deepcopy(optimizer.state_dict()))
        self.collapses = 0

    def _states(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict())

    def after_epoch(self, epoch: int, record: dict[str, float]) -> Verdict:
        """Check the model, note the result in ``record``, and restore it on a collapse."""
        self.model.eval()
        check = self.defense.check(self.model, *self.held_out, bounds=self.bounds, generator=self.generator)
        clean = accuracy(self.model, *self.held_out)
        self.model.train()
        record["check"] = check.robust
        # A model no better on clean inputs than always answering the commonest class has collapsed too;
        # if it never was good it shows no drop, and no FGSM sign either (FGSM, clean and PGD all at chance).
        constant = clean <= self.guessing + CONSTANT_MARGIN
        best, best_epoch, weights, optimizer_state = self.best
        collapsed = check.overfit or constant
        if not collapsed and check.robust >= best:
            self.best = (check.robust, epoch, *self._states())
            return "train on"
        if not collapsed and check.robust >= best - self.defense.guard_drop:
            return "train on"
        fresh = weights is None  # no epoch was good yet: nothing to go back to
        if fresh:
            _reinitialize(self.model, self.generator)
        else:
            self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(optimizer_state)
        record["restored"] = best_epoch
        if check.overfit:
            record["overfit"] = True
        if constant:
            record["constant"] = True
        self.collapses += 1
        stop = self.collapses > self.defense.guard_retries
        if constant:
            sign = f"clean accuracy on held-out samples is {clean:.1%}, no better than one answer for all"
        elif check.overfit:
            sign = "the training attack no longer hurts it while PGD does"
        else:
            sign = f"robust accuracy on held-out samples fell from {best:.1%} (epoch {best_epoch})"
        self.log(
            f"{sign}, {check.robust:.1%} robust at epoch {epoch}: "
            + ("training collapsed; " if constant else "catastrophic overfitting; ")
            + ("drew fresh weights" if fresh else f"restored epoch {best_epoch}")
            + (" and stopped" if stop else " and started over" if fresh else " and carried on")
        )
        return "stop" if stop else "start over" if fresh else "train on"


def _reinitialize(model: nn.Module, generator: torch.Generator) -> None:
    """Fresh weights, drawn by each layer's own initializer under a seed drawn from ``generator``: torch's
    global generator, seeded as when the model was built, would draw the very same weights again."""
    device = next(model.parameters()).device
    with seeded(int(torch.randint(2**62, (1,), generator=generator)), device):
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()


def _schedule(config: TrainConfig, steps: int) -> Callable[[int], float]:
    """The learning rate at each optimizer step."""
    if config.schedule == "constant":
        return lambda step: config.lr
    peak = config.peak * steps
    return lambda step: config.lr * (step / peak if step < peak else (steps - step) / (steps - peak))


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
