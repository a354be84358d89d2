"""FGSM adversarial training (Goodfellow, Shlens & Szegedy 2014): a weighted mix of clean and FGSM loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.defense import Bounds
from advsec.defenses.pgd_at import PGDAdversarialTraining


@dataclass
class FGSMAdversarialTraining(PGDAdversarialTraining):
    """``clean_weight`` · CE(x) + (1 − ``clean_weight``) · CE(FGSM(x)); the paper uses 0.5 and eps 0.25."""

    eps: float = 0.25
    steps: int = 1
    step_fraction: float | None = 1.0
    random_start: bool = False
    clean_weight: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.clean_weight <= 1:
            raise ValueError(f"clean_weight must be in [0, 1], got {self.clean_weight}")

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        generator: torch.Generator | None = None,
        progress: float = 1.0,
    ) -> torch.Tensor:
        adversarial = super().loss(model, x, y, bounds=bounds, generator=generator, progress=progress)
        return self.clean_weight * F.cross_entropy(model(x), y) + (1 - self.clean_weight) * adversarial
