"""Uniform noise in the threat's ball: the baseline that shows random perturbations are not attacks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack, WorstCase, attack_objective, fooled
from advsec.threat import ThreatModel


@dataclass
class UniformNoise(Attack):
    """Points drawn uniformly from the ball; per sample the first that fools, else the highest-loss one."""

    kind = "query"
    draws: int = 1  # one forward pass each, only for the samples no earlier draw fooled

    def __post_init__(self) -> None:
        if self.draws < 1:
            raise ValueError(f"draws: expected at least 1, got {self.draws}")

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        worst = WorstCase(x)
        with torch.no_grad():
            for _ in range(self.draws):
                active = worst.unfooled()
                if len(active) == 0:
                    break
                candidate = threat.random_start(x[active], generator)
                logits = model(candidate)
                value = attack_objective(logits, y[active], None, "ce")
                worst.update(active, candidate, value, fooled(logits, y[active], None))
        return worst.best
