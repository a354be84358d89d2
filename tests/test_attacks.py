"""Every registered attack stays inside its threat model, whatever the shape, budget or bounds."""

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from advsec import registry
from advsec.attack import fooled
from advsec.gan import Gan, UsesGan
from advsec.generator import Generator
from advsec.progress import Progress
from advsec.spec import make_plugin
from advsec.threat import ThreatModel

SHAPES = [(1, 8, 8), (3, 4, 4), (1, 50)]
BOUNDS = [(0.0, 1.0), (-1.0, 1.0), (-0.5, 2.0)]


def _random_model(shape: tuple[int, ...], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    width = 1
    for size in shape:
        width *= size
    return nn.Sequential(nn.Flatten(), nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def _quick(name: str):
    """The attack with its cheapest sensible parameters, so property tests explore inputs, not iterations."""
    cls = registry.attacks.get(name)
    fields = getattr(cls, "__dataclass_fields__", {})
    cheap = {"steps": 5, "restarts": 2, "queries": 50, "epochs": 1, "max_steps": 3, "batch_size": 8}
    params = {key: value for key, value in cheap.items() if key in fields}
    return cls, make_plugin(cls, params, name)


def _fits(name: str) -> bool:
    """Whether the attack fits something per example (a generator, a GAN, a room simulation): each example
    costs seconds, so fewer examples explore it."""
    cls = registry.attacks.get(name)
    return issubclass(cls, (Generator, UsesGan)) or name == "over-the-air"


INPUTS = {
    "shape": st.sampled_from(SHAPES),
    "bounds": st.sampled_from(BOUNDS),
    "batch": st.integers(1, 6),
    "seed": st.integers(0, 999),
    "data": st.data(),
}
EXAMPLES = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@pytest.mark.parametrize("name", [n for n in registry.attacks.names() if not _fits(n)])
@settings(max_examples=25, **EXAMPLES)
@given(**INPUTS)
def test_attack_output_respects_budget_and_bounds(name, shape, bounds, batch, seed, data):
    check_budget_and_bounds(name, shape, bounds, batch, seed, data)


@pytest.mark.parametrize("name", [n for n in registry.attacks.names() if _fits(n)])
@settings(max_examples=8, **EXAMPLES)
@given(**INPUTS)
def test_fitted_attack_output_respects_budget_and_bounds(name, shape, bounds, batch, seed, data):
    check_budget_and_bounds(name, shape, bounds, batch, seed, data)


def check_budget_and_bounds(name, shape, bounds, batch, seed, data) -> None:
    cls, attack = _quick(name)
    norms = [n for n in cls.norms if n != "words"]
    if not norms:
        pytest.skip("the words norm takes Spambase's 57 features only: property-tested in test_spambase")
    norm = data.draw(st.sampled_from(norms))
    if "audio" not in cls.modalities:  # an image attack: (1, 50) is a waveform
        assume(len(shape) == 3)
    eps = data.draw(st.floats(0.5, 60) if norm in ("db", "snr") else st.floats(0.001, 1.5))  # dB, or a length
    targeted = cls.needs_target or (cls.targeted and data.draw(st.booleans()))
    generator = torch.Generator().manual_seed(seed)
    low, high = bounds
    x = low + (high - low) * torch.rand((batch, *shape), generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    target = (y + 1) % 10 if targeted else None
    threat = ThreatModel(norm, eps, bounds)
    if cls.unrestricted:  # it brings its own bound
        threat = attack.bound(bounds)
        norm, eps = threat.norm, threat.eps
    if isinstance(attack, UsesGan):  # an unfitted GAN: its images must be in bounds whatever its weights
        assume(len(shape) == 3 and shape[1] % 4 == 0)
        attack.gan = Gan(shape, bounds, attack.latent, attack.gan_width).eval()
    model = _random_model(shape, seed)
    if isinstance(attack, Generator):  # fitted on the same inputs: the budget must hold whatever it learned
        network = attack.build(shape, 10)
        attack.fit(
            network, model, x, y, threat, target=1 if targeted else None, progress=Progress(quiet=True)
        )
        attack.network = network.eval()
    x_adv = attack.perturb(model, x, y, threat, target=target, generator=generator)
    assert x_adv.shape == x.shape
    assert torch.isfinite(x_adv).all()
    slack = 1e-6 * max(1.0, abs(low), abs(high))
    assert within_budget(norm, eps, x, x_adv, slack).all(), threat.distance(x, x_adv)
    if norm == "patch":
        assert patch_fits(eps, x, x_adv).all()
    assert x_adv.min() >= low and x_adv.max() <= high


def within_budget(norm: str, eps: float, x: torch.Tensor, x_adv: torch.Tensor, slack: float) -> torch.Tensor:
    """Per sample, the budget checked from its definition, independently of the threat model's code:
    a length for linf and l2; for db the perturbation's peak at least eps dB below the input's, for snr
    its l2 energy at least eps dB below the input's."""
    delta, clean = (x_adv - x).flatten(1), x.flatten(1)
    peak, energy = delta.abs().amax(dim=1), delta.norm(dim=1)
    below = 10 ** (-eps / 20) * (1 + 1e-5)
    return {
        "linf": lambda: peak <= eps + slack,
        "l2": lambda: energy <= eps + slack,
        "db": lambda: peak <= clean.abs().amax(dim=1) * below + slack,
        "snr": lambda: energy <= clean.norm(dim=1) * below + slack,
        "patch": lambda: torch.ones(len(x), dtype=torch.bool),  # any value of the bounds: see patch_fits
    }[norm]()


def patch_fits(eps: float, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Per sample, whether the changed values fit one square window covering ``eps`` of the image's area
    (on a 1-D input, a run of ``eps`` of its length): their bounding box is no taller or wider."""
    changed = (x_adv != x).any(dim=1)  # (N, H, W) or (N, L)
    if changed.dim() == 2:
        length = changed.shape[1]
        return _span(changed) <= round(min(length, eps * length))
    height, width = changed.shape[1:]
    side = (eps * height * width) ** 0.5
    return (_span(changed.any(dim=2)) <= round(min(height, side))) & (
        _span(changed.any(dim=1)) <= round(min(width, side))
    )


def _span(hit: torch.Tensor) -> torch.Tensor:
    """Per row of ``hit``, the distance from its first to its last True, inclusive (0 when none)."""
    index = torch.arange(hit.shape[1])
    first = torch.where(hit, index, hit.shape[1]).amin(dim=1)
    last = torch.where(hit, index, -1).amax(dim=1)
    return (last - first + 1).clamp_min(0)


def test_fgsm_takes_one_full_step_along_the_gradient_sign():
    model = _random_model((1, 8, 8), 0)
    x = torch.full((4, 1, 8, 8), 0.5)
    y = torch.tensor([0, 1, 2, 3])
    x.requires_grad_(True)
    nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
    expected = (x + 0.1 * x.grad.sign()).detach()
    attack = make_plugin(registry.attacks.get("fgsm"), {}, "fgsm")
    x_adv = attack.perturb(model, x.detach(), y, ThreatModel("linf", 0.1, (0.0, 1.0)))
    fooled_clean = model(x.detach()).argmax(1) != y  # such samples are returned unperturbed: already fooled
    assert torch.allclose(x_adv[~fooled_clean], expected[~fooled_clean], atol=1e-6)


def test_targeted_pgd_reaches_its_targets(digits, digits_models):
    model = digits_models["standard"]
    x, y = digits.x_test[:100], digits.y_test[:100]
    target = (y + 1) % 10
    attack = make_plugin(registry.attacks.get("pgd"), {"steps": 40}, "pgd")
    x_adv = attack.perturb(model, x, y, ThreatModel("linf", 0.3, digits.bounds), target=target)
    with torch.no_grad():
        hit = fooled(model(x_adv), y, target).float().mean().item()
    assert hit > 0.9


def test_restarts_only_add_successes(digits, digits_models):
    model = digits_models["pgd-at"]
    x, y = digits.x_test, digits.y_test
    threat = ThreatModel("linf", 0.15, digits.bounds)
    rates = []
    for restarts in (1, 4):
        attack = make_plugin(registry.attacks.get("pgd"), {"steps": 5, "restarts": restarts}, "pgd")
        x_adv = attack.perturb(model, x, y, threat, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            rates.append(fooled(model(x_adv), y, None))
    one, four = rates
    assert (four | ~one).all(), "a sample fooled by the first restart was lost by later ones"
    assert four.sum() > one.sum(), "extra restarts found nothing: restarts are not being used"
