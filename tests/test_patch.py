"""Patches (Brown et al. 2017): the attacker owns one window of the image, unbounded inside it and nothing
outside; every patch attack stays in its window, and a fitted universal patch beats a random one."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advsec.errors import BudgetError
from advsec.threat import ThreatModel, check_attack_output

BOUNDS = st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)])


def _outside(x: torch.Tensor, x_adv: torch.Tensor, region: torch.Tensor) -> float:
    """The largest change outside ``region``."""
    return ((x_adv - x) * ~region).abs().max().item()


@settings(max_examples=80, deadline=None)
@given(
    size=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(2, 12), st.integers(2, 12)),
    eps=st.floats(0.01, 0.6),
    aspect=st.floats(0.3, 3.0),
    bounds=BOUNDS,
    seed=st.integers(0, 9999),
)
def test_projection_keeps_the_change_inside_one_window_of_the_budget(size, eps, aspect, bounds, seed):
    generator = torch.Generator().manual_seed(seed)
    low, high = bounds
    x = low + (high - low) * torch.rand(size, generator=generator)
    wild = x + 3 * (high - low) * torch.randn(size, generator=generator)
    threat = ThreatModel("patch", eps, bounds, aspect=aspect)
    h, w = threat.window_shape(x)
    assert abs(h * w - eps * size[2] * size[3]) <= size[2] + size[3] + h + w  # the area, up to rounding
    nearest = threat.project(x, wild)
    assert not threat.violations(x, nearest).any()
    assert nearest.min() >= low and nearest.max() <= high
    region = threat.window(x, threat.random_corners(x, generator))
    assert int(region[0].sum()) == h * w
    inside = threat.project(x, wild, region=region)
    assert _outside(x, inside, region) == 0 and not threat.violations(x, inside).any()
    start = threat.random_start(x, generator)
    assert not threat.violations(x, start).any()
    # The nearest window keeps at least as much of the change as any other window does.
    assert ((nearest - wild) ** 2).sum() <= ((inside - wild) ** 2).sum() * (1 + 1e-5) + 1e-6


def test_check_attack_output_refuses_a_change_outside_every_window():
    threat = ThreatModel("patch", 0.25, (0.0, 1.0))  # a 4x4 window of an 8x8 image
    x = torch.full((2, 1, 8, 8), 0.5)
    x_adv = x.clone()
    x_adv[:, :, 2:6, 3:7] = 1.0
    check_attack_output("patch", threat, x, x_adv)  # a full window, anywhere: fine
    assert threat.distance(x, x_adv).tolist() == [0.25, 0.25]
    x_adv[1, 0, 7, 0] = 0.5 + 1e-3  # one pixel outside
    assert threat.violations(x, x_adv).tolist() == [False, True]
    with pytest.raises(BudgetError, match="left its threat model on 1 samples"):
        check_attack_output("patch", threat, x, x_adv)
    wide = x.clone()
    wide[0, 0, 0, :5] = 0.0  # five columns of a four-wide window
    assert threat.violations(x, wide).tolist() == [True, False]
    assert ThreatModel("patch", 0.05, (0.0, 1.0)).window_shape(torch.zeros(1, 1, 28, 28)) == (6, 6)
    assert ThreatModel("patch", 0.05, (0.0, 1.0), aspect=4).window_shape(torch.zeros(1, 1, 28, 28)) == (13, 3)
