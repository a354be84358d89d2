"""Reduced-precision search (advsec.precision): bfloat16 passes steer an attack, float32 passes decide."""

import pytest
import torch
from torch import nn

from advsec.attack import gradient_attack
from advsec.errors import SpecError
from advsec.harness import plan
from advsec.precision import exact, native_bfloat16, reduced
from advsec.runtime import CountingModel
from advsec.spec import spec_from_dict
from advsec.threat import ThreatModel

needs_bfloat16 = pytest.mark.skipif(
    not native_bfloat16(), reason="this CPU computes no bfloat16 natively: every search pass stays float32"
)


class Swapping(nn.Module):
    """Logits 1.00 / 0.99 / 0 for the label 0 in float32; under autocast the first two swap. The reduced
    passes are within a hundredth of the exact ones (the check accepts them) yet every one of them says
    "fooled" and no float32 pass does."""

    def __init__(self, lie: float = 0.01) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((1,), 1e-3))
        self.lie = lie
        self.autocast_passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        swapped = torch.is_autocast_enabled("cpu")
        self.autocast_passes += swapped
        base = torch.tensor([0.99, 1.0, 0.0]) if swapped else torch.tensor([1.0, 0.99, 0.0])
        if swapped:
            base = base + torch.tensor([0.0, self.lie - 0.01, 0.0])
        return base + self.weight * x.flatten(1)[:, :3]


def _attack(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    threat = ThreatModel("linf", 0.1, (0.0, 1.0))
    y = torch.zeros(len(x), dtype=torch.long)
    return gradient_attack(model, x, y, threat, steps=5, step_fraction=0.25)


@needs_bfloat16
def test_a_sample_a_reduced_pass_calls_fooled_is_fooled_only_if_float32_agrees():
    network = Swapping()
    counted = CountingModel(network, reduced=True)
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    with counted.searching():
        x_adv = _attack(counted, x)
    assert network.autocast_passes > 0  # the search ran in bfloat16
    searched = counted.forwards
    with torch.no_grad():
        assert (counted(x_adv).argmax(1) == 0).all()  # no point returned fools the model in float32
    # Each step's reduced pass said "fooled"; without the float32 confirmation the attack would have
    # stopped every sample after its first pass. It took all its steps, plus one confirming pass each.
    assert searched == len(x) * (5 + 1) * 2


def test_passes_outside_the_search_and_inside_exact_are_float32():
    network = Swapping()
    counted = CountingModel(network, reduced=True)
    x = torch.rand(4, 1, 2, 2)
    counted(x)
    with counted.searching(), exact():
        counted(x)
        assert not reduced()
    assert network.autocast_passes == 0
    plain = CountingModel(Swapping(), reduced=False)
    with plain.searching():
        plain(x)
        assert not reduced()
    assert plain.model.autocast_passes == 0


@needs_bfloat16
def test_a_network_whose_reduced_logits_stray_is_searched_in_float32():
    network = Swapping(lie=5.0)  # five times the logits' scale off: no bfloat16 rounding does that
    counted = CountingModel(network, reduced=True)
    x = torch.rand(4, 1, 2, 2)
    with counted.searching():
        _attack(counted, x)
        assert not reduced()
    assert counted.reduced.refused
    assert network.autocast_passes == 1  # the check's own pass, nothing after it


def _spec(**evaluation):
    return spec_from_dict({
        "name": "precision", "dataset": "digits", "model": "mlp", "defenses": [{"name": "standard"}],
        "threats": [{"norm": "linf", "eps": [0.1]}], "attacks": [{"name": "pgd", "steps": 5}],
        "evaluation": evaluation,
    }, text="")  # fmt: skip


def test_search_precision_is_checked_and_keys_cells_only_where_it_changes_results(digits):
    with pytest.raises(SpecError, match=r"evaluation\.search_precision"):
        _spec(search_precision="float16")
    auto = {cell.key for cell in plan(_spec(), digits)}
    float32 = {cell.key for cell in plan(_spec(search_precision="float32"), digits)}
    # A machine that searches in float32 anyway keeps the keys its stores were written under.
    assert (auto == float32) is not native_bfloat16()
