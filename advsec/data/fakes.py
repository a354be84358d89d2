"""Real images against the shared GAN's fakes: the two-class data set a fake detector is trained on.

Each split holds the real data set's images of that split (class ``real``) and as many images the shared
GAN (:mod:`advsec.gan`, fitted on the real training images without labels, cached, fitted on first use)
decodes from seeded random codes (class ``fake``), shuffled together by the same seed. A detector is then
any advsec model trained on it, cached like any other, and every attack of the grid applies to it:
pushing fakes across is a targeted attack with ``target = 0`` (the ``real`` class). The fingerprint names
the real data set's, the GAN's settings and the seed, so a cached detector is never reused with other fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from advsec.data import Dataset, DatasetSource
from advsec.keys import content_key

if TYPE_CHECKING:
    from advsec.gan import Gan

REAL, FAKE = 0, 1  # class indices: an attack passing fakes off as real aims at REAL
FAKES_FORMAT = 1  # part of the fingerprint: raised when the way fakes are drawn changes


@dataclass(frozen=True)
class Fakes(DatasetSource):
    """The ``real`` data set's images (class 0) and as many GAN samples (class 1) per split."""

    classes: ClassVar[tuple[str, ...]] = ("real", "fake")

    real: str = "digits"
    seed: int = 0  # the GAN's fit, the fakes' codes and the shuffle
    latent: int = 32
    gan_width: int = 32
    gan_epochs: int = 5
    inverter_epochs: int = 2  # unused by the fakes, but part of the shared GAN's key: natural-gan's GAN

    def __post_init__(self) -> None:
        if self.real == "fakes":
            raise ValueError("real must name a data set of real images, not 'fakes'")
        if self.latent < 1 or self.gan_width < 1 or self.gan_epochs < 1 or self.inverter_epochs < 0:
            raise ValueError("latent, gan_width and gan_epochs must be >= 1, inverter_epochs >= 0")

    def load(self, root: Path | None = None) -> Dataset:
        real = self.real_dataset()
        gan = self.gan(real)
        shuffle = torch.Generator().manual_seed(self.seed)
        splits = []
        for offset, x in enumerate((real.x_train, real.x_test)):
            codes = torch.randn(
                len(x), gan.latent, generator=torch.Generator().manual_seed(self.seed + 1 + offset)
            )
            with torch.no_grad():
                fakes = torch.cat([gan.decode(batch) for batch in codes.split(1024)])
            inputs = torch.cat([x, fakes.clamp(*real.bounds)])
            labels = torch.cat([torch.full((len(x),), REAL), torch.full((len(fakes),), FAKE)])
            order = torch.randperm(len(inputs), generator=shuffle)
            splits += [inputs[order].contiguous(), labels[order].contiguous()]
        x_train, y_train, x_test, y_test = splits
        return Dataset(
            name=f"fakes-{real.name}",
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            bounds=real.bounds,
            classes=self.classes,
            domain=real.domain,
            fingerprint=content_key(
                {"format": FAKES_FORMAT, "real": [real.name, real.fingerprint], "gan": self.gan_key()}
            )[:16],
            gan=gan,
        )

    def real_dataset(self) -> Dataset:
        from advsec.data.load import load_dataset  # the real plugin, checked as any data set is

        return load_dataset(self.real)

    def gan_key(self) -> list[int]:
        return [self.latent, self.gan_width, self.gan_epochs, self.inverter_epochs, self.seed]

    def gan(self, real: Dataset) -> Gan:
        """The shared GAN of ``real`` with these settings and seed: from the cache, or fitted on the CPU."""
        from advsec.gan import UsesGan
        from advsec.progress import Progress

        settings = UsesGan(self.latent, self.gan_width, self.gan_epochs, self.inverter_epochs)
        settings.prepare(real, seed=self.seed, device=torch.device("cpu"), progress=Progress(quiet=True))
        return settings.fitted_gan()
