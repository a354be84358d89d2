"""Defense-GAN (Samangouei, Kabkab & Chellappa 2018): classify the GAN image closest to the input.

Before the classifier sees an input x, gradient descent on a latent code z (``steps`` Adam steps from each
of ``restarts`` random codes) minimizes ‖G(z) − x‖², and the classifier gets G(z) for the best restart:
perturbations off the GAN's range are meant to be projected away. The GAN is the one ``natural-gan``
uses (:mod:`advsec.gan`, same settings and seed, one fit). The classifier trains on clean inputs, as in
the paper; projecting every training batch would cost ``steps × restarts`` generator passes per batch.

The projection is an optimization, and its output is not differentiated with respect to the input (its
gradient would run back through every descent step): a naive gradient attacker gets nothing, and the
defense looks robust. Athalye, Carlini & Wagner (2018) broke it with BPDA, treating the projection as the
identity on the way back; the random restarts make it random, so the harness also averages over draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advsec.defense import Bounds, Defense, InputTransform
from advsec.gan import UsesGan


@dataclass
class DefenseGAN(UsesGan, InputTransform):
    """Replaces each input by its projection onto the GAN's range, then classifies that."""

    stochastic = True
    differentiable = False
    modalities = ("image",)

    steps: int = 25  # the paper: 200 steps from 10 restarts, out of reach of a CPU's attack budget
    restarts: int = 2
    lr: float = 0.2

    def __post_init__(self) -> None:
        if self.steps < 1 or self.restarts < 1 or not self.lr > 0:
            raise ValueError("steps and restarts must be >= 1 and lr > 0")

    loss = Defense.loss

    def transform(
        self, x: torch.Tensor, bounds: Bounds, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        gan = self.fitted_gan()
        n = len(x)
        starts = torch.randn(self.restarts * n, gan.latent, generator=generator).to(x.device)
        codes, error = gan.project(x.repeat(self.restarts, *[1] * (x.dim() - 1)), starts, self.steps, self.lr)
        with torch.no_grad():
            best = error.view(self.restarts, n).argmin(0)
            projected = gan.decode(codes.view(self.restarts, n, -1)[best, torch.arange(n, device=x.device)])
        return projected + 0 * x  # on the input's graph, with the zero gradient a naive attacker sees
