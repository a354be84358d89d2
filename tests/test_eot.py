"""The adaptive stage for random defenses: EOT draws measured per defense, and a strong EOT attack."""

import pytest
import torch

from advsec.attack import gradient_attack
from advsec.defense import MOST_DRAWS, Expectation
from advsec.defenses.weight_noise import NoisyWeights
from advsec.harness import adaptive_attacks
from advsec.keys import seeded
from advsec.progress import Progress
from advsec.results import cell_summaries
from advsec.runner import run_spec
from advsec.spec import SpecError, parse_spec
from advsec.threat import ThreatModel
from advsec.train import load_or_train

CPU = torch.device("cpu")
QUIET = Progress(quiet=True)

NOISY = """
name = "eot"
[train]
epochs = 8
[[defenses]]
name = "weight-noise"
sigma = 0.5
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "pgd"
steps = 5
[evaluation]
samples = 100
{evaluation}
"""


def _chosen(model: torch.nn.Module, x: torch.Tensor, seed: int = 0) -> tuple[int, list]:
    torch.manual_seed(seed)
    expectation = Expectation(model, "auto")
    expectation(x.clone().requires_grad_(True))
    return expectation.draws, expectation.measured


def test_the_draws_grow_with_the_defense_noise(digits, digits_models):
    model, x = digits_models["standard"], digits.x_test[:64]
    chosen = {sigma: _chosen(NoisyWeights(model, sigma), x) for sigma in (0.01, 0.2, 0.5, 2.0)}
    draws = [n for n, _ in chosen.values()]
    assert draws == sorted(draws), chosen
    assert draws[0] == 1 and draws[-1] >= 16, chosen  # nearly deterministic pays one draw; noisy, many
    for n, measured in chosen.values():  # doubling until the two estimates agree, or the cap
        assert [m for m, _ in measured] == [2**i for i in range(len(measured))]
        assert measured[-1][1] >= 0.9 or n == MOST_DRAWS
        assert all(agreement < 0.9 for _, agreement in measured[:-1])
    assert _chosen(NoisyWeights(model, 0.5), x, seed=1)[0] == _chosen(NoisyWeights(model, 0.5), x, seed=1)[0]


def test_a_number_of_draws_fixes_them_and_no_gradient_measures_nothing(digits, digits_models):
    model, x = NoisyWeights(digits_models["standard"], 0.5), digits.x_test[:16]
    fixed = Expectation(model, 3)
    fixed(x.clone().requires_grad_(True))
    assert fixed.draws == 3 and fixed.measured == []
    auto = Expectation(model, "auto")
    with torch.no_grad():
        auto(x)  # a query without a gradient (a sanity check's) measures nothing
    assert auto.draws is None and auto.measured == []
    with pytest.raises(ValueError):
        Expectation(model, 0)


def test_eot_draws_in_a_spec_and_the_adaptive_stage_it_plans():
    auto = parse_spec(NOISY.format(evaluation=""))
    assert auto.evaluation.eot_draws == "auto" and auto.evaluation.most_eot_draws == MOST_DRAWS
    labels = [a.label for a in adaptive_attacks(auto.defenses[0], auto)]
    assert labels == ["pgd+EOT", "apgd-ce+EOT"]
    fixed = parse_spec(NOISY.format(evaluation="eot_draws = 10"))
    assert [a.label for a in adaptive_attacks(fixed.defenses[0], fixed)] == ["pgd+EOT10"]
    for bad in ("0", '"many"', "true"):
        with pytest.raises(SpecError, match="eot_draws"):
            parse_spec(NOISY.format(evaluation=f"eot_draws = {bad}"))


def test_the_adaptive_stage_is_no_weaker_than_a_long_eot_pgd(digits, tmp_path):
    """advsec's cell (PGD-5 as the spec's attack, eot_draws = "auto") against a longer EOT-PGD (50 steps
    of 20 draws, 31 % here; 100 x 40 left 38 %, at four times the time), both scored over the same
    5 draws per prediction."""
    spec = parse_spec(NOISY.format(evaluation=""))
    store = run_spec(spec, tmp_path, device=CPU, progress=QUIET)
    cell = next(c for c in cell_summaries(store) if c.norm == "linf")
    assert [a.attack for a in cell.attacks] == ["pgd", "pgd+EOT", "apgd-ce+EOT"]
    strong = cell.attacks[-1]
    assert strong.backwards > 0 and strong.forwards >= strong.backwards  # its passes (and draws) counted
    defense = spec.defenses[0]
    trained = load_or_train(digits, "mlp", defense.name, defense.params, defense.train, spec.seed,
                            device=CPU, progress=QUIET)  # fmt: skip
    x, y = digits.x_test[:100], digits.y_test[:100]
    deployed = trained.defense.wrap(trained.network.requires_grad_(False), bounds=digits.bounds)
    with seeded(0, CPU):
        x_adv = gradient_attack(Expectation(deployed, 20), x, y, ThreatModel("linf", 0.1, digits.bounds),
                                steps=50, step_fraction=0.05, random_start=True,
                                generator=torch.Generator().manual_seed(0), keep_worst=False)  # fmt: skip
        with torch.no_grad():
            clean = torch.stack([deployed(x).argmax(1) == y for _ in range(5)]).all(0)
            attacked = torch.stack([deployed(x_adv).argmax(1) == y for _ in range(5)]).all(0)
    reference = (clean & attacked).float().mean().item()
    assert cell.robust_accuracy <= reference + 0.02, (cell.robust_accuracy, reference)
    assert cell.robust_accuracy < cell.attacks[1].robust_after or cell.robust_accuracy < 0.05
