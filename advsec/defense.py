"""Defenses: the plugin contract. A defense changes how a model is trained, how it predicts, or both.

A defense plugin is a dataclass subclass of :class:`Defense`; its fields are the parameters a spec may set.
The core training loop (:mod:`advsec.train`) asks it for the loss of each batch; the harness asks it to
``wrap`` the trained model for inference-time behaviour. The ``stochastic`` and ``stateful`` flags tell
the harness when a single evaluation cannot be trusted.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class Defense:
    """Base class of defense plugins. The default is standard training and an unchanged model."""

    stochastic: ClassVar[bool] = False  # predictions vary from call to call
    stateful: ClassVar[bool] = False  # predictions depend on the queries seen so far
    modalities: ClassVar[tuple[str, ...]] = ("image", "audio")

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: tuple[float, float],
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The training loss of one batch (mean over the batch); standard cross-entropy by default."""
        return F.cross_entropy(model(x), y)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as deployed (inference-time defenses replace or wrap it); unchanged by default."""
        return model
