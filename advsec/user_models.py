"""The user's own model: an architecture plus weights from files, checked before any attack sees it.

An architecture is a registered model name, ``path/to/file.py:ClassName`` (made with the entry's
constructor keywords), or a ``torch.export`` archive (``.pt2``), which carries its own weights. Weights are
``.safetensors`` or a ``.pt``/``.pth`` state dict read with ``torch.load(weights_only=True)``: a file that
needs full unpickling is refused, never run. Declared input normalization is applied inside the model, so
attacks, budgets and bounds stay in the data's own pixel space.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

import advsec.registry as registry
from advsec.data import Dataset
from advsec.data.download import sha256_file
from advsec.errors import InputError, PluginError
from advsec.keys import content_key, seeded
from advsec.spec import INITIAL_WEIGHTS, ModelSpec

PROBE_SAMPLES = 16  # test inputs a model answers before any attack: enough to tell logits from probabilities


class Normalized(nn.Module):
    """``model((x - mean) / std)``, per channel: the model as its training saw its inputs."""

    def __init__(
        self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], channels: int
    ) -> None:
        super().__init__()
        for name, values in (("mean", mean), ("std", std)):
            if len(values) not in (1, channels):
                raise InputError(f"{name} has {len(values)} values; the inputs have {channels} channels")
        if any(s <= 0 for s in std):
            raise InputError(f"std must be positive, got {list(std)}")
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # per channel, broadcast over every axis after it
        return self.model((x - self.mean.view(shape)) / self.std.view(shape))


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of a module's class and state: what identifies a model handed over in memory."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def checkpoint_key(entry: ModelSpec, dataset: Dataset) -> str:
    """What identifies a checkpoint: what it computes. A hash of its logits on the first test inputs (on the
    CPU), so one model saved as safetensors, as a state dict or as an exported graph is one model, with the
    same keys, seeds and results, while any change to its weights or normalization shows. A model handed
    over in memory is identified by its weights' fingerprint instead."""
    # What it computes, not what it is called or expected to score.
    described = {k: v for k, v in asdict(entry).items() if k != "expect_clean"} | {"label": None}
    if entry.fingerprint is not None:
        return content_key({"model": described})
    files = [_architecture_file(entry.architecture), _weights_file(entry)]
    found = content_key(
        {"model": described, "files": [_sha256(f) for f in files if f], "data": dataset.fingerprint}
    )
    if found not in _BEHAVIOUR:  # a pure function of the files: worked out once per process
        model = load_user_model(entry, dataset, torch.device("cpu"))
        with torch.no_grad():
            logits = model(dataset.x_test[:PROBE_SAMPLES]).double().numpy()
        _BEHAVIOUR[found] = content_key({"logits": hashlib.sha256(logits.tobytes()).hexdigest()})
    return _BEHAVIOUR[found]


_BEHAVIOUR: dict[str, str] = {}  # checkpoint_key's memo: the files' key -> the behaviour's


def load_user_model(
    entry: ModelSpec, dataset: Dataset, device: torch.device, in_memory: nn.Module | None = None
) -> nn.Module:
    """The model ``entry`` describes, weights and normalization in, checked; in eval mode on ``device``.

    ``in_memory`` is the module itself, when the user handed it over rather than files (a copy is used, so
    the user's own module is left as it was).
    """
    where = f"model {entry.label!r}"
    if in_memory is not None:
        model = copy.deepcopy(in_memory)
    elif entry.architecture.endswith(".pt2"):
        if entry.weights:
            raise InputError(f"{where}: a torch.export archive carries its weights; drop weights")
        model = _exported(Path(entry.architecture), where)
    else:
        model = _constructed(entry, dataset, where)
        if entry.weights is None:
            raise InputError(
                f"{where}: {entry.architecture} is given without weights, so its random initial weights "
                "would be evaluated; give its weights (a .safetensors or .pt file), or weights = "
                f'"{INITIAL_WEIGHTS}" (--weights {INITIAL_WEIGHTS}) to evaluate initial weights on purpose'
            )
        if (weights := _weights_file(entry)) is not None:
            _load_weights(model, weights, where)
    if entry.mean is not None or entry.std is not None:
        channels = dataset.input_shape[0]
        model = Normalized(model, entry.mean or (0.0,), entry.std or (1.0,), channels)
    model = model.to(device)
    if not entry.architecture.endswith(".pt2"):  # an exported graph keeps the mode it was exported in
        model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    check_answers(model, dataset.x_test[:PROBE_SAMPLES].to(device), dataset.num_classes, where)
    return model


