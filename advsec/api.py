"""advsec from a notebook: a model and tensors in memory, the same worst-case evaluation as the CLI.

    import advsec
    result = advsec.evaluate(model, x_test, y_test, eps=8 / 255)
    result.robust_accuracy[8 / 255], result.robust[8 / 255]  # the rate, and each sample's verdict

The model is a plain ``nn.Module`` returning logits; its inputs live in ``bounds`` (normalization the model
expects is given as ``mean``/``std`` and applied inside it). Results go to a store in ``out`` (a temporary
folder by default), so the same run can be reopened with ``advsec show`` or ``advsec report``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from advsec.data import Dataset, fingerprint
from advsec.data.load import check_dataset
from advsec.harness import run_grid
from advsec.progress import Progress
from advsec.results import RunResults
from advsec.runtime import Runtime
from advsec.spec import (
    DefenseSpec,
    EvaluationConfig,
    ModelSpec,
    Spec,
    ThreatSpec,
    TrainConfig,
    attack_specs,
    to_toml,
)
from advsec.store import Store, claimed
from advsec.threat import check_inputs
from advsec.user_models import weights_fingerprint

LABEL = "model"


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` found: rates per budget, each sample's verdict, and the whole run's results."""

    clean_accuracy: float
    robust_accuracy: dict[float, float]  # per budget: correct clean and under every attack
    robust: dict[float, np.ndarray]  # per budget: each sample's worst-case verdict (bool)
    clean: np.ndarray  # each sample: correct on the clean input
    results: RunResults
    out: Path  # the run's folder: its results store, and the report when asked for
    report: Path | None


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | Sequence[float],
    norm: str = "linf",
    attacks: str | Sequence[str] = "worst-case",
    bounds: tuple[float, float] = (0.0, 1.0),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 512,
    seed: int = 0,
    out: str | Path | None = None,
    report: bool = False,
    device: str | torch.device | None = None,
    progress: bool = False,
    search_precision: Literal["auto", "float32"] = "auto",
    expect_clean: float | None = None,
    clean_check: bool = True,
) -> Evaluation:
    """Attack ``model`` on ``(x, y)`` at each budget in ``eps`` and score every sample by its worst case.

    ``attacks`` is a preset (``"worst-case"``: APGD-CE, APGD-T, Square) or attack names, run as a cascade.
    ``mean``/``std`` are the normalization the model expects (applied inside it, so budgets stay in the
    inputs' own space); without them the model sees ``x`` as it is, and a warning says so. The model's clean
    accuracy is checked first: not clearly above chance, or outside ``expect_clean`` (the accuracy you
    measured), the evaluation stops with the likely causes, unless ``clean_check=False``.
    ``search_precision`` is ``[evaluation]``'s: "float32" keeps the attacks' searches out of bfloat16.
    """
    budgets = (eps,) if isinstance(eps, int | float) else tuple(eps)
    names = [attacks] if isinstance(attacks, str) else list(attacks)
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dataset = _dataset(model, x, y, bounds, chosen)
    entry = ModelSpec(LABEL, f"python:{type(model).__qualname__}", mean=_floats(mean), std=_floats(std),
                      fingerprint=weights_fingerprint(model), expect_clean=expect_clean)  # fmt: skip
    tables = [{"preset": n} if n == "worst-case" else {"name": n} for n in names]
    spec = Spec(
        name="evaluate",
        dataset=dataset.name,
        model="",
        seed=seed,
        defenses=(DefenseSpec("standard", LABEL, {}, TrainConfig(), family=LABEL, model=LABEL),),
        threats=(ThreatSpec(norm, budgets),),
        attacks=attack_specs(tables),
        evaluation=EvaluationConfig(
            batch_size=batch_size, search_precision=search_precision, clean_check=clean_check
        ),
        models=(entry,),
        text=to_toml({"threats": [{"norm": norm, "eps": list(budgets)}], "attacks": tables}),
    )
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="advsec-"))
    store = Store(folder / "results.sqlite")
    with claimed(store.path), Progress(quiet=not progress) as shown:
        runtime = Runtime(spec, device=chosen, progress=shown, store=store, dataset=dataset,
                          in_memory={LABEL: model})  # fmt: skip
        run_grid(runtime)
    written = None
    if report:
        from advsec.report import build_report

        written = build_report(store, folder)
    return _evaluation(store, folder, written)


def _dataset(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, bounds: tuple[float, float], device: torch.device
) -> Dataset:
    """The tensors as a test split, with as many classes as the model answers with."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be torch tensors (torch.from_numpy converts numpy arrays)")
    x, y = x.detach().float().cpu(), y.detach().long().cpu()
    check_inputs(x, bounds, "x")
    with torch.no_grad():
        classes = int(model.to(device)(x[:1].to(device)).shape[-1]) if len(x) else int(y.max()) + 1
    dataset = Dataset(
        name="tensors",
        x_train=x[:0],
        y_train=y[:0],
        x_test=x,
        y_test=y,
        bounds=bounds,
        classes=tuple(str(c) for c in range(classes)),
        fingerprint=fingerprint(x, y),
    )
    check_dataset(dataset)
    return dataset


def _floats(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


def _evaluation(store: Store, folder: Path, report: Path | None) -> Evaluation:
    results = RunResults.read(store)
    clean_cell, *attacked = results.cells
    robust = {}
    for cell in attacked:
        rows = store.samples(cell.cell)
        robust[cell.eps] = np.array([bool(r["robust"]) for r in rows])
    clean = np.array([r["clean_pred"] == r["label"] for r in store.samples(clean_cell.cell)])
    return Evaluation(
        clean_accuracy=clean_cell.clean_accuracy,
        robust_accuracy={cell.eps: cell.robust_accuracy for cell in attacked},
        robust=robust,
        clean=clean,
        results=results,
        out=folder,
        report=report,
    )
