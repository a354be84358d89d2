"""The gradient engine and the attacks built on it: invariants, strength ordering, targeted success."""

import pytest
import torch

from advsec import registry
from advsec.attack import attack_objective, fooled, gradient_attack
from advsec.attacks.apgd import APGDStepper, checkpoints
from advsec.progress import Progress
from advsec.results import cell_summaries
from advsec.runner import run_spec
from advsec.runtime import CountingModel
from advsec.spec import make_plugin, parse_spec
from advsec.threat import ThreatModel


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _attack(name, **params):
    return make_plugin(registry.attacks.get(name), params, name)


def test_dlr_loss_matches_its_definition():
    logits = torch.tensor([[4.0, 1.0, 3.0, 0.0, -1.0]])
    y, t = torch.tensor([0]), torch.tensor([2])
    untargeted = -(4.0 - 3.0) / (4.0 - 1.0)
    targeted = -(4.0 - 3.0) / (4.0 - (1.0 + 0.0) / 2)
    assert attack_objective(logits, y, None, "dlr").item() == pytest.approx(untargeted)
    assert attack_objective(logits, y, t, "dlr").item() == pytest.approx(targeted)
    assert attack_objective(logits * 7, y, None, "dlr").item() == pytest.approx(untargeted)  # scale-invariant


