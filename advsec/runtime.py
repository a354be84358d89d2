"""The runtime under the harness and every protocol: data, deployed models, batched prediction, seeds and
run metadata.

A protocol (the grid of :mod:`advsec.harness`, or :mod:`advsec.certify`, :mod:`advsec.replay`,
:mod:`advsec.unrestricted`) asks a :class:`Runtime` for the spec's dataset and for "the deployed model of
this defense", trained once per run or loaded from the model cache, and for the seed of a piece of work
keyed by its content. None of them reaches into another's internals.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

import advsec.registry as registry
from advsec.admission import check_clean_accuracy, normalization_warning
from advsec.data import Dataset, fingerprint
from advsec.data.load import load_dataset
from advsec.data.subset import describe, draw_seed, stratified
from advsec.defense import Defense, Expectation
from advsec.detection import deployed_detector
from advsec.errors import InputError
from advsec.frozen import FrozenTwin
from advsec.input_gradient import cheap_input_gradients
from advsec.keys import content_key, key_seed, seeded
from advsec.precision import ReducedPrecision
from advsec.progress import Progress
from advsec.spec import DefenseSpec, EvaluationConfig, Spec, make_plugin
from advsec.store import Store
from advsec.threads import rebalance
from advsec.train import TrainedModel, fit_or_load, load_or_train, model_key
from advsec.user_models import checkpoint_key, describe_checkpoint, load_user_model
from advsec.version import __version__


def trained_model_key(spec: Spec, dataset: Dataset, defense: DefenseSpec) -> str:
    """The model cache's key for ``defense`` as ``spec`` trains it; a checkpoint's own for a user's model
    (unless the defense fine-tunes it)."""
    if defense.model is None:
        return model_key(dataset, spec.model, defense.name, defense.params, defense.train, spec.seed)
    key = checkpoint_key(spec.checkpoint(defense.model), dataset)
    if defense.fine_tune:  # the checkpoint trained further: keyed as if it were the architecture
        return model_key(dataset, key, defense.name, defense.params, defense.train, spec.seed)
    return key


def deployed_key(spec: Spec, dataset: Dataset, defense: DefenseSpec) -> str:
    """The key of the model as deployed: the trained network's, and every field of its defense, defaults
    included, since they decide its inference-time behaviour even where training shares a network
    (``Defense.trained_like``). Results about a deployed model are stored under it."""
    plugin = make_plugin(registry.defenses.get(defense.name), defense.params, defense.label)
    fields = asdict(plugin) if is_dataclass(plugin) else defense.params
    content = {"model": trained_model_key(spec, dataset, defense), "defense": [defense.name, fields]}
    if spec.detection is not None:  # a detector deployed at a threshold: another model, other results
        content["false_alarm"] = spec.detection.false_alarm
    return content_key(content)


def plugin_origins(spec: Spec) -> dict[str, dict[str, dict[str, Any]]]:
    """Where every plugin ``spec`` uses comes from (:meth:`advsec.registry.Registry.origin`), keyed by kind,
    then name: the report and ``--json`` say which code produced a run.

    Kinds are ``datasets``, ``models`` (the spec's, and an unrestricted attack's other listener),
    ``defenses`` and ``attacks`` (generators included, as a spec names them among the attacks)::

        {"datasets": {"digits": {"source": "built-in"}}, "models": {...}, "defenses": {...},
         "attacks": {"rand-fgsm": {"source": "file", "path": "/abs/rand_fgsm.py", "sha256": "…"}}}
    """
    listeners = []
    for attack in spec.attacks:
        cls = registry.attacks.get(attack.name)
        if cls.unrestricted:  # trains a listener model of its own architecture, "" for the spec's
            listeners.append(attack.params.get("listener", getattr(cls, "listener", "")) or spec.model)
    trained = [spec.model] if any(d.model is None for d in spec.defenses) else []
    brought = [m.architecture for m in spec.models if m.architecture in registry.models.names()]
    used = {
        "datasets": [spec.dataset],
        "models": [*trained, *brought, *listeners],
        "defenses": [d.name for d in spec.defenses if not as_given(d)],
        "attacks": [a.name for a in spec.attacks],
    }
    return {kind: {name: _origin(kind, name) for name in names} for kind, names in used.items()}


def as_given(defense: DefenseSpec) -> bool:
    """Whether ``defense`` is the user's model evaluated as it is: a ``[[models]]`` row, which the spec
    deploys under plain ``standard`` without training it (:func:`advsec.spec.spec_from_dict`)."""
    return defense.model is not None and defense.name == "standard" and not defense.fine_tune


def _origin(kind: str, name: str) -> dict[str, Any]:
    plugins = registry.REGISTRIES[kind]
    return plugins.origin(name) if name in plugins.names() else {"source": "in memory"}


class Runtime:
    """What a run of ``spec`` needs, whatever the protocol: its dataset (loaded once), each defense's
    trained model (trained or loaded once, and described in the store), seeds and metadata.

    Without a ``store`` (a worker of a distributed executor) it records nothing: the driver does.
    """

    def __init__(
        self,
        spec: Spec,
        *,
        device: torch.device,
        progress: Progress,
        store: Store | None = None,
        dataset: Dataset | None = None,
        in_memory: dict[str, nn.Module] | None = None,
    ) -> None:
        self.spec, self.device, self.progress, self.store = spec, device, progress, store
        if dataset is not None:  # tensors handed over in memory (advsec.evaluate) rather than a plugin's
            self.__dict__["dataset"] = dataset
        self.in_memory = in_memory or {}  # [[models]] labels -> modules handed over in memory
        self._models: dict[str, TrainedModel] = {}

    @cached_property
    def dataset(self) -> Dataset:
        dataset = load_dataset(self.spec.dataset, self.spec.dataset_params)
        for warning in dataset.warnings:  # an assumed class order, said where the mapping shows
            self.progress.warn(warning)
        if not dataset.warnings and dataset.class_order != Dataset.class_order:
            numbered = ", ".join(f"{i} {name}" for i, name in enumerate(dataset.classes))
            self.progress.log(f"classes: {numbered} ({dataset.class_order})")
        return dataset

    def trained_key(self, defense: DefenseSpec) -> str:
        return trained_model_key(self.spec, self.dataset, defense)

    def deployed_key(self, defense: DefenseSpec) -> str:
        return deployed_key(self.spec, self.dataset, defense)

    def seed(self, key: str) -> int:
        """The seed of the piece of work keyed ``key``: a function of its content and the run's seed."""
        return key_seed(key, self.spec.seed)

    def trained(self, defense: DefenseSpec) -> TrainedModel:
        """``defense``'s trained model, trained (or loaded from the cache) on first use."""
        if defense.label not in self._models:
            if defense.model is not None:
                trained = self._checkpoint(defense)
                source = "checkpoint" if not defense.fine_tune else _source(trained)
            else:
                trained = load_or_train(
                    self.dataset,
                    self.spec.model,
                    defense.name,
                    defense.params,
                    defense.train,
                    self.spec.seed,
                    device=self.device,
                    progress=self.progress,
                    label=defense.label,
                )
                source = _source(trained)
            if self.spec.detection is not None:
                trained = deployed_detector(trained, self.dataset, self.spec.detection.false_alarm)
                source += f", flags fakes above {trained.network.threshold:.4g}"
            self.progress.log(f"model for {defense.label}: {source} ({trained.key})")
            warnings = self._admit(defense, trained)
            if self.store is not None:
                _record_model(self.store, self.spec, defense, trained, warnings)
            self._models[defense.label] = trained
        return self._models[defense.label]

    def _checkpoint(self, defense: DefenseSpec) -> TrainedModel:
        """The user's model ``defense.model`` as deployed under ``defense``: loaded, and trained further
        (or loaded from the cache) when the defense fine-tunes it."""
        assert defense.model is not None
        entry = self.spec.checkpoint(defense.model)
        plugin = make_plugin(registry.defenses.get(defense.name), defense.params, defense.label)
        network = load_user_model(entry, self.dataset, self.device, self.in_memory.get(entry.label))
        if defense.fine_tune:
            network.requires_grad_(True)
            trained = fit_or_load(network, self.trained_key(defense), self.dataset, plugin, defense.train,
                                  self.spec.seed, device=self.device, progress=self.progress,
                                  label=defense.label)  # fmt: skip
            network.requires_grad_(False)
            return trained
        seconds = plugin.prepare(
            self.dataset, seed=self.spec.seed, device=self.device, progress=self.progress
        )
        key = checkpoint_key(entry, self.dataset)
        return TrainedModel(network, plugin, self.dataset.bounds, key, seconds, True, [])

    def _admit(self, defense: DefenseSpec, trained: TrainedModel) -> list[str]:
        """What ``defense``'s model must show before it is attacked (:mod:`advsec.admission`): a clean
        accuracy clearly above chance, and within reach of the one its owner states; its warnings, said."""
        entry = None if defense.model is None else self.spec.checkpoint(defense.model)
        unnormalized = entry is not None and normalization_warning(entry)
        warnings = [unnormalized] if unnormalized else []
        for warning in warnings:
            self.progress.warn(f"model {defense.label!r}: {warning}")
        if not self.spec.evaluation.clean_check:
            return warnings
        x, y = self.test_split(self.spec.evaluation.samples)
        classes, batch = self.dataset.num_classes, self.spec.evaluation.batch_size
        with seeded(self.seed(trained.key), self.device):  # a random defense draws from the global RNG
            correct = int((batched_logits(trained.model, x, batch, classes).argmax(1) == y).sum())
        bare = entry is not None and defense.label == entry.label  # the checkpoint itself, undefended
        where = f"model {defense.label!r}" if entry is not None else f"defense {defense.label!r}'s model"
        expected = entry.expect_clean if bare else None
        brought = entry is not None and not defense.fine_tune
        check_clean_accuracy(where, correct, len(y), classes, expected=expected, brought=brought)
        return warnings

    def test_subset(self, samples: int | None) -> torch.Tensor:
        """The indices of the ``samples`` test samples a protocol scores: all of them for None, else a
        stratified draw seeded by the run's seed (:mod:`advsec.data.subset`)."""
        return stratified(self.dataset.y_test, samples, draw_seed("test", self.spec.seed))

    def test_split(self, samples: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The test inputs and labels of :meth:`test_subset`, on the device."""
        chosen = self.test_subset(samples)
        return self.dataset.x_test[chosen].to(self.device), self.dataset.y_test[chosen].to(self.device)

    def meta(self) -> dict[str, Any]:
        """What a report says about a run: the spec, the data set's facts, the device and the versions."""
        spec, dataset = self.spec, self.dataset
        chosen = self.test_subset(spec.evaluation.samples)
        return {
            "name": spec.name,
            "spec": spec.text,
            "dataset": spec.dataset,
            # The samples the grid scores, hashed by content whatever loaded them: what compare matches on.
            "samples_fingerprint": fingerprint(dataset.x_test[chosen].float(), dataset.y_test[chosen].long()),
            "model": spec.model,
            "seed": spec.seed,
            "report_eps": spec.report_eps,
            "repeats": spec.evaluation.repeats,
            "bounds": list(dataset.bounds),
            "classes": list(dataset.classes),
            "class_order": dataset.class_order,
            "warnings": list(dataset.warnings),
            "evaluated": describe(dataset.y_test, chosen, dataset.classes, spec.seed),
            "domain": dataset.domain,
            "sample_rate": dataset.sample_rate,
            "input_shape": list(dataset.input_shape),
            "device": str(self.device),
            "versions": {
                "advsec": __version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "plugins": plugin_origins(spec),
            "git_commit": _git_commit(),
            "started_at": now(),
        }


def _source(trained: TrainedModel) -> str:
    return "cache" if trained.cached else f"trained in {trained.train_seconds:.1f} s"


def _record_model(
    store: Store, spec: Spec, defense: DefenseSpec, trained: TrainedModel, warnings: Sequence[str] = ()
) -> None:
    """What the report says about a defense's model: what it is (:func:`describe_model`) and ``warnings``
    about its numbers, its plugin, parameters, flags, cost and history, and a detector's false-alarm rate
    and threshold. A checkpoint nobody trained here, under a defense that fits nothing besides
    (:meth:`advsec.defense.Defense.prepare`), has no training time."""
    detection = spec.detection
    prepares = type(trained.defense).prepare is not Defense.prepare
    fitted = defense.model is None or defense.fine_tune or prepares
    store.save_model(
        defense.label,
        {
            "family": defense.family,
            "name": defense.name,
            "params": defense.params,
            "model_key": trained.key,
            "train_seconds": trained.train_seconds if fitted else None,
            "cached": trained.cached,
            "stochastic": type(trained.defense).stochastic,
            "stateful": type(trained.defense).stateful,
            "history": trained.history,
            "false_alarm": None if detection is None else detection.false_alarm,
            "threshold": None if detection is None else trained.network.threshold,
            "description": describe_model(spec, defense, trained),
            "warnings": list(warnings),
        },
    )


def describe_model(spec: Spec, defense: DefenseSpec, trained: TrainedModel) -> dict[str, Any]:
    """What ``defense``'s deployed model is, as the report, ``show`` and ``--json`` describe it.

    The user's model as given (:func:`advsec.user_models.describe_checkpoint`: ``source`` "checkpoint" or
    "in memory"), or ``source`` "trained" with the registered ``architecture`` advsec trained; then the
    ``defense`` deploying it (``{"name", "params"}``; None for a checkpoint evaluated as it is), and for a
    model advsec trained (a fine-tuned checkpoint's ``source`` is "fine-tuned") its ``training``: the
    ``[train]`` config, seed and model cache key.
    """
    if defense.model is None:
        described: dict[str, Any] = {"source": "trained", "architecture": spec.model}
    else:
        described = describe_checkpoint(spec.checkpoint(defense.model))
        described["source"] = "fine-tuned" if defense.fine_tune else described["source"]
    described["defense"] = None if as_given(defense) else {"name": defense.name, "params": defense.params}
    if defense.model is None or defense.fine_tune:
        described["training"] = {"train": asdict(defense.train), "seed": spec.seed, "cache_key": trained.key,
                                 "cached": trained.cached}  # fmt: skip
    return described


class CountingModel(nn.Module):
    """Counts the samples pushed through the model, and how many of those needed an input gradient.

    A pass that needs an input gradient takes the cheaper one of strided convolutions over few channels
    (:mod:`advsec.input_gradient`). With ``frozen``, passes under ``torch.inference_mode`` (query attacks)
    go through the model's frozen copy where it computes the same function (:mod:`advsec.frozen`); with
    ``reduced``, an attack's passes inside :meth:`searching` run in bfloat16 where that is cheaper
    (:mod:`advsec.precision`). Only a model that neither draws randomness nor keeps state may be given
    either: a confirming float32 pass must see the function the search saw."""

    def __init__(self, model: nn.Module, *, frozen: bool = False, reduced: bool = False) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.backwards = 0
        self.counting = True
        self.twin = FrozenTwin(model) if frozen else None
        self.reduced = ReducedPrecision(model) if reduced else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rebalance()  # every network pass is a moment to share the cores (advsec.threads)
        if self.counting:
            self.forwards += len(x)
            self.backwards += len(x) if torch.is_grad_enabled() and x.requires_grad else 0
        with cheap_input_gradients() if x.requires_grad and torch.is_grad_enabled() else nullcontext():
            found = None if self.reduced is None else self.reduced(x)
            if found is None and self.twin is not None:
                found = self.twin(x)
            return self.model(x) if found is None else found

    def searching(self) -> AbstractContextManager[None]:
        """Inside, the passes are an attack's search (bfloat16 where allowed and cheaper)."""
        return nullcontext() if self.reduced is None else self.reduced.searching()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Passes that are not the attack's (sanity checks) go uncounted."""
        self.counting = False
        try:
            yield
        finally:
            self.counting = True


@dataclass
class Views:
    """The deployed model as an evaluation sees it: the counted network, the deployed model, and the
    adaptive view."""

    counted: CountingModel  # counts network passes, however often a view calls it
    deployed: nn.Module
    adaptive: nn.Module  # BPDA's surrogate gradient, and an expectation over draws for a random model
    draws: int  # evaluations per scored prediction: `repeats` for a random defense, else 1
    batch: int
    classes: int

    @classmethod
    def of(cls, trained: TrainedModel, dataset: Dataset, evaluation: EvaluationConfig) -> Views:
        stochastic = type(trained.defense).stochastic
        deterministic = not (stochastic or type(trained.defense).stateful)
        reduced = deterministic and evaluation.search_precision == "auto"
        counted = CountingModel(trained.network, frozen=deterministic, reduced=reduced)
        for parameter in counted.parameters():
            parameter.requires_grad_(False)  # attacks need input gradients only; never touch the weights
        deployed = trained.defense.wrap(counted, bounds=dataset.bounds)
        adaptive = trained.defense.adaptive(deployed)
        if stochastic:
            adaptive = Expectation(adaptive, evaluation.eot_draws)
        draws = evaluation.repeats if stochastic else 1
        return cls(counted, deployed, adaptive, draws, evaluation.batch_size, dataset.num_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """One evaluation of the deployed model on ``x``."""
        return batched_logits(self.deployed, x, self.batch, self.classes)

    def redraw(self, first: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Predictions of every evaluation of ``x`` shaped (draws, n); ``first`` is the first one's."""
        more = [self.logits(x).argmax(1) for _ in range(self.draws - 1)]
        return torch.stack([first, *more])

    def predictions(self, x: torch.Tensor) -> torch.Tensor:
        return self.redraw(self.logits(x).argmax(1), x)


@torch.no_grad()
def batched_logits(model: nn.Module, x: torch.Tensor, batch: int, num_classes: int) -> torch.Tensor:
    """Logits for ``x`` in batches, refusing a model whose output does not match the dataset's classes."""
    logits = torch.cat([model(chunk) for chunk in x.split(batch)]) if len(x) else torch.empty(0, num_classes)
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise InputError(
            f"the model returns outputs shaped {tuple(logits.shape[1:])} per sample, "
            f"but the dataset has {num_classes} classes"
        )
    return logits


def first_hit(predictions: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """Per sample (column), the first of the draws (rows) where ``hit`` holds, else the first draw."""
    return predictions.gather(0, hit.int().argmax(0, keepdim=True)).squeeze(0)


def _git_commit() -> str | None:
    """The commit of the working directory's repository, if there is one: which code produced a run."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