def check_answers(model: nn.Module, x: torch.Tensor, num_classes: int, where: str) -> None:
    """Refuse a model that cannot take the inputs, answers with the wrong number of classes, or returns
    probabilities (rows of non-negative numbers summing to 1) where attacks need logits."""
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # whatever the user's forward raises, its message is the one to show
        if "Guard failed" in str(exc):  # torch.export specialized the batch size it was exported with
            raise InputError(
                f"{where} was exported for one batch size; export it with a dynamic batch: "
                "torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))"
            ) from exc
        raise InputError(
            f"{where} cannot take inputs shaped {tuple(x.shape[1:])}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.shape != (len(x), num_classes):
        shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(
            f"{where} answers an input with {shape}; expected {num_classes} logits (the classes)"
        )
    if len(x) and (out >= 0).all() and torch.allclose(out.sum(1), torch.ones(len(x)), atol=1e-4):
        raise InputError(
            f"{where} returns probabilities (every row sums to 1); attacks need logits: drop the final "
            "softmax (a log-softmax output is fine)"
        )


def _constructed(entry: ModelSpec, dataset: Dataset, where: str) -> nn.Module:
    file, _, name = entry.architecture.rpartition(":")
    try:
        if file and file.endswith(".py"):
            module, _ = registry.import_file(Path(file), f"{where}: architecture file {file}")
            if not isinstance(cls := getattr(module, name, None), type):
                raise InputError(f"{where}: {file} defines no class {name!r}")
            with seeded(0, torch.device("cpu")):  # initial weights asked for by name: the same every run
                return cls(**entry.params)
        with seeded(0, torch.device("cpu")):
            return registry.models.get(entry.architecture)(
                dataset.input_shape, dataset.num_classes, **entry.params
            )
    except PluginError as exc:
        raise InputError(str(exc)) from exc
    except TypeError as exc:  # constructor keywords the class does not take
        raise InputError(f"{where}: cannot make {entry.architecture} with {entry.params}: {exc}") from exc


def _exported(path: Path, where: str) -> nn.Module:
    if not path.is_file():
        raise InputError(f"{where}: no such file {path}")
    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:  # a corrupt or foreign archive: its own message says what is wrong
        raise InputError(f"{where}: {path} is not a torch.export archive: {exc}") from exc


def _load_weights(model: nn.Module, path: Path, where: str) -> None:
    """Weights into ``model``, every missing, unexpected or mis-shaped key named."""
    state = _read_state_dict(path, f"{where}: weights {path}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} (model: {tuple(own[k].shape)})"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    found = {"missing": missing, "unexpected": unexpected, "mis-shaped": misshaped}
    problems = [f"{what}: {', '.join(keys)}" for what, keys in found.items() if keys]
    if problems:
        raise InputError(f"{where}: weights {path} do not fit the architecture; " + "; ".join(problems))
    model.load_state_dict(state)


def _read_state_dict(path: Path, where: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"{where}: no such file")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{where}: not a readable safetensors file: {exc}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # what weights_only refuses comes as pickle's UnpicklingError
        if type(exc).__name__ == "UnpicklingError":
            raise InputError(
                f"{where} needs full unpickling, which can run any code, so it is refused. Save a state "
                "dict instead: safetensors.torch.save_file(model.state_dict(), 'model.safetensors')"
            ) from exc
        raise InputError(f"{where}: not a readable torch file: {exc}") from exc
    for nested in ("state_dict", "model"):  # training scripts often save {"state_dict": ..., "epoch": ...}
        if isinstance(state, dict) and isinstance(state.get(nested), dict):
            state = state[nested]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{where}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def _weights_file(entry: ModelSpec) -> Path | None:
    """The file of ``entry``'s weights; None for an exported graph's own or initial weights asked by name."""
    return None if entry.weights in (None, INITIAL_WEIGHTS) else Path(entry.weights)


def describe_checkpoint(entry: ModelSpec) -> dict[str, Any]:
    """The user's model as given, for the report and ``--json``: its architecture (a registered name,
    ``path/file.py:Class`` or a ``.pt2`` archive) with its file's sha256, its weights file and sha256, its
    constructor keywords and its normalization (None: none declared); a model handed over in memory by its
    class and its weights' fingerprint (:func:`weights_fingerprint`)."""
    declared = entry.mean is not None or entry.std is not None
    normalization = {"mean": entry.mean, "std": entry.std} if declared else None
    if entry.fingerprint is not None:
        return {"source": "in memory", "architecture": entry.architecture.removeprefix("python:"),
                "weights_fingerprint": entry.fingerprint, "normalization": normalization}  # fmt: skip
    file = _architecture_file(entry.architecture)
    return {
        "source": "checkpoint",
        "architecture": entry.architecture,
        "architecture_sha256": file and _sha256(file),
        "weights": entry.weights,
        "weights_sha256": (weights := _weights_file(entry)) and _sha256(weights),
        "model_params": entry.params,
        "normalization": normalization,
    }


def _architecture_file(architecture: str) -> Path | None:
    file = architecture.rpartition(":")[0] if ".py:" in architecture else architecture
    return Path(file) if file.endswith((".py", ".pt2")) else None


def _sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
