"""Universal audio: one perturbation for every clip, learned on the training split, at each clip's budget.

After Moosavi-Dezfooli et al. (2017) and, for audio, Neekhara et al. (2019): a single perturbation shape
``u`` inside the unit ball of the threat model's geometry is learned by stochastic gradient ascent over
training batches; a clip ``x`` gets ``x + radius(x)·u``, so under a relative (dB, SNR) budget every clip
hears the same sound at its own allowed loudness. ``low``/``high`` confine it to a frequency band (fractions
of Nyquist), as band-noise does. It is then evaluated on test clips it never saw: a fooling rate above
random noise at the same level is what makes it a threat, since it can be played without the victim's clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advsec.attack import Loss, attack_objective
from advsec.attacks.band_noise import band_pass, check_band
from advsec.generator import Generator
from advsec.progress import Progress
from advsec.threat import ThreatModel, norm_of


class Shape(nn.Module):
    """The learned perturbation: one band-limited waveform, scaled into the unit ball of a geometry."""

    def __init__(self, input_shape: tuple[int, ...], low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.raw = nn.Parameter(torch.zeros(1, *input_shape))

    def forward(self, geometry: str) -> torch.Tensor:
        shape = band_pass(self.raw, self.low, self.high)
        return shape / norm_of(shape, geometry).clamp_min(1.0)  # inside the ball it is left as it is


@dataclass
class UniversalAudio(Generator):
    """One perturbation for all inputs, fitted on the training split; untargeted or aimed at one class."""

    targeted = True
    modalities = ("audio",)

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.02
    low: float = 0.0  # the band, as fractions of Nyquist: the whole spectrum by default
    high: float = 1.0
    loss: Loss = "cw"
    margin: float = 5.0  # a sample already this far past the boundary stops pulling on the perturbation

    def __post_init__(self) -> None:
        check_band(self.low, self.high)

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return Shape(input_shape, self.low, self.high)

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
        # Start on the ball's boundary: from deep inside it, the steps of a few epochs left some models'
        # perturbation at half the budget, fooling no more than noise of the same level did.
        nn.init.normal_(network.raw, std=1.0)
        optimizer = torch.optim.Adam(network.parameters(), lr=self.lr)
        aim = None if target is None else torch.full_like(y, target)
        batches = -(-len(x) // self.batch_size)
        with progress.task("fit universal-audio", total=self.epochs * batches) as task:
            for _ in range(self.epochs):
                for batch in torch.randperm(len(x), device=x.device).split(self.batch_size):
                    x_adv = self._apply(network, x[batch], threat)
                    value = attack_objective(
                        model(x_adv), y[batch], None if aim is None else aim[batch], self.loss
                    )
                    loss = -value.clamp(max=self.margin).mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    task.advance()

    def learned(self, threat: ThreatModel, input_shape: tuple[int, ...]) -> torch.Tensor:
        """The perturbation's shape in the unit ball: every clip hears it scaled to that clip's budget."""
        return self.fitted()(threat.geometry)[0].detach()

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
            return self._apply(self.fitted(), x, threat)

    @staticmethod
    def _apply(network: nn.Module, x: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
        return threat.project(x, x + threat.radius(x) * network(threat.geometry))
