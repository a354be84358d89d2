"""FGSM adversarial training (Goodfellow, Shlens & Szegedy 2014): a weighted mix of clean and FGSM loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.defenses.pgd_at import PGDAdversarialTraining
from advsec.threat import ThreatModel


@dataclass
class FGSMAdversarialTraining(PGDAdversarialTraining):
    """clean_weight · CE(x) + (1 − clean_weight) · CE(FGSM(x)); the paper uses 0.5 and eps 0.25."""

    eps: float = 0.25
    steps: int = 1
    step_fraction: float | None = 1.0
    random_start: bool = False
    clean_weight: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.clean_weight <= 1:
            raise ValueError(f"clean_weight must be in [0, 1], got {self.clean_weight}")

    def adversarial_loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        adversarial = super().adversarial_loss(model, x, y, threat, generator)
        return self.clean_weight * F.cross_entropy(model(x), y) + (1 - self.clean_weight) * adversarial
