"""Random resizing and padding (Xie et al. 2018): a random, differentiable input transform."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from advsec.defense import Bounds, InputTransform
from advsec.errors import InputError
from advsec.threat import random_tensor


@dataclass
class RandomResizePad(InputTransform):
    """Shrinks each image by a random factor in [min_scale, 1] and pads it back at a random offset.

    Xie et al. enlarge and pad for a size-agnostic network; models here take a fixed input size, so the
    image shrinks instead. Every call draws new factors and offsets; the padding is the lower bound.
    """

    stochastic = True
    modalities = ("image",)

    min_scale: float = 0.8

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")

    def transform(
        self, x: torch.Tensor, bounds: Bounds, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if x.dim() != 4:
            raise InputError(f"random-resize-pad needs images shaped (N, C, H, W), got {tuple(x.shape)}")
        n = len(x)
        draws = random_tensor((n, 3), x, generator)
        scale = self.min_scale + (1 - self.min_scale) * draws[:, 0]
        center = (1 - scale)[:, None] * (2 * draws[:, 1:] - 1)  # the shrunk image stays inside
        # Output coordinates u map to input coordinates (u - center) / scale; outside the image is padding.
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
        theta[:, :, 2] = -center / scale[:, None]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        low = bounds[0]
        return low + F.grid_sample(x - low, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
