"""Defense-GAN (Samangouei, Kabkab & Chellappa 2018): classify the GAN image closest to the input.

Before the classifier sees an input x, gradient descent on a latent code z (``steps`` Adam steps from each
start) minimizes ‖G(z) − x‖², and the classifier gets G(z) for the best start: perturbations off the GAN's
range are meant to be projected away. The paper starts from 10 random codes and takes 200 steps; here the
starts are the inverter's code for x and ``restarts`` random codes, which on MNIST keeps far more of the
standard classifier's answers right after 25 steps than random starts alone at the same cost. The
GAN is the one ``natural-gan`` uses (:mod:`advsec.gan`, same settings and seed, one fit). The classifier
trains on clean inputs, as in the paper (projecting every training batch would cost a descent per batch),
so it is the standard model of the same run, shared through the cache.

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
    trained_like = "standard"  # the classifier trains on clean inputs; the projection is added deployed

    steps: int = 25
    restarts: int = 1  # random starts besides the inverter's code
    lr: float = 0.1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.restarts < 0 or not self.lr > 0:
            raise ValueError("steps must be >= 1, restarts >= 0 and lr > 0")

    loss = Defense.loss

    def network_passes_per_query(self, input_shape: tuple[int, ...]) -> int:
        return 1 + (1 + self.restarts) * (2 * self.steps + 2)  # the inverter, G's forward and backward

    def transform(
        self, x: torch.Tensor, bounds: Bounds, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        gan = self.fitted_gan()
        n, starts = len(x), 1 + self.restarts
        with torch.no_grad():
            random = torch.randn(self.restarts * n, gan.latent, generator=generator).to(x.device)
            codes = torch.cat([gan.invert(x), random])
        codes, error = gan.project(x.repeat(starts, *[1] * (x.dim() - 1)), codes, self.steps, self.lr)
        with torch.no_grad():
            best = error.view(starts, n).argmin(0)
            projected = gan.decode(codes.view(starts, n, -1)[best, torch.arange(n, device=x.device)])
        return projected + 0 * x  # on the input's graph, with the zero gradient a naive attacker sees
