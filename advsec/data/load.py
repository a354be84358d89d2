"""Loading a dataset plugin by name, checked, below the runtime so that a dataset composed of another one
(``fakes`` of its real data set) loads its part the way every run loads a dataset."""

from __future__ import annotations

from typing import Any

import advsec.registry as registry
from advsec.data import Dataset
from advsec.errors import InputError
from advsec.spec import make_plugin
from advsec.threat import check_inputs


def load_dataset(name: str, params: dict[str, Any] | None = None) -> Dataset:
    """The dataset plugin ``name`` made with ``params`` (a spec's ``[dataset]`` table), loaded, checked."""
    dataset = make_plugin(registry.datasets.get(name), params or {}, "dataset").load()
    check_dataset(dataset)
    return dataset


def check_dataset(dataset: Dataset) -> None:
    """Refuse a dataset any attack would trip over later: mismatched shapes, labels outside the classes,
    NaN/Inf or inputs outside its own bounds; each with a message saying which split and what is wrong."""
    for split, x, y in (
        ("train", dataset.x_train, dataset.y_train),
        ("test", dataset.x_test, dataset.y_test),
    ):
        what = f"dataset {dataset.name!r} {split}"
        if x.dim() < 2 or tuple(x.shape[1:]) != dataset.input_shape or not x.is_floating_point():
            raise InputError(
                f"{what} inputs are {x.dtype} shaped {tuple(x.shape)}; expected floats shaped "
                f"(N, {', '.join(map(str, dataset.input_shape))}) like the training inputs"
            )
        if y.shape != (len(x),) or y.is_floating_point():
            raise InputError(
                f"{what} labels are {y.dtype} shaped {tuple(y.shape)}; expected ({len(x)},) integers"
            )
        if len(y) and (y.min() < 0 or y.max() >= dataset.num_classes):
            raise InputError(
                f"{what} labels run from {int(y.min())} to {int(y.max())}, "
                f"but the dataset has {dataset.num_classes} classes"
            )
        check_inputs(x, dataset.bounds, f"{what} inputs")
