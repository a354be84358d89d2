"""A small GAN and its inverter, fitted once per data set and shared by the plugins that use one.

``natural-gan`` (Zhao, Dua & Singh 2018) searches the latent space around a test input's code for a nearby
code whose image the model misclassifies; ``defense-gan`` (Samangouei, Kabkab & Chellappa 2018) classifies
the GAN image closest to each input instead of the input. Both need a generator G from a code
z ~ N(0, I) to an input and an inverter I from an input back to a code. Fitted on the training inputs
without their labels, the GAN knows nothing of the evaluated model, so it is cached (safetensors) per data
set, settings and seed: every plugin with the same settings in a run shares one fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.checkpoints import cache_dir, load_or_fit
from advsec.data import Dataset
from advsec.errors import InputError
from advsec.keys import content_key
from advsec.progress import Progress

GAN_FORMAT = 1  # part of every GAN's cache key: raised when fitting changes


class Gan(nn.Module):
    """A DCGAN generator and an inverter for images shaped (C, H, W), H and W multiples of 4, in ``bounds``.

    Both work in the unit range; :meth:`decode` and :meth:`invert` map to and from the data's bounds.
    """

    def __init__(self, shape: tuple[int, ...], bounds: tuple[float, float], latent: int, width: int) -> None:
        super().__init__()
        if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
            raise InputError(f"the GAN needs images shaped (C, H, W), H and W multiples of 4, not {shape}")
        channels, height, breadth = shape
        self.latent, self.bounds = latent, bounds
        small = (2 * width, height // 4, breadth // 4)
        self.generator = nn.Sequential(
            nn.Linear(latent, small[0] * small[1] * small[2]),
            nn.BatchNorm1d(small[0] * small[1] * small[2]),
            nn.ReLU(),
            nn.Unflatten(1, small),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )
        self.inverter = encoder(shape, width, latent)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        low, high = self.bounds
        return low + (high - low) * self.generator(z)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        return self.inverter(self.unit(x))

    def project(
        self, x: torch.Tensor, codes: torch.Tensor, steps: int, lr: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes whose images come closer to ``x``: ``steps`` Adam steps on ‖G(z) − x‖² (in the unit range)
        from ``codes``; with each one's final squared error."""
        wanted = self.unit(x.detach())
        codes = codes.detach().clone()
        with torch.enable_grad():  # callers predict under no_grad; this descent needs gradients
            codes.requires_grad_(True)
            optimizer = torch.optim.Adam([codes], lr=lr)
            for _ in range(steps):
                error = (self.generator(codes) - wanted).pow(2).flatten(1).sum(1)
                optimizer.zero_grad(set_to_none=True)
                error.sum().backward()
                optimizer.step()
        with torch.no_grad():
            codes = codes.detach()
            return codes, (self.generator(codes) - wanted).pow(2).flatten(1).sum(1)

    def unit(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.bounds
        return (x - low) / (high - low)


def encoder(shape: tuple[int, ...], width: int, out: int) -> nn.Module:
    """Two stride-2 convolutions and a linear layer: the inverter, and the discriminator (``out`` = 1)."""
    channels, height, breadth = shape
    return nn.Sequential(
        nn.Conv2d(channels, width, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(2 * width * (height // 4) * (breadth // 4), out),
    )


@dataclass
class UsesGan:
    """The GAN settings of a plugin built on the shared GAN. Plugins with equal settings share one fit.

    ``gan_epochs`` passes over the training inputs fit G against a discriminator (the non-saturating DCGAN
    loss), then ``inverter_epochs`` fit I with G fixed, on codes (‖I(G(z)) − z‖²) and on training inputs
    (‖G(I(x)) − x‖², so a code found for a real input decodes close to it).
    """

    latent: int = 32
    gan_width: int = 32
    gan_epochs: int = 5
    inverter_epochs: int = 2

    def prepare(self, dataset: Dataset, *, seed: int, device: torch.device, progress: Progress) -> float:
        """Load the shared GAN from the cache or fit it now; its fit seconds (as measured when fitted)."""
        if dataset.domain != "image":
            raise InputError(f"{type(self).__name__} needs images; {dataset.name!r} is {dataset.domain}")
        self.gan, seconds = load_or_fit_gan(self, dataset, seed, device=device, progress=progress)
        return seconds

    def fitted_gan(self) -> Gan:
        gan = getattr(self, "gan", None)
        if gan is None:
            raise RuntimeError(f"{type(self).__name__} needs its GAN: call prepare(dataset, ...) first")
        return gan


def load_or_fit_gan(
    settings: UsesGan, dataset: Dataset, seed: int, *, device: torch.device, progress: Progress
) -> tuple[Gan, float]:
    """The GAN for ``dataset`` with ``settings`` and ``seed``, from the cache or fitted now (and cached)."""
    content = {
        "format": GAN_FORMAT,
        "dataset": [dataset.name, dataset.fingerprint],
        "gan": [settings.latent, settings.gan_width, settings.gan_epochs, settings.inverter_epochs],
        "seed": seed,
    }
    gan = Gan(dataset.input_shape, dataset.bounds, settings.latent, settings.gan_width)
    path = cache_dir() / f"gan-{content_key(content)}.safetensors"
    fit = lambda: _fit(gan, dataset.x_train.to(device), settings, device, progress)  # noqa: E731
    meta, _ = load_or_fit(gan, path, fit, seed, device)
    gan.to(device).eval().requires_grad_(False)
    return gan, meta["fit_seconds"]


BATCH = 64


def _fit(gan: Gan, x: torch.Tensor, settings: UsesGan, device: torch.device, progress: Progress) -> None:
    gan.to(device).train()
    discriminator = encoder(tuple(x.shape[1:]), settings.gan_width, 1).to(device)
    adam = {"lr": 2e-4, "betas": (0.5, 0.999)}  # Radford et al.'s DCGAN settings
    g_optimizer = torch.optim.Adam(gan.generator.parameters(), **adam)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), **adam)
    i_optimizer = torch.optim.Adam(gan.inverter.parameters(), lr=1e-3)
    batches = -(-len(x) // BATCH)
    real_label, fake_label = torch.ones(BATCH, 1, device=device), torch.zeros(BATCH, 1, device=device)
    epochs = settings.gan_epochs + settings.inverter_epochs
    with progress.task("fit GAN", total=epochs * batches) as task:
        for epoch in range(epochs):
            fitting_inverter = epoch >= settings.gan_epochs
            gan.generator.train(not fitting_inverter).requires_grad_(not fitting_inverter)
            for batch in torch.randperm(len(x), device=device).split(BATCH):
                real = gan.unit(x[batch])
                z = torch.randn(len(batch), settings.latent, device=device)
                if fitting_inverter:
                    with torch.no_grad():
                        fake = gan.generator(z)
                    reconstructed = gan.generator(gan.inverter(real))
                    loss = F.mse_loss(gan.inverter(fake), z) + F.mse_loss(reconstructed, real)
                    i_optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    i_optimizer.step()
                else:
                    fake = gan.generator(z)
                    n = len(batch)
                    d_loss = F.binary_cross_entropy_with_logits(
                        discriminator(real), real_label[:n]
                    ) + F.binary_cross_entropy_with_logits(discriminator(fake.detach()), fake_label[:n])
                    d_optimizer.zero_grad(set_to_none=True)
                    d_loss.backward()
                    d_optimizer.step()
                    g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), real_label[:n])
                    g_optimizer.zero_grad(set_to_none=True)
                    g_loss.backward()
                    g_optimizer.step()
                task.advance()
