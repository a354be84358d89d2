"""Defenses: adversarial training helps, the guard restores, transforms fall to adaptive attacks."""

import copy
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from advsec import report
from advsec.attack import gradient_attack, robust_accuracy
from advsec.defense import Expectation, GuardCheck
from advsec.defenses.bit_depth import BitDepth
from advsec.defenses.fast_at import FastAdversarialTraining
from advsec.defenses.fgsm_at import FGSMAdversarialTraining
from advsec.defenses.pgd_at import PGDAdversarialTraining
from advsec.defenses.random_resize_pad import RandomResizePad
from advsec.defenses.trades import TRADES
from advsec.harness import adaptive_attacks, plan
from advsec.progress import Progress
from advsec.report import build_report
from advsec.results import cell_summaries, defense_summaries, wilson_interval
from advsec.runner import run_spec
from advsec.spec import TrainConfig, parse_spec
from advsec.threat import ThreatModel
from advsec.train import _schedule, build_model, load_or_train, train

CPU = torch.device("cpu")
QUIET = Progress(quiet=True)
QUICKSTART_TRAINING = TrainConfig(epochs=30, batch_size=64, lr=1e-3)


def pgd_accuracy(model, digits, eps: float) -> float:
    threat = ThreatModel("linf", eps, digits.bounds)
    settings = {"steps": 20, "step_size": eps / 8, "random_start": True, "restarts": 2}
    return robust_accuracy(model, digits.x_test, digits.y_test, threat, **settings)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("fast-at", {"eps": 0.1}),
        ("pgd-at", {"eps": 0.1, "steps": 7}),
        ("fgsm-at", {"eps": 0.1}),
        # The costliest (six passes a batch, 30 epochs): slow. The TRADES sweep below shows the same gain
        # in the default suite, from cheaper trainings (10 epochs, 3 steps).
        pytest.param("trades", {"eps": 0.1, "beta": 6.0, "steps": 5}, marks=pytest.mark.slow),
    ],
)
def test_adversarial_training_raises_robust_accuracy_over_standard(digits, digits_models, name, params):
    trained = load_or_train(digits, "mlp", name, params, QUICKSTART_TRAINING, 0, device=CPU, progress=QUIET)
    baseline = pgd_accuracy(digits_models["standard"], digits, 0.1)
    defended = pgd_accuracy(trained.model, digits, 0.1)
    assert baseline < 0.6
    assert defended > baseline + 0.2, (name, baseline, defended)


@dataclass
class Sabotaged(FastAdversarialTraining):
    """Fast AT that turns to gradient *ascent* after a few epochs: a collapse the guard must catch."""

    healthy_batches: int = 0
    batches: int = 0

    def __post_init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []  # the model at each check, in epoch order

    def loss(self, model, x, y, *, bounds, generator=None, progress=1.0):
        self.batches += 1
        loss = super().loss(model, x, y, bounds=bounds, generator=generator, progress=progress)
        return loss if self.batches <= self.healthy_batches else -loss

    def check(self, model, x, y, *, bounds, generator):
        self.weights.append(copy.deepcopy(model.state_dict()))
        return super().check(model, x, y, bounds=bounds, generator=generator)


