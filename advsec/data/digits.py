"""scikit-learn's 8x8 handwritten digits: embedded, offline, the default dataset."""

from __future__ import annotations

from pathlib import Path

import torch

from advsec.data import Dataset, DatasetSource, fingerprint

TEST_EVERY = 5  # every fifth sample of each class is held out: a fixed, stratified 80/20 split


class Digits(DatasetSource):
    """1,797 8x8 greyscale digits (UCI), scaled to [0, 1]; 1,433 train / 364 test."""

    shape = (1, 8, 8)
    embedded = True

    def load(self, root: Path | None = None) -> Dataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(bunch.target, dtype=torch.int64)
        test = torch.zeros(len(y), dtype=torch.bool)
        for label in y.unique():
            members = (y == label).nonzero().squeeze(1)
            test[members[::TEST_EVERY]] = True
        return Dataset(
            name="digits",
            x_train=x[~test],
            y_train=y[~test],
            x_test=x[test],
            y_test=y[test],
            bounds=self.bounds,
            classes=tuple(str(c) for c in range(10)),
            fingerprint=fingerprint(x, y),
        )
