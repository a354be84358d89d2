"""A fake detector's detection rate at a fixed false-alarm rate, before and after its caught fakes are hit.

The detector is any model trained on the ``fakes`` data set (:mod:`advsec.data.fakes`); its fake score is
the margin logit(fake) − logit(real). The threshold is the lowest that flags at most ``far`` of the real
test images (ties pass), and the detection rate is the share of fakes scored above it. The attacks then see
the detector as deployed, :class:`Thresholded` (the margin shifted by the threshold, so its argmax is the
thresholded decision), aimed at ``real`` (``target = 0``); the rate after attack is counted on the fakes
caught before it (:func:`advsec.results.detection_summaries`), so a fall is the attack's doing, not the
detector's misses.

A spec's ``[detection] false_alarm`` deploys every defense's model so (:func:`deployed_detector`), in every
protocol: the grid's clean and robust numbers are then the thresholded detector's, and the results read the
detection rate and the fakes passing before and after attack from its rows (:mod:`advsec.results`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from advsec.data import Dataset
from advsec.data.fakes import FAKE, REAL
from advsec.errors import SpecError
from advsec.train import TrainedModel


@torch.no_grad()
def fake_scores(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """logit(fake) − logit(real) per input: above the threshold, the detector flags it as fake."""
    if not len(x):
        return torch.empty(0)
    return torch.cat([(logits := model(xb))[:, FAKE] - logits[:, REAL] for xb in x.split(batch)]).cpu()


def threshold_at(real_scores: torch.Tensor, far: float) -> float:
    """The lowest threshold that flags at most ``far`` of the real scores (a score must exceed it)."""
    if not len(real_scores):
        raise ValueError("the threshold needs real images' scores")
    allowed = int(np.floor(far * len(real_scores) + 1e-9))  # false alarms the rate permits
    if allowed >= len(real_scores):
        return -float("inf")
    return float(real_scores.sort(descending=True).values[allowed])


class Thresholded(nn.Module):
    """The detector as deployed at a threshold: its fake logit lowered by it, so argmax flags a fake exactly
    when its score exceeds the threshold (ties: real)."""

    def __init__(self, detector: nn.Module, threshold: float) -> None:
        super().__init__()
        self.detector, self.threshold = detector, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.detector(x)
        shift = torch.zeros(logits.shape[1], device=logits.device, dtype=logits.dtype)
        shift[FAKE] = self.threshold  # a tie: argmax takes the first, REAL
        return logits - shift


DETECTOR_CLASSES = ("real", "fake")  # a data set a detector is trained on, classes in the order of REAL, FAKE


def check_detector_data(dataset: Dataset) -> None:
    """Refuse ``[detection]`` for a data set that is not real images against fakes."""
    if dataset.classes != DETECTOR_CLASSES:
        raise SpecError(
            f"detection.false_alarm: thresholds a fake detector, trained on classes {DETECTOR_CLASSES} "
            f"(the 'fakes' data set); dataset {dataset.name!r} has classes {dataset.classes}"
        )


def deployed_detector(trained: TrainedModel, dataset: Dataset, far: float) -> TrainedModel:
    """``trained`` deployed at the threshold that flags ``far`` of the test split's real images, as scored
    by the model behind its defense; the threshold sits on the network, so the defense still wraps it."""
    check_detector_data(dataset)
    device = next(trained.network.parameters()).device
    real = dataset.x_test[dataset.y_test == REAL].to(device)
    threshold = threshold_at(fake_scores(trained.model.eval(), real), far)
    return replace(trained, network=Thresholded(trained.network, threshold))
