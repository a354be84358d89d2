"""Projection properties: every point the threat model hands back is inside the budget and the bounds."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advsec.errors import InputError, SpecError
from advsec.threat import NORMS, ThreatModel, check_inputs

BOUNDS = st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (-3.0, 0.5), (0.0, 255.0)])
SHAPES = st.sampled_from([(1, 1), (3, 5), (2, 1, 4, 4), (4, 3, 2, 2), (2, 1, 50)])


def _clean_and_wild(shape, bounds, seed):
    """A clean batch inside the bounds and a wild candidate far outside both budget and bounds."""
    generator = torch.Generator().manual_seed(seed)
    low, high = bounds
    x = low + (high - low) * torch.rand(shape, generator=generator)
    wild = x + 3 * (high - low) * torch.randn(shape, generator=generator)
    return x, wild


def threat_cases(eps: st.SearchStrategy[float]) -> dict[str, st.SearchStrategy]:
    """Shapes, bounds, a norm and a seed for property tests of the threat model, with the given eps range."""
    generic = [n for n in NORMS if n != "words"]  # words is Spambase's 57 features: tests/test_spambase.py
    return {"shape": SHAPES, "bounds": BOUNDS, "norm": st.sampled_from(generic), "eps": eps,
            "seed": st.integers(0, 9999)}  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(**threat_cases(eps=st.floats(0, 5)))
def test_projection_lands_inside_budget_and_bounds(shape, bounds, norm, eps, seed):
    x, wild = _clean_and_wild(shape, bounds, seed)
    threat = ThreatModel(norm, eps, bounds)
    projected = threat.project(x, wild)
    assert not threat.violations(x, projected).any()
    assert projected.min() >= bounds[0] and projected.max() <= bounds[1]


@settings(max_examples=100, deadline=None)
@given(**threat_cases(eps=st.floats(0, 5)))
def test_projection_is_idempotent_and_keeps_feasible_points(shape, bounds, norm, eps, seed):
    x, wild = _clean_and_wild(shape, bounds, seed)
    threat = ThreatModel(norm, eps, bounds)
    once = threat.project(x, wild)
    assert torch.allclose(threat.project(x, once), once, atol=1e-5 * max(1.0, bounds[1] - bounds[0]))
    assert torch.equal(threat.project(x, x), x)


@settings(max_examples=100, deadline=None)
@given(**threat_cases(eps=st.floats(0.01, 2)))
def test_random_start_and_steps_stay_feasible(shape, bounds, norm, eps, seed):
    x, wild = _clean_and_wild(shape, bounds, seed)
    threat = ThreatModel(norm, eps, bounds)
    start = threat.random_start(x, torch.Generator().manual_seed(seed))
    assert not threat.violations(x, start).any()
    stepped = threat.project(x, threat.ascend(start, wild - x, step_size=eps))
    assert not threat.violations(x, stepped).any()


def test_relative_budgets_follow_each_inputs_level_in_decibels():
    x = torch.zeros(2, 1, 100)
    x[0, 0, 10], x[1, 0, :4] = 0.5, 0.05  # a loud clip (peak 0.5, energy 0.5), a quiet one (peak 0.05, 0.1)
    loudness, snr = ThreatModel("db", 20, (-1.0, 1.0)), ThreatModel("snr", 20, (-1.0, 1.0))
    assert torch.allclose(loudness.radius(x).flatten(), torch.tensor([0.05, 0.005]))
    assert torch.allclose(snr.radius(x).flatten(), torch.tensor([0.05, 0.01]))
    delta = torch.zeros_like(x)
    delta[:, 0, 50] = torch.tensor([0.05, 0.005])  # exactly at each clip's -20 dB peak
    assert torch.allclose(loudness.distance(x, x + delta), torch.tensor([-20.0, -20.0]), atol=1e-4)
    assert not loudness.violations(x, x + delta).any() and loudness.violations(x, x + 1.01 * delta).all()
    assert torch.allclose(snr.distance(x, x + delta), torch.tensor([20.0, 26.0206]), atol=1e-3)
    projected = loudness.project(x, x + torch.full_like(x, 0.3))
    assert torch.allclose((projected - x).abs().amax(dim=2).flatten(), torch.tensor([0.05, 0.005]))


def test_linf_projection_is_the_exact_clip():
    threat = ThreatModel("linf", 0.1, (0.0, 1.0))
    x = torch.tensor([[0.5, 0.05, 0.95]])
    assert torch.allclose(
        threat.project(x, torch.tensor([[0.9, -0.5, 0.5]])), torch.tensor([[0.6, 0.0, 0.85]])
    )


def test_l2_projection_rescales_onto_the_sphere():
    threat = ThreatModel("l2", 1.0, (-10.0, 10.0))
    x = torch.zeros(1, 2)
    projected = threat.project(x, torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(projected, torch.tensor([[0.6, 0.8]]))
    assert threat.distance(x, projected).item() == pytest.approx(1.0)


def test_l2_step_has_the_requested_length():
    threat = ThreatModel("l2", 10.0, (-100.0, 100.0))
    x = torch.zeros(3, 1, 4, 4)
    grad = torch.randn(3, 1, 4, 4)
    assert torch.allclose(threat.distance(x, threat.ascend(x, grad, 0.5)), torch.full((3,), 0.5))


def test_violations_catch_budget_bounds_and_nan():
    threat = ThreatModel("linf", 0.1, (0.0, 1.0))
    x = torch.full((4, 3), 0.5)
    candidates = x.clone()
    candidates[1, 0] = 0.7  # outside the ball
    candidates[2, 0] = float("nan")
    candidates[3] = torch.tensor([0.45, 0.55, 0.5])  # fine
    assert threat.violations(x, candidates).tolist() == [False, True, True, False]
    assert ThreatModel("linf", 1.0, (0.0, 1.0)).violations(x, x + 0.6).all()  # outside the box


@pytest.mark.parametrize(
    ("norm", "eps", "bounds", "message"),
    [
        ("l7", 0.1, (0, 1), "norm"),
        ("linf", -0.1, (0, 1), "eps"),
        ("linf", float("nan"), (0, 1), "eps"),
        ("l2", 0.1, (1, 0), "bounds"),
    ],
)
def test_bad_threat_models_are_refused(norm, eps, bounds, message):
    with pytest.raises(SpecError, match=message):
        ThreatModel(norm, eps, bounds)


def test_inputs_with_nan_or_outside_bounds_are_refused():
    with pytest.raises(InputError, match="NaN"):
        check_inputs(torch.tensor([[0.1, float("nan")]]), (0.0, 1.0))
    with pytest.raises(InputError, match="outside the bounds"):
        check_inputs(torch.tensor([[0.1, 1.5]]), (0.0, 1.0))
    check_inputs(torch.tensor([[-1.0, 1.0]]), (-1.0, 1.0))
