"""(De)randomized smoothing by column ablation (Levine & Feizi 2020, "(De)Randomized Smoothing for
Certifiable Defense against Patch Attacks"): a certified defense against adversarial patches.

The base classifier f sees one band of ``band`` adjacent columns of the image (wrapping around the right
edge) and nothing else; every other pixel is ablated. It is trained on a random band per image. The
smoothed classifier votes: each of the W band positions of a W-column image casts f's class, and the class
with the most votes wins (ties to the lower class index). A patch m columns wide overlaps at most
Δ = m + band − 1 bands, so it moves at most Δ votes away from a class and Δ towards another: where the top
count beats the runner-up by more than 2Δ, no patch of that width changes the prediction (Theorem 1). The
vote is exact, not estimated, so the certificate holds with certainty.

An ablated pixel is set to ``low − (high − low)`` of the input bounds, a value no real input takes: the
network tells an ablated pixel from a black one without the extra input channel of the paper's encoding,
which the built-in architectures do not have.

With ``threshold`` θ (the paper's counting), a band votes for every class whose softmax exceeds θ, and for
none where no class does: on MNIST a third of the bands see only the blank margin, and under the plain
argmax they all cast the same vote, for whatever class the base classifier guesses for nothing, a block
that outvotes the informative bands and leaves the argmax's clean accuracy far below the thresholded
count's. Each band still moves at most one vote away from a class and one towards another, so
the certificate is the same.

The hard vote has no input gradient, so the defense declares itself non-differentiable: the adaptive
attacks (``+BPDA`` in their labels) climb the soft vote instead, the mean of f's softmax over all bands,
whose argmax follows the hard vote wherever the bands are confident.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.defense import Bounds, Defense
from advsec.errors import ParameterError
from advsec.threat import ThreatModel, as_plane, random_tensor


@dataclass
class DerandomizedSmoothing(Defense):
    """Levine & Feizi's column smoothing: a majority vote of a classifier of single column bands, certified
    against a patch where the top count beats the runner-up by more than 2·(patch width + band − 1)."""

    differentiable = False  # the vote's counts are piecewise constant; the soft vote stands in for them
    modalities = ("image",)

    band: int = 2  # columns each vote sees
    threshold: float | None = None  # a band votes for the classes its softmax puts above it; None: argmax

    def __post_init__(self) -> None:
        if isinstance(self.band, bool) or not isinstance(self.band, int) or self.band < 1:
            raise ParameterError("band", f"expected a whole number of columns >= 1, got {self.band!r}")
        if self.threshold is not None and not 0 <= self.threshold < 1:  # also rejects NaN
            raise ParameterError(
                "threshold", f"expected a softmax level, >= 0 and < 1, or none, got {self.threshold!r}"
            )

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        generator: torch.Generator | None = None,
        progress: float = 1.0,
    ) -> torch.Tensor:
        """Cross-entropy of the base classifier on one random band per image, as it will vote."""
        width = as_plane(x).shape[3]
        starts = (random_tensor((len(x),), x, generator) * width).long().clamp_max(width - 1)
        return F.cross_entropy(model(ablate(x, starts, self.band, bounds)), y)

    def network_passes_per_query(self, input_shape: tuple[int, ...]) -> int:
        return input_shape[-1]  # a vote classifies one band per column (as ColumnVote sees any input's width)

    def wrap(self, model: nn.Module, *, bounds: Bounds) -> nn.Module:
        return ColumnVote(model, self.band, bounds, threshold=self.threshold)

    def adaptive(self, deployed: nn.Module) -> nn.Module:
        if not isinstance(deployed, ColumnVote):
            return deployed
        return ColumnVote(deployed.model, self.band, deployed.bounds, soft=True)

    def certified(self, deployed: nn.Module, x: torch.Tensor, threat: ThreatModel) -> torch.Tensor | None:
        """Per sample of ``x``, whether no patch of ``threat`` can change the vote; None for another norm."""
        if threat.norm != "patch" or not isinstance(deployed, ColumnVote):
            return None
        _, width = threat.window_shape(x)
        overlapped = width + self.band - 1  # bands a patch this wide can reach
        with torch.no_grad():
            top = deployed(x).topk(2, dim=1).values
        return top[:, 0] - top[:, 1] > 2 * overlapped


def ablate(x: torch.Tensor, starts: torch.Tensor, band: int, bounds: Bounds) -> torch.Tensor:
    """``x`` with every column outside each sample's band (``band`` columns from ``starts``, wrapping
    around) set to the ablation value ``low − (high − low)``, which no input within the bounds takes."""
    plane = as_plane(x)
    width = plane.shape[3]
    columns = torch.arange(width, device=x.device)
    kept = (columns - starts.to(x.device)[:, None]) % width < band  # (N, W)
    low, high = bounds
    ablated = torch.where(kept[:, None, None, :], plane, torch.full_like(plane, low - (high - low)))
    return ablated.reshape(x.shape)


class ColumnVote(nn.Module):
    """The smoothed classifier: the base classifier on every band position of each input, one pass.

    Its output is the vote count per class (so argmax breaks ties to the lower class): each band's argmax,
    or with ``threshold`` every class whose softmax exceeds it; with ``soft``, the log of the mean softmax
    over the bands, the differentiable view an adaptive attacker climbs.
    """

    def __init__(
        self,
        model: nn.Module,
        band: int,
        bounds: Bounds,
        *,
        soft: bool = False,
        threshold: float | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.band = band
        self.bounds = bounds
        self.soft = soft
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = as_plane(x).shape[3]
        starts = torch.arange(width, device=x.device).repeat(len(x))  # sample-major: N blocks of W bands
        copies = x.repeat_interleave(width, dim=0)
        logits = self.model(ablate(copies, starts, self.band, self.bounds))
        logits = logits.view(len(x), width, -1)
        if self.soft:
            return F.softmax(logits, dim=2).mean(1).clamp_min(1e-12).log()
        if self.threshold is None:
            votes = F.one_hot(logits.argmax(2), logits.shape[2])
        else:
            votes = F.softmax(logits, dim=2) > self.threshold
        counts = votes.sum(1).to(x.dtype)
        # On the graph with its true gradient, zero, as rounding is: what differentiates the deployed
        # model (a naive attack, the privacy audit) finds nothing to follow rather than no graph at all.
        return counts + 0 * logits.sum(1)
