"""The universal adversarial patch (Brown, Mané, Roy, Abadi & Gilmer 2017): one patch for every image.

The patch is fitted once on the training split by expectation over transformations (EOT): each training
image gets it pasted in a random window of the threat's size, rotated by up to ``rotation`` degrees, scaled
to between ``min_scale`` and 1 of the window, and brightened by up to ±``brightness`` (as a fraction of its
values above the lower bound), all differentiable (``affine_grid``/``grid_sample``); Adam then pushes the
patch out of every image's class (untargeted) or into one class, on the CW margin capped at ``margin``.
Whatever a transformation moves out of the window is cropped, so every pasted patch stays inside its window.

On the test inputs the patch is pasted under fresh random transformations drawn from the run's generator
(``transform = true``) or as fitted, unrotated at full size in the middle of the image (``transform =
false``): the first is the physical threat (a sticker wherever it lands), the second its best case. With
``steps = 0`` it is the random patch it starts from, the baseline a fitted patch must beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import Loss, attack_objective
from advsec.generator import Generator
from advsec.progress import Progress
from advsec.threat import ThreatModel, random_tensor


class Patch(nn.Module):
    """The patch's pixels, stored image-sized (the threat's budget, hence its size, is known only at fit
    time): the top-left window of the threat's shape is the patch."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.pixels = nn.Parameter(torch.zeros(input_shape))

    def forward(self, height: int, width: int) -> torch.Tensor:
        return self.pixels[:, :height, :width]


@dataclass
class UniversalPatch(Generator):
    """One patch for all images, fitted with EOT over placement, scale, rotation and brightness."""

    targeted = True
    norms = ("patch",)
    modalities = ("image",)
    steps: int = 500  # Adam steps on training batches; 0 leaves the random patch it starts from
    batch_size: int = 128
    lr: float = 0.05  # as a fraction of the bounds' span
    rotation: float = 22.5  # degrees, either way
    min_scale: float = 0.7  # of the window's size
    brightness: float = 0.2
    transform: bool = True  # at test time: random transformations, or the patch as fitted in the middle
    loss: Loss = "cw"
    margin: float = 5.0

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return Patch(input_shape)

    def fit(
        self,
        network: nn.Module,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        target: int | None,
        progress: Progress,
    ) -> None:
        low, high = threat.bounds
        with torch.no_grad():
            network.pixels.copy_(low + (high - low) * torch.rand_like(network.pixels))
        optimizer = torch.optim.Adam(network.parameters(), lr=self.lr * (high - low))
        with progress.task("fit universal-patch", total=self.steps) as task:
            for _ in range(self.steps):
                batch = torch.randint(0, len(x), (self.batch_size,), device=x.device)
                aim = None if target is None else torch.full_like(y[batch], target)
                x_adv = self.paste(network, x[batch], threat, transform=True)
                value = attack_objective(model(x_adv), y[batch], aim, self.loss)
                optimizer.zero_grad(set_to_none=True)
                (-value.clamp(max=self.margin).mean()).backward()
                optimizer.step()
                with torch.no_grad():
                    network.pixels.clamp_(low, high)
                task.advance()

    def learned(self, threat: ThreatModel, input_shape: tuple[int, ...]) -> torch.Tensor:
        """The patch itself, at the threat's window size (only its shape is read off a meta tensor)."""
        height, width = threat.window_shape(torch.empty((1, *input_shape), device="meta"))
        return self.fitted()(height, width).detach()

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
        with torch.no_grad():
            return self.paste(self.fitted(), x, threat, transform=self.transform, generator=generator)

    def paste(
        self,
        network: nn.Module,
        x: torch.Tensor,
        threat: ThreatModel,
        *,
        transform: bool,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``x`` with the patch pasted in one window each: randomly placed and transformed, or as fitted in
        the middle. Differentiable in the patch."""
        (count, channels, rows, cols), (height, width) = x.shape, threat.window_shape(x)
        if height == 0 or width == 0:
            return x.clone()
        if transform:
            draws = random_tensor((count, 3), x, generator)
            angle = math.radians(self.rotation) * (2 * draws[:, 0] - 1)
            scale = self.min_scale + (1 - self.min_scale) * draws[:, 1]
            bright = 1 + self.brightness * (2 * draws[:, 2] - 1)
            corners = threat.random_corners(x, generator)
        else:
            angle, scale, bright = x.new_zeros(count), x.new_ones(count), x.new_ones(count)
            middle = torch.tensor([(rows - height) // 2, (cols - width) // 2], device=x.device)
            corners = middle.expand(count, 2)
        # Where each pixel of the window reads from in the patch: rotated, and scaled about its centre.
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, 0 * cos], 1), torch.stack([sin, cos, 0 * cos], 1)], 1)
        grid = F.affine_grid(theta, [count, channels, height, width], align_corners=False)
        low, high = threat.bounds
        above = (network(height, width) - low).expand(count, -1, -1, -1)
        content = F.grid_sample(above, grid, align_corners=False) * bright.view(-1, 1, 1, 1)
        alpha = F.grid_sample(x.new_ones(count, 1, height, width), grid, align_corners=False)
        # Into the image: the window's pixels go where each sample's corner says (zeros elsewhere).
        at = (
            torch.arange(count, device=x.device)[:, None, None],
            (corners[:, :1] + torch.arange(height, device=x.device))[:, :, None],
            (corners[:, 1:] + torch.arange(width, device=x.device))[:, None, :],
        )
        placed = x.new_zeros(count, rows, cols, channels).index_put(at, content.permute(0, 2, 3, 1))
        cover = x.new_zeros(count, rows, cols).index_put(at, alpha[:, 0])[:, None]
        pasted = (x * (1 - cover) + low * cover + placed.permute(0, 3, 1, 2)).clamp(low, high)
        return threat.project(x, pasted, region=threat.window(x, corners))
