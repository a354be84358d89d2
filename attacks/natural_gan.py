"""Natural adversarial examples (Zhao, Dua & Singh 2018): search a GAN's latent space, not the pixels.

A test input is mapped to a code by the GAN's inverter; the search then draws codes in ever wider shells
around it (``candidates`` per shell, shells ``step`` wide, at most ``rounds`` of them) and stops at the first
shell where a code's image is misclassified, keeping the closest such code (their iterative stochastic
search). The model is only queried. What comes out is a new image on the GAN's range, not the input plus a
bounded perturbation, so it is unrestricted: advsec scores it apart from robust accuracy, with its ℓ2
distance from the input, and asks an independently trained listener whether it still shows the input's
class. A natural adversarial example is one the model gets wrong and the listener does not.

Aimed at a class (a spec's ``target``), a code fools the model when its image lands in that class: against
a fake detector (the ``fakes`` data set, searched in the GAN its fakes came from) aimed at ``real``, what it
finds are GAN outputs the detector passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Attack
from advsec.data import Dataset
from advsec.gan import UsesGan
from advsec.progress import Progress
from advsec.threat import ThreatModel


@dataclass
class NaturalGAN(UsesGan, Attack):
    """For each test input, the nearest code (in shells around its inverted code) that fools the model."""

    unrestricted = True
    source = "test"
    targeted = True
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

    def prepare(self, dataset: Dataset, *, seed: int, device: torch.device, progress: Progress) -> float:
        """A data set drawn partly from a GAN (``fakes``) is searched in that GAN, whatever the settings here:
        the codes its fakes came from are where fakes a detector passes are to be found. It was fitted (and
        charged) when the data set was built. Any other data set gets the shared GAN of these settings."""
        if dataset.gan is not None:
            self.gan = dataset.gan.to(device)
            return 0.0
        return super().prepare(dataset, seed=seed, device=device, progress=progress)

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
            codes, _ = self.search(model, gan.invert(x), y, target=target, generator=generator)
            return gan.decode(codes)

    @torch.no_grad()
    def search(
        self,
        model: nn.Module,
        codes: torch.Tensor,
        y: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per code, the nearest code in its shells whose image ``model`` puts in ``target`` (without one:
        in any class but ``y``), and whether one was found; the code itself where none was."""
        gan = self.fitted_gan()
        out = codes.clone()
        found_any = torch.zeros(len(codes), dtype=torch.bool, device=codes.device)
        left = torch.arange(len(codes), device=codes.device)
        for shell in range(self.rounds):
            if not len(left):
                break
            candidates = self._shell(codes[left], shell, generator)  # (left, candidates, latent)
            labels = model(gan.decode(candidates.flatten(0, 1))).argmax(1).view(len(left), self.candidates)
            fooled = labels == target[left, None] if target is not None else labels != y[left, None]
            # Radii grow with the candidate index within a shell, so the first fooling one is the nearest.
            first = fooled.int().argmax(1)
            found = fooled.any(1)
            out[left[found]] = candidates[torch.arange(len(left), device=codes.device), first][found]
            found_any[left[found]] = True
            left = left[~found]
        return out, found_any

    def _shell(self, codes: torch.Tensor, shell: int, generator: torch.Generator | None) -> torch.Tensor:
        """``candidates`` codes per code at radii in [shell, shell + 1) · ``step``, sorted by radius."""
        n, latent = codes.shape
        directions = torch.randn(n, self.candidates, latent, generator=generator).to(codes.device)
        directions /= directions.norm(dim=2, keepdim=True).clamp_min(1e-12)
        radii = (shell + torch.rand(n, self.candidates, generator=generator).sort(1).values) * self.step
        return codes[:, None] + radii.to(codes.device)[..., None] * directions