def test_apgd_checkpoints_follow_the_paper():
    assert sorted(checkpoints(100)) == [22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("stepper", ["steepest", "apgd"])
def test_early_stop_changes_cost_not_results(digits, digits_models, stepper):
    model = CountingModel(digits_models["pgd-at"])
    threat = ThreatModel("linf", 0.15, digits.bounds)
    outputs, costs = [], []
    for early_stop in (False, True):
        model.forwards = 0
        kwargs = (
            {"step_size": 0.02} if stepper == "steepest" else {"stepper": lambda _: APGDStepper(threat, 30)}
        )
        generator = torch.Generator().manual_seed(0)
        x, y = digits.x_test, digits.y_test
        outputs.append(
            gradient_attack(model, x, y, threat, steps=30, random_start=True, restarts=2, generator=generator,
                            early_stop=early_stop, **kwargs)
        )  # fmt: skip
        costs.append(model.forwards)
    assert torch.equal(outputs[0], outputs[1])
    assert costs[1] < 0.9 * costs[0]


def test_eot_averages_draws_and_is_counted(digits, digits_models):
    model = CountingModel(digits_models["standard"])
    threat = ThreatModel("linf", 0.1, digits.bounds)
    x, y = digits.x_test[:50], digits.y_test[:50]
    plain = gradient_attack(model, x, y, threat, steps=5, step_size=0.03, early_stop=False)
    model.forwards = model.backwards = 0
    averaged = gradient_attack(model, x, y, threat, steps=5, step_size=0.03, eot=4, early_stop=False)
    # A deterministic model: the expectation of identical draws is the model (log-softmax rounding aside,
    # which can flip the sign of a near-zero gradient entry).
    assert (plain - averaged).abs().gt(1e-6).float().mean() < 0.01
    assert model.backwards == 4 * 5 * 50 and model.forwards == 4 * 6 * 50


def test_apgd_is_at_least_as_strong_as_pgd_at_equal_iterations(digits, digits_models):
    model = digits_models["pgd-at"]
    threat = ThreatModel("linf", 0.15, digits.bounds)
    results = {}
    for name in ("pgd", "apgd-ce"):
        x_adv = _attack(name, steps=20).perturb(
            model, digits.x_test, digits.y_test, threat, generator=torch.Generator().manual_seed(0)
        )
        results[name] = _accuracy(model, x_adv, digits.y_test)
    assert results["apgd-ce"] <= results["pgd"], results


def test_attack_strength_ordering_on_the_defended_model(digits, digits_models):
    model = digits_models["pgd-at"]
    threat = ThreatModel("linf", 0.15, digits.bounds)
    clean = _accuracy(model, digits.x_test, digits.y_test)
    accuracy = {}
    for name in ("noise", "fgsm", "apgd-t"):
        x_adv = _attack(name).perturb(
            model, digits.x_test, digits.y_test, threat, generator=torch.Generator()
        )
        accuracy[name] = _accuracy(model, x_adv, digits.y_test)
    assert clean - accuracy["noise"] < 0.05 < clean - accuracy["fgsm"]
    assert accuracy["apgd-t"] < accuracy["fgsm"] - 0.05


@pytest.mark.parametrize(("name", "params"), [("pgd", {"steps": 40}), ("bim", {"steps": 40}),
                                              ("mifgsm", {"steps": 40}), ("apgd-ce", {"steps": 40}),
                                              ("apgd-t", {"steps": 40})])  # fmt: skip
def test_targeted_attacks_reach_their_targets(digits, digits_models, name, params):
    model = digits_models["standard"]
    x, y = digits.x_test[:150], digits.y_test[:150]
    target = (y + 1) % 10
    threat = ThreatModel("linf", 0.3, digits.bounds)
    x_adv = _attack(name, **params).perturb(model, x, y, threat, target=target, generator=torch.Generator())
    with torch.no_grad():
        assert fooled(model(x_adv), y, target).float().mean().item() >= 0.9


CASCADE = """
seed = 3
[train]
epochs = 15
[[defenses]]
name = "pgd-at"
eps = 0.1
steps = 3
[[threats]]
norm = "linf"
eps = [0.1, 0.15]
[[attacks]]
name = "fgsm"
[[attacks]]
name = "bim"
steps = 10
[[attacks]]
name = "mifgsm"
steps = 10
[[attacks]]
name = "pgd"
steps = 20
random_start = false
[evaluation]
cascade = {cascade}
"""


def test_cascade_gives_the_same_worst_case_as_every_attack_on_every_sample(tmp_path):
    stores = {}
    for cascade in ("true", "false"):
        spec = parse_spec(CASCADE.replace("{cascade}", cascade))
        stores[cascade] = run_spec(
            spec, tmp_path / cascade, device=torch.device("cpu"), progress=Progress(quiet=True)
        )
    cascaded, full = (cell_summaries(stores[c]) for c in ("true", "false"))
    for a, b in zip(cascaded, full, strict=True):
        assert a.robust_accuracy == b.robust_accuracy
        if a.norm != "none":
            assert a.forwards < b.forwards  # and it did so with less work
    for cell_a, cell_b in zip(stores["true"].cells(), stores["false"].cells(), strict=True):
        robust = [s["robust"] for s in stores["true"].samples(cell_a["cell"])]
        assert robust == [s["robust"] for s in stores["false"].samples(cell_b["cell"])]


class BatchSizes(torch.nn.Module):
    """``model``, noting the batch size of every call in ``seen``."""

    def __init__(self, model: torch.nn.Module, seen: list[int]) -> None:
        super().__init__()
        self.model, self.seen = model, seen

    def forward(self, x):
        self.seen.append(len(x))
        return self.model(x)


def test_early_exit_shrinks_the_batch_to_a_few_reused_sizes(digits, digits_models):
    seen: list[int] = []
    threat = ThreatModel("linf", 0.1, digits.bounds)
    x, y = digits.x_test[:300], digits.y_test[:300]
    model = BatchSizes(digits_models["standard"], seen)
    gradient_attack(model, x, y, threat, steps=20, step_size=0.01, random_start=True)
    shrunk = [s for s in seen if s != len(x)]
    assert shrunk  # samples did drop out
    # Sizes above 16 are multiples of an eighth of their octave, so the batch never takes odd shapes.
    assert all(s <= 16 or s % (1 << (s.bit_length() - 4)) == 0 for s in shrunk)
    assert len(set(seen)) <= 12


def test_a_refilled_batch_stays_full_and_finds_what_separate_batches_find(digits, digits_models):
    seen: list[int] = []
    threat = ThreatModel("linf", 0.05, digits.bounds)
    x, y = digits.x_test[:200], digits.y_test[:200]
    settings = {"steps": 20, "step_size": 0.005, "random_start": False}
    model = BatchSizes(digits_models["standard"], seen)
    streamed = gradient_attack(model, x, y, threat, batch=32, **settings)
    separate = torch.cat([
        gradient_attack(digits_models["standard"], xb, yb, threat, **settings)
        for xb, yb in zip(x.split(32), y.split(32), strict=True)
    ])  # fmt: skip
    assert max(seen) == 32
    first_short = next(i for i, size in enumerate(seen) if size < 32)
    assert sum(seen[:first_short]) >= len(x)  # full batches until every sample has come in
    assert first_short < 20 * len(x) / 32  # early exit: fewer full passes than batches × steps
    robust = (digits_models["standard"](streamed).argmax(1) == y).float().mean().item()
    assert robust == pytest.approx(_accuracy(digits_models["standard"], separate, y), abs=0.01)
    assert (streamed - x).abs().max() <= 0.05 + 1e-6


def test_only_the_default_stepper_refills(digits, digits_models):
    threat = ThreatModel("linf", 0.05, digits.bounds)
    x, y = digits.x_test[:8], digits.y_test[:8]
    with pytest.raises(ValueError, match="default stepper"):
        gradient_attack(digits_models["standard"], x, y, threat, steps=2, batch=4,
                        stepper=lambda x0: APGDStepper(threat, 2))  # fmt: skip
