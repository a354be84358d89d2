"""The threat model: the one place that says how far an attacker may move an input.

Every attack steps through :meth:`ThreatModel.ascend`, starts from :meth:`ThreatModel.random_start` and ends
in :meth:`ThreatModel.project`, so the budget and the input bounds (the dataset's, never an assumed [0, 1])
are enforced once, here. The budget is a ball around each clean input, of radius :meth:`ThreatModel.radius`:

- ``linf``, ``l2``: radius ``eps`` in that norm;
- ``db`` (audio loudness): the perturbation's peak at least ``eps`` dB below the input's peak,
  dB_x(δ) = 20·log10 max|δ| − 20·log10 max|x| ≤ −eps, an linf ball of radius max|x|·10^(−eps/20);
- ``snr`` (signal-to-noise ratio): 20·log10(‖x‖₂ / ‖δ‖₂) ≥ eps, an l2 ball of radius ‖x‖₂·10^(−eps/20).

The last two are relative: each sample's radius follows its own level, so a quiet clip gets a quiet budget.
``words`` (Spambase, :mod:`advsec.data.spambase`) is add-only: word frequencies only rise, by at most
``100 · eps`` percentage points in all (``eps`` added words as a fraction of the e-mail), nothing else moves.

``patch`` (Brown et al. 2017) owns one window of the image, ``eps`` of its area (a square, or ``aspect``
high per unit wide; on a 1-D input ``eps`` of its length): any value within the bounds inside it, nothing
outside. Where the window lies is the attacker's choice per sample; :meth:`ThreatModel.project` keeps the
window given as ``region``, or else the one that keeps the most of the change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F

from advsec.errors import BudgetError, InputError, SpecError
from advsec.norms import GEOMETRY, NORMS, Norm

_TINY = 1e-12  # keeps l2 directions finite where a gradient or perturbation is exactly zero


@dataclass(frozen=True)
class ThreatModel:
    """A ball in ``norm`` around each clean input (``eps`` its radius, or its level in dB for ``db`` and
    ``snr``), intersected with the box ``bounds``."""

    norm: Norm
    eps: float
    bounds: tuple[float, float] = (0.0, 1.0)
    aspect: float = 1.0  # a patch's height over its width

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise SpecError(f"norm: expected one of {', '.join(NORMS)}, got {self.norm!r}")
        if not self.eps >= 0:  # also rejects NaN
            raise SpecError(f"eps: expected a number >= 0, got {self.eps!r}")
        low, high = self.bounds
        if not low < high:
            raise SpecError(f"bounds: expected low < high, got {self.bounds!r}")
        if not self.aspect > 0:
            raise SpecError(f"aspect: expected a number > 0, got {self.aspect!r}")

    def scaled(self, factor: float) -> ThreatModel:
        """The same threat model with every radius multiplied by ``factor`` (> 0): a budget ramping up.
        For the relative norms that lowers the level in dB by 20·log10(factor), so 0.5 is 6 dB quieter."""
        if self.norm in ("linf", "l2", "words", "patch"):
            return replace(self, eps=self.eps * factor)
        return replace(self, eps=self.eps - 20 * math.log10(factor))

    @property
    def geometry(self) -> Literal["linf", "l2"]:
        """The shape of the ball: ``db`` is an linf ball, ``snr`` an l2 ball, each of a per-sample radius."""
        return GEOMETRY[self.norm]

    def radius(self, x: torch.Tensor) -> torch.Tensor:
        """Each clean input's radius in :attr:`geometry`, shaped ``(N, 1, ...)`` to broadcast over ``x``."""
        if self.norm == "words":
            return spambase().word_budget(x, self.eps)  # percentage points of word frequency
        if self.norm == "patch":  # unbounded inside the window: as wide as the box
            return torch.full((len(x), *[1] * (x.dim() - 1)), self.bounds[1] - self.bounds[0]).to(x)
        if self.norm in ("linf", "l2"):
            return torch.full((len(x), *[1] * (x.dim() - 1)), self.eps, dtype=x.dtype, device=x.device)
        return norm_of(x, self.geometry) * 10 ** (-self.eps / 20)  # the input's peak, or its l2 energy

    def distance(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Per-sample size of the perturbation in this threat model's units: a length for ``linf`` and
        ``l2``; dB_x(δ) for ``db`` (at most −eps) and the SNR for ``snr`` (at least eps), ±200 dB at most;
        for ``patch`` the area of the changed pixels' bounding box as a share of the image's."""
        if self.norm == "words":
            return spambase().added_share(x, x_adv)
        if self.norm == "patch":  # the share of the image the change spans (its bounding box)
            rows, cols = _changed_extent(x, x_adv, 0.0)
            height, width = as_plane(x).shape[2:]
            return (rows * cols / (height * width)).to(x.dtype)
        size = norm_of(x_adv - x, self.geometry).flatten()
        if self.norm in ("linf", "l2"):
            return size
        level = norm_of(x, self.geometry).flatten()
        ratio = 20 * torch.log10(size.clamp_min(1e-10) / level.clamp_min(1e-10))
        return ratio.clamp(-200, 200) if self.norm == "db" else (-ratio).clamp(-200, 200)

    def project(
        self,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        radius: torch.Tensor | None = None,
        *,
        region: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The feasible point nearest ``x_adv`` along the ball-then-box path: within budget and bounds.

        Clipping to the box after shrinking into the ball never leaves the ball, because ``x`` itself
        is inside the box: each coordinate of the perturbation only moves towards zero. A ``radius``
        (shaped like :meth:`radius`'s, and no larger) projects into a smaller ball of the same shape.
        A ``patch`` keeps the change inside ``region`` (a mask from :meth:`window`), or else inside the
        window that keeps the most of it once clipped: the nearest point of the union of all windows.
        """
        if self.norm == "patch":
            return self._project_patch(x, x_adv, region)
        radius = self.radius(x) if radius is None else radius
        if self.norm == "words":
            return spambase().project_words(x, x_adv, radius)
        delta = x_adv - x
        if self.geometry == "linf":
            delta = torch.maximum(torch.minimum(delta, radius), -radius)
        else:
            delta = delta * (radius / norm_of(delta, "l2").clamp_min(_TINY)).clamp(max=1.0)
        return (x + delta).clamp(*self.bounds)

    def ascend(
        self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float | torch.Tensor
    ) -> torch.Tensor:
        """One steepest-ascent step of length ``step_size`` in this norm (sign for linf, unit for l2; for
        ``words``, whose budget is an l1 ball on the word features, all of it on the steepest word).

        ``step_size`` may be a per-sample tensor shaped ``(N, 1, ...)``.
        """
        if self.norm == "words":
            return x_adv + step_size * _top_word(grad, spambase().WORDS)
        if self.geometry == "linf":
            return x_adv + step_size * grad.sign()
        return x_adv + step_size * grad / norm_of(grad, "l2").clamp_min(_TINY)

    def random_start(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A point drawn uniformly from the ball (then clipped to the box), as PGD's random start."""
        return self.project(x, x + self.random_delta(x, generator))

    def random_delta(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A perturbation drawn uniformly from the ball, one per sample of ``x``, not clipped to the box."""
        if self.norm == "words":
            words = spambase()
            uniform = random_tensor((len(x), words.WORDS.stop - words.WORDS.start + 1), x, generator)
            return words.random_rises(x, self.radius(x), uniform)
        if self.norm == "patch":  # uniform values of the box inside a uniformly placed window
            fill = self.bounds[0] + (self.bounds[1] - self.bounds[0]) * random_tensor(x.shape, x, generator)
            return self._masked(fill - x, self.window(x, self.random_corners(x, generator)))
        if self.geometry == "linf":
            return (2 * random_tensor(x.shape, x, generator) - 1) * self.radius(x)
        direction = random_tensor(x.shape, x, generator, normal=True)
        direction = direction / norm_of(direction, "l2").clamp_min(_TINY)
        depth = random_tensor((x.shape[0],), x, generator) ** (1.0 / x[0].numel())
        return direction * self.radius(x) * depth.view(-1, *[1] * (x.dim() - 1))

    def violations(self, x: torch.Tensor, x_adv: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
        """A per-sample mask of points outside the budget or the bounds (with float tolerance ``tol``)."""
        if self.norm == "words":
            return spambase().word_violations(x, x_adv, self.eps, tol)
        scale = max(1.0, abs(self.bounds[0]), abs(self.bounds[1]))
        slack = tol * scale
        if self.norm == "patch":  # some pixel changed outside every window: the change spans too much
            rows, cols = _changed_extent(x, x_adv, slack)
            height, width = self.window_shape(x)
            outside_ball = (rows > height) | (cols > width)
        else:
            radius = self.radius(x).flatten()
            outside_ball = norm_of(x_adv - x, self.geometry).flatten() > radius * (1 + tol) + slack
        flat = x_adv.flatten(1)
        outside_box = (flat < self.bounds[0] - slack).any(dim=1) | (flat > self.bounds[1] + slack).any(dim=1)
        return outside_ball | outside_box | ~torch.isfinite(flat).all(dim=1)

    def window_shape(self, x: torch.Tensor) -> tuple[int, int]:
        """A patch's height and width in pixels on inputs like ``x``: ``eps`` of the image's area, ``aspect``
        times as high as wide, rounded; on a 1-D input, one row ``eps`` of its length long."""
        height, width = as_plane(x).shape[2:]
        if height == 1:
            return 1, round(min(width, self.eps * width))
        area = self.eps * height * width
        high, wide = math.sqrt(area * self.aspect), math.sqrt(area / self.aspect)
        return round(min(height, high)), round(min(width, wide))

    def window(self, x: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        """Each sample's patch region, a mask shaped ``(N, 1, H, W)``, its top-left pixel at ``corners``
        (``(N, 2)`` rows and columns; a 1-D input's row is 0)."""
        height, width = as_plane(x).shape[2:]
        h, w = self.window_shape(x)
        rows, cols = torch.arange(height, device=x.device), torch.arange(width, device=x.device)
        top, left = corners[:, :1].to(x.device), corners[:, 1:].to(x.device)
        inside_rows = (rows >= top) & (rows < top + h)
        inside_cols = (cols >= left) & (cols < left + w)
        return (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]

    def random_corners(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Top-left corners ``(N, 2)`` of windows placed uniformly at random, one per sample of ``x``."""
        height, width = as_plane(x).shape[2:]
        h, w = self.window_shape(x)
        free = torch.tensor([height - h + 1, width - w + 1], device=x.device)
        return (random_tensor((len(x), 2), x, generator) * free).long().minimum(free - 1)

    def _project_patch(
        self, x: torch.Tensor, x_adv: torch.Tensor, region: torch.Tensor | None
    ) -> torch.Tensor:
        clipped = x_adv.clamp(*self.bounds)
        if region is None:  # the window where clipping then masking moves x_adv least
            h, w = self.window_shape(x)
            if h == 0 or w == 0:
                return x.clone()
            kept = (x_adv - x).double() ** 2 - (x_adv - clipped).double() ** 2
            sums = F.avg_pool2d(as_plane(kept).sum(dim=1, keepdim=True), (h, w), stride=1).flatten(1)
            columns = as_plane(x).shape[3] - w + 1
            best = sums.argmax(dim=1)
            region = self.window(x, torch.stack([best // columns, best % columns], dim=1))
        return torch.where(self._masked(torch.ones_like(x), region).bool(), clipped, x)

    @staticmethod
    def _masked(delta: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """``delta`` with every change outside ``region`` (``(N, 1, H, W)``) set to zero."""
        return (as_plane(delta) * region).reshape(delta.shape)


def as_plane(t: torch.Tensor) -> torch.Tensor:
    """``t`` seen as ``(N, C, H, W)``: a batch of vectors or of 1-D signals is one row high."""
    if t.dim() == 4:
        return t
    if t.dim() == 3:
        return t.unsqueeze(2)
    if t.dim() == 2:
        return t[:, None, None, :]
    raise InputError(f"a patch needs inputs shaped (N, C, H, W), (N, C, L) or (N, D), got {tuple(t.shape)}")


def _changed_extent(x: torch.Tensor, x_adv: torch.Tensor, slack: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, how many rows and columns the pixels changed by more than ``slack`` (in any channel)
    span: the height and width of their bounding box, 0 where none changed."""
    changed = ~(as_plane(x_adv - x).abs() <= slack).all(dim=1)  # NaN counts as changed
    return _span(changed.any(dim=2)), _span(changed.any(dim=1))


def _span(hit: torch.Tensor) -> torch.Tensor:
    """From the first to the last True of each row of ``hit`` (``(N, L)``), inclusive; 0 where none is."""
    index = torch.arange(hit.shape[1], device=hit.device)
    first = torch.where(hit, index, hit.shape[1]).amin(dim=1)
    last = torch.where(hit, index, -1).amax(dim=1)
    return (last - first + 1).clamp_min(0)


def _top_word(grad: torch.Tensor, words: slice) -> torch.Tensor:
    """The l1 steepest-ascent direction within ``words``: a unit step on the word of largest gradient.

    An l2 step spreads each move over all the words and the budget's projection then only crawls towards
    the vertex a sparse optimum sits on: on a z-scored Spambase MLP that left PGD evading less often than
    simply trying each word alone."""
    step = torch.zeros_like(grad)
    step[:, words].scatter_(1, grad[:, words].argmax(dim=1, keepdim=True), 1.0)
    return step


def spambase():  # the module
    """The add-only ``words`` constraint's module, imported when that norm is used."""
    from advsec.data import spambase

    return spambase


def random_tensor(
    shape: tuple[int, ...] | torch.Size,
    like: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    normal: bool = False,
) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) draws in ``like``'s dtype, on ``like``'s device.

    They are drawn where ``generator`` lives and then moved: training keeps a CPU generator, so a run
    reproduces whatever device the data sits on. Without a generator, torch's global one for ``like``'s
    device is used.
    """
    device = generator.device if generator is not None else like.device
    sample = torch.randn if normal else torch.rand
    return sample(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


def norm_of(t: torch.Tensor, geometry: str) -> torch.Tensor:
    """Each sample's size, its peak magnitude (linf) or its length (l2), shaped ``(N, 1, ...)`` to broadcast
    over ``t``."""
    flat = t.flatten(1)
    size = flat.abs().amax(dim=1) if geometry == "linf" else flat.norm(p=2, dim=1)
    return size.view(-1, *[1] * (t.dim() - 1))


def check_inputs(x: torch.Tensor, bounds: tuple[float, float], what: str = "inputs") -> None:
    """Reject NaN/Inf or out-of-bounds inputs before any attack runs, with a message saying which."""
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x.flatten(1))).any(dim=1).nonzero().flatten()[:5].tolist()
        raise InputError(f"{what} contain NaN or Inf (samples {bad})")
    low, high = bounds
    if x.numel() and (x.min() < low or x.max() > high):
        seen = f"min {x.min().item():.4g}, max {x.max().item():.4g}"
        raise InputError(f"{what} fall outside the bounds [{low}, {high}] ({seen})")


def check_attack_output(label: str, threat: ThreatModel, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    """An attack that leaves its threat model is a bug in that attack: stop and say so, never clip it."""
    if x_adv.shape != x.shape:
        raise BudgetError(f"attack {label!r} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    bad = threat.violations(x, x_adv)
    if bad.any():
        worst = threat.distance(x, x_adv).max().item()
        raise BudgetError(
            f"attack {label!r} left its threat model on {int(bad.sum())} samples "
            f"({threat.norm} eps {threat.eps:g}, bounds {list(threat.bounds)}; largest distance {worst:.6g})"
        )
