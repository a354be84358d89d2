"""Natural adversarial examples (Zhao, Dua & Singh 2018): search a GAN's latent space, not the pixels.

A test input is mapped to a code by the GAN's inverter; the search then draws codes in ever wider shells
around it (``candidates`` per shell, shells ``step`` wide, at most ``rounds`` of them) and stops at the first
shell where a code's image is misclassified, keeping the closest such code (their iterative stochastic
search). The model is only queried. What comes out is a new image on the GAN's range, not the input plus a
bounded perturbation, so it is unrestricted: advsec scores it apart from robust accuracy, with its ℓ2
distance from the input, and asks an independently trained listener whether it still shows the input's
class. A natural adversarial example is one the model gets wrong and the listener does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack
from advsec.gan import UsesGan
from advsec.threat import ThreatModel


@dataclass
class NaturalGAN(UsesGan, Attack):
    """For each test input, the nearest code (in shells around its inverted code) that fools the model."""

    unrestricted = True
    source = "test"
    kind = "query"
    norms = ("l2",)
    modalities = ("image",)

    candidates: int = 64
    step: float = 0.1
    rounds: int = 30
    listener: str = ""  # the listener's model architecture; "" is the attacked one's, another seed

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.rounds < 1 or not self.step > 0:
            raise ValueError("candidates and rounds must be >= 1 and step > 0")

    def bound(self, bounds: tuple[float, float]) -> ThreatModel:
        """Unbounded: any image in the data's bounds; its ℓ2 distance from the test input is reported."""
        return ThreatModel("l2", math.inf, bounds)

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
        """The image of the nearest fooling code per input; its reconstruction G(I(x)) if none is found."""
        gan = self.fitted_gan()
        with torch.no_grad():
            codes = gan.invert(x)
            out = gan.decode(codes)
            left = torch.arange(len(x), device=x.device)
            for shell in range(self.rounds):
                if not len(left):
                    break
                candidates = self._shell(codes[left], shell, generator)  # (left, candidates, latent)
                images = gan.decode(candidates.flatten(0, 1))
                labels = model(images).argmax(1).view(len(left), self.candidates)
                fooled = labels != y[left, None]
                # Radii grow with the candidate index within a shell, so the first fooling one is the nearest.
                first = fooled.int().argmax(1)
                found = fooled.any(1)
                chosen = images.view(len(left), self.candidates, *x.shape[1:])[torch.arange(len(left)), first]
                out[left[found]] = chosen[found]
                left = left[~found]
        return out

    def _shell(self, codes: torch.Tensor, shell: int, generator: torch.Generator | None) -> torch.Tensor:
        """``candidates`` codes per code at radii in [shell, shell + 1) · ``step``, sorted by radius."""
        n, latent = codes.shape
        directions = torch.randn(n, self.candidates, latent, generator=generator).to(codes.device)
        directions /= directions.norm(dim=2, keepdim=True).clamp_min(1e-12)
        radii = (shell + torch.rand(n, self.candidates, generator=generator).sort(1).values) * self.step
        return codes[:, None] + radii.to(codes.device)[..., None] * directions
