"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): score-based random search.

Each query proposes changing the perturbation inside one random square window and keeps the proposal only
if it improves the loss. It reads nothing but the model's scores, so it is a check on gradient masking.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from advsec.attack import Attack, WorstCase, attack_objective, fooled
from advsec.threat import ThreatModel, norm_of

Score = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# Iterations (of a 10,000-query run) after which the window's share of the input halves, as in the paper.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_TINY = 1e-12


@dataclass
class Square(Attack):
    """Random search over square windows at the budget's edge: linf vertices, or l2 mass moved between
    windows at ‖δ‖₂ = eps. Accepts only improving proposals; fooled samples stop costing queries."""

    kind = "query"
    norms = ("linf", "l2", "db", "snr")
    targeted = True
    queries: int = 5000  # per sample and restart, the initialization included
    p_init: float = 0.8  # the first window's share of the input; shrinks on a fixed schedule
    restarts: int = 1
    loss: Literal["margin", "ce"] = "margin"

    def __post_init__(self) -> None:
        for name in ("queries", "restarts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected at least 1, got {getattr(self, name)}")
        if not 0 < self.p_init <= 1:
            raise ValueError(f"p_init: expected a share in (0, 1], got {self.p_init}")

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
        loss = "cw" if self.loss == "margin" else "ce"

        def score(points: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Objective to maximize and success, for the samples ``index`` at ``points`` (plane view)."""
            logits = model(points.reshape(len(points), *x.shape[1:]))
            aim = None if target is None else target[index]
            return attack_objective(logits, y[index], aim, loss), fooled(logits, y[index], aim)

        planes = _as_planes(x)
        search = self._linf if threat.geometry == "linf" else self._l2
        overall = WorstCase(planes)
        # A score-based attack: no graph is ever built, no gradient can leak in. Inference mode also skips
        # autograd's bookkeeping on every tensor of every query; only ``overall`` (a normal tensor, made
        # outside) leaves it.
        with torch.inference_mode():
            for _ in range(self.restarts):
                todo = overall.unfooled()
                if len(todo) == 0:
                    break
                run = search(planes[todo], todo, threat, score, generator)
                overall.update(todo, run.best, run.value, run.success)
        return overall.best.reshape(x.shape)

    def _linf(
        self,
        x: torch.Tensor,
        index: torch.Tensor,
        threat: ThreatModel,
        score: Score,
        generator: torch.Generator | None,
    ) -> WorstCase:
        """Vertical stripes at ±eps, then one window per query set to a fresh vertex of the ball.

        A proposal differs from the sample's best point only inside its window, so a query touches the
        window's cells alone besides the forward pass: the samples still searching are kept packed
        (repacked only when some are fooled), and an accepted window is written into their best point."""
        c, h, w = x.shape[1:]
        stripes = threat.radius(x) * _signs((len(x), c, 1, w), x, generator)
        state = _start(x, threat.project(x, x + stripes), index, score)
        rows = state.unfooled()
        x0, best = x[rows].flatten(2), state.best[rows].flatten(2)  # (n, c, h·w), packed
        value, radius = state.value[rows], threat.radius(x0)
        for it in range(self.queries - 1):
            n = len(rows)
            if n == 0:
                break
            cells = _cells(n, h, w, _side(self._share(it), h, w, 1), generator, x.device)
            cells = cells[:, None, :].expand(n, c, cells.shape[1])
            signs = radius * _signs((n, c, 1), x, generator)
            start, old = x0.gather(2, cells), best.gather(2, cells)
            new = threat.project(start, start + signs, radius)
            # A window already at those vertices (or held there by the bounds) would waste the query,
            # so those samples take the opposite vertex, as the paper's resampling does.
            stale = (new == old).flatten(1).all(dim=1)
            if stale.any():
                flipped = threat.project(start, start - signs, radius)
                new = torch.where(stale[:, None, None], flipped, new)
            proposal = best.clone().scatter_(2, cells, new)
            objective, hit = score(proposal.view(n, c, h, w), index[rows])
            better = hit | (objective > value)
            best.scatter_(2, cells, torch.where(better[:, None, None], new, old))
            value = torch.where(better, objective, value)
            if hit.any():  # fooled: done, and out of the pack
                state.update(rows[hit], best[hit].view(-1, c, h, w), value[hit], hit[hit])
                rows, x0, best, value, radius = (t[~hit] for t in (rows, x0, best, value, radius))
        state.update(rows, best.view(-1, c, h, w), value, torch.zeros_like(value, dtype=torch.bool))
        return state

    def _l2(
        self,
        x: torch.Tensor,
        index: torch.Tensor,
        threat: ThreatModel,
        score: Score,
        generator: torch.Generator | None,
    ) -> WorstCase:
        """Tiles of ± two-lobed blobs, then per query: empty a second window into the first, redrawn."""
        c, h, w = x.shape[1:]
        state = _start(x, _on_sphere(x, _tiles(x, generator), threat), index, score)
        for it in range(self.queries - 1):
            active = state.unfooled()
            n = len(active)
            if n == 0:
                break
            x0 = x[active]
            delta = state.best[active] - x0
            size = _side(self._share(it), h, w, 3)
            first = _window(n, h, w, size, generator, x.device)
            second = _window(n, h, w, size, generator, x.device)
            # The first window's new direction: fresh lobes of random sign per channel plus its old content,
            # so an accepted direction is refined rather than forgotten.
            old = delta * first
            fresh = _place(_lobes(n, *size, x, generator), first) * _signs((n, c, 1, 1), x, generator)
            fresh = fresh + old / _plane_norm(old).clamp_min(_TINY)
            # The first window receives the mass of both windows plus whatever the bounds clipped away,
            # spread evenly over the channels, so the total lands back on ‖δ‖₂ = eps.
            spare = (threat.radius(x0) ** 2 - norm_of(delta, "l2") ** 2).clamp_min(0) / c
            energy = (spare + _plane_norm(delta * (first | second)) ** 2).sqrt()
            fresh = fresh / _plane_norm(fresh).clamp_min(_TINY) * energy
            delta = torch.where(first, fresh, delta * ~second)
            proposal = _on_sphere(x0, delta, threat)
            state.update(active, proposal, *score(proposal, index[active]))
        return state

    def _share(self, it: int) -> float:
        """Share of the input the window covers at iteration ``it``: the paper's schedule, rescaled."""
        return self.p_init / 2 ** bisect_left(_HALVINGS, int(it / self.queries * 10_000))


def _as_planes(x: torch.Tensor) -> torch.Tensor:
    """Any input as (N, C, H, W): images as they are, (N, C, L) as one row, (N, D) as one channel's row."""
    n, *rest = x.shape
    if len(rest) == 1:
        return x.reshape(n, 1, 1, rest[0])
    if len(rest) == 2:
        return x.reshape(n, rest[0], 1, rest[1])
    return x.reshape(n, -1, rest[-2], rest[-1])


def _start(x: torch.Tensor, init: torch.Tensor, index: torch.Tensor, score: Score) -> WorstCase:
    """The search state after its first query, at ``init``."""
    state = WorstCase(x)
    state.update(torch.arange(len(x), device=x.device), init, *score(init, index))
    return state


def _side(share: float, h: int, w: int, smallest: int) -> tuple[int, int]:
    """Window covering ``share`` of an h×w plane: a square, or a segment when the plane is one row.

    At least ``smallest`` long (the l2 blobs need 3 cells, and an odd side to centre on), at most the plane.
    """
    length = share * w if h == 1 else math.sqrt(share * h * w)
    side = max(round(length), smallest)
    if smallest > 1 and side % 2 == 0:
        side += 1
    return (1, min(side, w)) if h == 1 else (min(side, h, w), min(side, h, w))


def _window(
    n: int, h: int, w: int, size: tuple[int, int], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Mask (n, 1, h, w) of a rows×cols window at a uniformly random position, drawn per sample."""
    rows, cols = size
    top = torch.randint(0, h - rows + 1, (n, 1), generator=generator, device=device)
    left = torch.randint(0, w - cols + 1, (n, 1), generator=generator, device=device)
    r, c = torch.arange(h, device=device), torch.arange(w, device=device)
    in_rows = (r >= top) & (r < top + rows)
    in_cols = (c >= left) & (c < left + cols)
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)


def _cells(
    n: int, h: int, w: int, size: tuple[int, int], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Flat positions (n, rows·cols) in an h×w plane of a rows×cols window at a uniformly random position,
    drawn per sample (the same draws as :func:`_window`)."""
    rows, cols = size
    top = torch.randint(0, h - rows + 1, (n, 1), generator=generator, device=device)
    left = torch.randint(0, w - cols + 1, (n, 1), generator=generator, device=device)
    offsets = (torch.arange(rows, device=device)[:, None] * w + torch.arange(cols, device=device)).flatten()
    return (top * w + left) + offsets


def _place(pattern: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sample's (rows, cols) ``pattern`` written into its window ``mask`` (n, 1, h, w); zero elsewhere.

    A window is a rectangle, so its cells in row-major order are the pattern's cells in row-major order.
    """
    return torch.zeros(mask.shape, dtype=pattern.dtype, device=pattern.device).masked_scatter(mask, pattern)


def _blob(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """Unit-norm pseudo-gaussian: concentric rectangles around the centre, ring k at Σ_{j≥k} 1/(j+1)²."""
    ring = torch.maximum(
        (torch.arange(rows, device=like.device) - rows // 2).abs()[:, None],
        (torch.arange(cols, device=like.device) - cols // 2).abs()[None, :],
    )
    weights = 1.0 / torch.arange(1, max(rows, cols) // 2 + 2, device=like.device, dtype=like.dtype) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[k] = sum of the weights of every ring containing ring k
    blob = tail[ring]
    return blob / blob.norm().clamp_min(_TINY)


def _lobes(
    n: int, rows: int, cols: int, like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """The l2 update's shape (n, rows, cols): a positive and a negative blob side by side, unit norm.

    Splitting the window between opposite signs changes the image where it matters while keeping the
    perturbation's mean flat; a square window picks at random whether the lobes sit side by side or stacked.
    """
    half = cols // 2
    pattern = torch.cat([_blob(rows, half, like), -_blob(rows, cols - half, like)], dim=1)
    pattern = (pattern / pattern.norm()).expand(n, rows, cols)
    if rows != cols:
        return pattern
    stacked = torch.rand((n, 1, 1), generator=generator, device=like.device) < 0.5
    return torch.where(stacked, pattern.transpose(1, 2), pattern)


def _tiles(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """The l2 start: the plane tiled (about 5×5, centred) with lobes of random sign per sample and channel."""
    n, c, h, w = x.shape
    rows, cols = (1, max(w // 5, 1)) if h == 1 else (max(h // 5, 1), max(w // 5, 1))
    across, down = w // cols, h // rows
    lobes = _lobes(n * down * across, rows, cols, x, generator).reshape(n, 1, down, across, rows, cols)
    tiles = lobes * _signs((n, c, down, across, 1, 1), x, generator)
    grid = tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, c, down * rows, across * cols)
    top, left = (h - down * rows) // 2, (w - across * cols) // 2
    delta = torch.zeros_like(x)
    delta[:, :, top : top + down * rows, left : left + across * cols] = grid
    return delta


def _on_sphere(x: torch.Tensor, delta: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """``x`` plus ``delta`` rescaled to the l2 radius, then clipped to the bounds by the threat model."""
    return threat.project(x, x + delta * threat.radius(x) / norm_of(delta, "l2").clamp_min(_TINY))


def _signs(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Independent fair ±1 draws."""
    bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
    return (2 * bits - 1).to(like.dtype)


def _plane_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm per sample and channel, shaped (N, C, 1, 1)."""
    return t.square().sum(dim=(2, 3), keepdim=True).sqrt()