def test_overfitting_guard_restores_the_best_epoch_then_stops_after_its_retries(digits):
    batches_per_epoch = -(-(len(digits.x_train) - 256) // 64)
    defense = Sabotaged(eps=0.1, healthy_batches=6 * batches_per_epoch)
    model = build_model("mlp", digits, 0)
    history = train(model, digits, defense, TrainConfig(epochs=20), 0, device=CPU, progress=QUIET)
    checks = [h["check"] for h in history]
    fired = history[-1]
    assert len(history) < 20 and "restored" in fired
    assert sum("restored" in h for h in history) == defense.guard_retries + 1  # restored, carried on, stopped
    best = max(range(len(checks) - 1), key=lambda i: checks[i])
    assert fired["restored"] == history[best]["epoch"] <= 6
    assert fired["check"] < checks[best] - defense.guard_drop
    assert all(torch.equal(v, defense.weights[best][k]) for k, v in model.state_dict().items())


@dataclass
class OverfitFromTheStart(FastAdversarialTraining):
    """Fast AT whose first ``overfit_checks`` checks show catastrophic overfitting's sign, with no drop."""

    overfit_checks: int = 1

    def check(self, model, x, y, *, bounds, generator):
        self.overfit_checks -= 1
        robust = super().check(model, x, y, bounds=bounds, generator=generator).robust
        return GuardCheck(robust, overfit=self.overfit_checks >= 0)


def test_guard_starts_over_on_overfitting_before_any_good_epoch(digits):
    model = build_model("mlp", digits, 0)
    history = train(model, digits, OverfitFromTheStart(eps=0.1), TrainConfig(epochs=3), 0, device=CPU,
                    progress=QUIET)  # fmt: skip
    assert [h["epoch"] for h in history] == [1, 1, 2, 3]  # the first epoch again, with the whole schedule
    assert history[0]["restored"] == 0 and history[0]["overfit"]
    assert not any("restored" in h for h in history[1:])


@dataclass
class ConstantFirst(FastAdversarialTraining):
    """Fast AT that teaches the model to answer 0 to everything for its first ``constant_batches``."""

    constant_batches: int = 0

    def loss(self, model, x, y, *, bounds, generator=None, progress=1.0):
        self.constant_batches -= 1
        y = torch.zeros_like(y) if self.constant_batches >= 0 else y
        return super().loss(model, x, y, bounds=bounds, generator=generator, progress=progress)


def test_guard_starts_over_when_the_model_collapses_to_one_answer_for_all(digits):
    # Seen on MNIST with N-FGSM and GradAlign: ten epochs at chance, no drop and no FGSM sign, and no word.
    batches_per_epoch = -(-(len(digits.x_train) - 256) // 64)
    defense = ConstantFirst(eps=0.1, constant_batches=batches_per_epoch)
    model = build_model("mlp", digits, 0)
    history = train(model, digits, defense, TrainConfig(epochs=3), 0, device=CPU, progress=QUIET)
    assert [h["epoch"] for h in history] == [1, 1, 2, 3]
    assert history[0]["restored"] == 0 and history[0]["constant"] and not history[0].get("overfit")
    assert not any("restored" in h for h in history[1:]) and history[-1]["check"] > 0.3


def test_guard_draws_fresh_weights_each_time_and_stops_when_overfitting_never_ends(digits):
    model = build_model("wong-cnn", digits, 0)  # no dropout: training leaves torch's global generator alone
    initial = copy.deepcopy(model.state_dict())
    defense = OverfitFromTheStart(eps=0.1, overfit_checks=10, guard_retries=0)
    history = train(model, digits, defense, TrainConfig(epochs=4), 0, device=CPU, progress=QUIET)
    assert [h.get("restored") for h in history] == [0]
    assert not any(torch.equal(v, initial[k]) for k, v in model.state_dict().items())
    defense = OverfitFromTheStart(eps=0.1, overfit_checks=10)
    history = train(model, digits, defense, TrainConfig(epochs=4), 0, device=CPU, progress=QUIET)
    assert [h.get("restored") for h in history] == [0] * (defense.guard_retries + 1)


def test_guard_stays_quiet_when_training_is_healthy(digits):
    model = build_model("mlp", digits, 0)
    defense = FastAdversarialTraining(eps=0.1)
    history = train(model, digits, defense, TrainConfig(epochs=8), 0, device=CPU, progress=QUIET)
    assert len(history) == 8 and not any("restored" in h for h in history)
    assert all(0 <= h["check"] <= 1 for h in history)


def test_eps_warmup_ramps_the_training_budget_linearly():
    defense, bounds = FastAdversarialTraining(eps=0.3, warmup=0.4), (0.0, 1.0)
    assert defense.threat(bounds, 0.0) is None  # no budget yet: train on clean inputs
    assert [defense.threat(bounds, p).eps for p in (0.2, 0.4, 0.9)] == pytest.approx([0.15, 0.3, 0.3])
    assert FastAdversarialTraining(eps=0.3).threat(bounds, 0.0).eps == 0.3


def test_a_loudness_budget_warms_up_from_silence_not_from_full_scale():
    defense, bounds = PGDAdversarialTraining(eps=40, norm="db", warmup=0.5), (-1.0, 1.0)
    x = torch.full((1, 1, 100), 0.5)
    radii = [defense.threat(bounds, p).radius(x).item() for p in (0.05, 0.25, 0.5, 0.9)]
    full = 0.5 * 10 ** (-40 / 20)
    assert radii == pytest.approx([0.1 * full, 0.5 * full, full, full])  # linear in amplitude, as for linf
    assert defense.threat(bounds, 0.25).eps == pytest.approx(40 + 20 * math.log10(2))  # 6 dB quieter


def test_cyclic_schedule_rises_to_the_peak_then_falls_to_zero():
    rate = _schedule(TrainConfig(lr=0.5, schedule="cyclic", peak=0.4), 100)
    assert [rate(s) for s in (0, 20, 40, 70, 100)] == pytest.approx([0, 0.25, 0.5, 0.25, 0])
    assert _schedule(TrainConfig(lr=0.5), 100)(63) == 0.5


def test_fgsm_at_mixes_clean_and_adversarial_loss(digits, digits_models):
    model, bounds = digits_models["standard"], digits.bounds
    x, y = digits.x_test[:64], digits.y_test[:64]
    clean = F.cross_entropy(model(x), y)
    x_adv = gradient_attack(
        model, x, y, ThreatModel("linf", 0.1, bounds), steps=1, step_size=0.1, keep_worst=False
    )
    adversarial = F.cross_entropy(model(x_adv), y)
    for weight in (0.0, 0.3, 1.0):
        mixed = FGSMAdversarialTraining(eps=0.1, clean_weight=weight).loss(model, x, y, bounds=bounds)
        assert mixed.item() == pytest.approx((weight * clean + (1 - weight) * adversarial).item(), rel=1e-5)
    assert adversarial > clean


def test_trades_with_beta_zero_is_standard_training(digits, digits_models):
    model, x, y = digits_models["standard"], digits.x_test[:64], digits.y_test[:64]
    generator = torch.Generator().manual_seed(0)
    loss = TRADES(eps=0.1, beta=0.0).loss(model, x, y, bounds=digits.bounds, generator=generator)
    assert loss.item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)
    robust = TRADES(eps=0.1, beta=1.0).loss(model, x, y, bounds=digits.bounds, generator=generator)
    assert robust > loss  # the KL term to the adversarial neighbour is positive


def test_transforms_respect_bounds_and_their_definitions():
    x = torch.rand(16, 1, 12, 12) * 4 - 1  # bounds [-1, 3]
    bounds = (-1.0, 3.0)
    levels = BitDepth(bits=2).transform(x, bounds).unique()
    assert torch.allclose(levels, torch.tensor([-1.0, 1 / 3, 5 / 3, 3.0]))
    moved = RandomResizePad(min_scale=0.6).transform(x, bounds)
    assert moved.shape == x.shape and moved.min() >= -1 and moved.max() <= 3
    assert (moved == -1).any()  # the padding is the lower bound
    assert torch.allclose(RandomResizePad(min_scale=1.0).transform(x, bounds), x, atol=1e-5)
    seeded = [RandomResizePad().transform(x, bounds, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*seeded)


def test_expectation_averages_the_probabilities_of_random_draws():
    class Coin(torch.nn.Module):  # predicts class 1 with probability 0.3, else class 0, confidently
        def forward(self, x):
            heads = (torch.rand(len(x)) < 0.3).long()
            return F.one_hot(heads, 2).float() * 50

    torch.manual_seed(0)
    probabilities = Expectation(Coin(), draws=4000)(torch.zeros(3, 1)).exp()
    assert probabilities[:, 1] == pytest.approx(torch.full((3,), 0.3), abs=0.03)


TRANSFORMS = """
name = "transforms"
[train]
epochs = 20
[[defenses]]
name = "standard"
[[defenses]]
name = "bit-depth"
bits = 3
[[defenses]]
name = "random-resize-pad"
[[threats]]
norm = "linf"
eps = [0.3]
[[attacks]]
name = "pgd"
steps = 20
[evaluation]
samples = 200
repeats = 1  # one draw per score, so the naive-vs-EOT gap is the attack's alone
"""


def test_naive_attacks_are_fooled_and_adaptive_ones_are_not(tmp_path):
    store = run_spec(parse_spec(TRANSFORMS), tmp_path, device=CPU, progress=QUIET)
    cells = {c.defense: c for c in cell_summaries(store) if c.norm != "none"}
    assert [a.attack for a in cells["standard"].attacks] == ["pgd"]
    assert cells["standard"].naive_robust_accuracy is None
    bit_depth, resize = cells["bit-depth"], cells["random-resize-pad"]
    assert [a.attack for a in bit_depth.attacks] == ["pgd", "pgd+BPDA", "square (gradient-free)"]
    assert [a.attack for a in resize.attacks] == ["pgd", "pgd+EOT", "apgd-ce+EOT"]  # eot_draws "auto"
    assert bit_depth.naive_robust_accuracy > 0.8  # a zero gradient stops the naive attack
    assert bit_depth.robust_accuracy < 0.10
    square = bit_depth.attacks[-1]
    assert square.attacked == round(bit_depth.attacks[-2].robust_after * 200)  # only BPDA's survivors
    assert resize.robust_accuracy < resize.naive_robust_accuracy - 0.15
    html = build_report(store, tmp_path / "report").read_text()
    assert "Naive vs adaptive attacks" in html and "pgd+BPDA" in html


def test_adaptive_evaluation_can_be_turned_off_and_sizes_eot():
    spec = parse_spec(TRANSFORMS + "adaptive = false\n")
    assert all(len(c.attacks) <= 1 for c in plan(spec, _digits()))
    spec = parse_spec(TRANSFORMS + "eot_draws = 3\n")
    labels = {a.label for c in plan(spec, _digits()) for a in c.attacks}
    assert labels == {"pgd", "pgd+BPDA", "square (gradient-free)", "pgd+EOT3"}
    # A spec that runs Square itself adds none; a random defense has EOT instead.
    spec = parse_spec(TRANSFORMS.replace('name = "pgd"\nsteps = 20', 'preset = "worst-case"'))
    rounding = next(d for d in spec.defenses if d.name == "bit-depth")
    labels = [a.label for a in adaptive_attacks(rounding, spec)]
    assert labels == ["apgd-ce+BPDA", "apgd-t+BPDA", "square+BPDA"]


def _digits():
    from advsec.data.load import load_dataset

    return load_dataset("digits")


SWEEP = """
name = "sweep"
[train]
epochs = 10
[[defenses]]
name = "standard"
[[defenses]]
name = "trades"
eps = 0.1
steps = 3
sweep = { beta = [0.5, 4.0] }
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "pgd"
steps = 10
"""


def test_a_sweep_becomes_one_family_of_defenses_drawn_as_a_curve(tmp_path, monkeypatch):
    spec = parse_spec(SWEEP)
    assert [(d.label, d.family, d.params["beta"]) for d in spec.defenses[1:]] == [
        ("trades beta=0.5", "trades", 0.5),
        ("trades beta=4", "trades", 4.0),
    ]
    store = run_spec(spec, tmp_path, device=CPU, progress=QUIET)
    summaries = defense_summaries(store)
    assert [d.family for d in summaries] == ["standard", "trades", "trades"]
    # TRADES buys robustness at the budget it trained for, the more the larger beta (measured: 53.6 %
    # standard, 71.2 % at beta 0.5, 78.0 % at beta 4, on 364 digits): the default suite's proof that TRADES
    # raises robust accuracy over standard training (the 30-epoch one is slow).
    robust = {d.defense: d.robust["linf:0.1"] for d in summaries}
    assert robust["trades beta=0.5"] > robust["standard"] + 0.1
    assert robust["trades beta=4"] > robust["trades beta=0.5"]
    assert robust["trades beta=4"] > robust["standard"] + 0.2
    # The trade-off chart draws the family as one curve, in sweep order, through the defenses' own numbers.
    drawn, tradeoff_png = {}, report.tradeoff_png

    def tradeoff(panels, styles, families=None):
        drawn.update(panels=panels, families=families)
        return tradeoff_png(panels, styles, families)

    monkeypatch.setattr(report, "tradeoff_png", tradeoff)
    assert build_report(store, tmp_path / "report").exists()
    assert drawn["families"] == {"trades": ["trades beta=0.5", "trades beta=4"]}
    ((norm, eps, points),) = drawn["panels"]
    assert (norm, eps) == ("linf", 0.1)
    assert points == {d.defense: (d.clean_accuracy, robust[d.defense]) for d in summaries}


NOISY = """
name = "noisy"
[train]
epochs = 20
[[defenses]]
name = "standard"
[[defenses]]
name = "gaussian-noise"
sigma = 0.5
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "fgsm"
[evaluation]
samples = 200
repeats = 5
adaptive = false
"""


def test_repeated_evaluation_never_reports_more_than_one_evaluation(tmp_path):
    store = run_spec(parse_spec(NOISY), tmp_path, device=CPU, progress=QUIET)
    cells = cell_summaries(store)
    for cell in cells:
        low, high = cell.robust_interval
        assert low <= cell.robust_accuracy <= high
        assert cell.robust_accuracy <= cell.robust_accuracy_single
        if cell.defense == "standard":  # deterministic: every draw is the same
            assert cell.robust_accuracy == cell.robust_accuracy_single
    noisy = [c for c in cells if c.defense == "gaussian-noise"]
    assert all(c.robust_accuracy < c.robust_accuracy_single for c in noisy)  # sigma 0.5 flips some
    html = build_report(store, tmp_path / "report").read_text()
    assert "Repeated evaluation of random defenses" in html and "All 5 evaluations" in html


def test_wilson_interval_matches_its_closed_form():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(200, 200)[1] == pytest.approx(1.0)
