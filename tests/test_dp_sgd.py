"""dp-sgd: Opacus' DP-SGD as a training defense, alone and under an adversarial training's loss."""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advsec.errors import AdvsecError, InputError
from advsec.progress import Progress
from advsec.spec import TrainConfig, make_plugin

opacus = pytest.importorskip("opacus", reason='dp-sgd needs Opacus: pip install -e ".[privacy]"')

import advsec.registry as registry  # noqa: E402
from advsec.attack import accuracy, gradient_attack, robust_accuracy  # noqa: E402
from advsec.threat import ThreatModel  # noqa: E402
from advsec.train import build_model, train  # noqa: E402

DELTA = 1e-5
CONFIG = TrainConfig(epochs=2, batch_size=64, lr=1e-2)


class Logged(Progress):
    """A quiet progress that keeps what was logged."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def _defense(**params):
    return make_plugin(registry.defenses.get("dp-sgd"), params, "dp-sgd")


_TRAINED: dict[str, tuple[nn.Module, list[dict], list[str]]] = {}


def _trained(digits, config: TrainConfig = CONFIG, **params) -> tuple[nn.Module, list[dict], list[str]]:
    """An MLP trained on digits with dp-sgd under ``params`` (once per test session): the model, its
    history and the log."""
    key = repr((config, sorted(params.items())))
    if key not in _TRAINED:
        _TRAINED[key] = _train(digits, config, **params)
    return _TRAINED[key]


def _train(digits, config: TrainConfig, **params) -> tuple[nn.Module, list[dict], list[str]]:
    defense = _defense(**params)
    model = defense.network(lambda member: build_model("mlp", digits, member))
    progress = Logged()
    history = train(model, digits, defense, config, 0, device=torch.device("cpu"), progress=progress)
    return model, history, progress.lines


def test_epsilon_is_opacus_own_for_the_same_run(digits):
    """The ε stored per epoch is what Opacus' accountant says for a run Opacus drives itself: same data
    size, batch size (sampling rate), noise, clipping and steps, trained by its own loader and optimizer."""
    from opacus import PrivacyEngine
    from opacus.accountants import PRVAccountant

    _, history, log = _trained(digits, noise_multiplier=1.0)
    assert [h["delta"] for h in history] == [DELTA, DELTA]
    assert history[0]["epsilon"] < history[1]["epsilon"]  # spent so far, growing with the steps

    model = build_model("mlp", digits, 0)
    data = torch.utils.data.TensorDataset(digits.x_train, digits.y_train)
    loader = torch.utils.data.DataLoader(data, batch_size=CONFIG.batch_size)
    engine = PrivacyEngine(accountant="prv")
    model, optimizer, loader = engine.make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), data_loader=loader,
        noise_multiplier=1.0, max_grad_norm=1.0,
    )  # fmt: skip
    steps = 0
    for _ in range(CONFIG.epochs):
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            steps += 1
    assert history[-1]["epsilon"] == pytest.approx(engine.get_epsilon(DELTA), rel=1e-9)
    # and after the first epoch, the accountant fed that epoch's steps alone
    first = PRVAccountant()
    first.history = [(1.0, 1 / (steps // CONFIG.epochs), steps // CONFIG.epochs)]
    assert history[0]["epsilon"] == pytest.approx(first.get_epsilon(DELTA), rel=1e-9)
    assert any("noise multiplier 1" in line for line in log)


def test_epsilon_falls_as_noise_rises(digits):
    spent = [_trained(digits, noise_multiplier=sigma)[1][-1]["epsilon"] for sigma in (1.0, 2.0)]
    assert spent[1] < spent[0] / 2, spent  # measured 4.40 -> 1.45 over 10 epochs


def test_target_epsilon_is_not_exceeded(digits):
    _, history, _ = _trained(digits, epsilon=3.0)
    assert 2.9 <= history[-1]["epsilon"] <= 3.0
    assert history[-1]["noise_multiplier"] != 1.0  # found by Opacus for the target (0.89 here)


def test_adversarial_examples_do_not_reach_the_per_sample_gradients(digits):
    """Under dp-sgd, pgd-at's loss crafts its examples with input gradients of the hooked model; Opacus'
    per-sample gradients must be those of the training loss on the examples, nothing of the crafting."""
    defense = _defense(adversarial={"name": "pgd-at", "eps": 0.1, "steps": 3, "random_start": False})
    model = build_model("mlp", digits, 0)
    x, y = digits.x_train[:8], digits.y_train[:8]
    threat = ThreatModel("linf", 0.1, digits.bounds)
    model.eval()
    x_adv = gradient_attack(model, x, y, threat, steps=3, step_fraction=2.5 / 3, random_start=False,
                            keep_worst=False)  # fmt: skip
    params = dict(model.named_parameters())

    def sample_loss(p: dict[str, torch.Tensor], i: int) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(model, p, x_adv[i : i + 1]), y[i : i + 1])

    expected = [torch.func.grad(sample_loss)(params, i) for i in range(len(x))]
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    generator = torch.Generator().manual_seed(0)
    with defense.trainer(model, optimizer, samples=64, batch_size=8, epochs=1, generator=generator,
                         log=lambda _: None) as trainer:  # fmt: skip
        loss = defense.loss(model, x, y, bounds=digits.bounds)
        trainer.optimizer.zero_grad()
        loss.backward()
        for name, p in model.named_parameters():
            # mean reduction: Opacus scales back to each sample's own gradient
            got = p.grad_sample
            want = torch.stack([e[name] for e in expected])
            assert got.shape == want.shape
            assert torch.allclose(got, want, atol=1e-5), name
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())  # Opacus' hooks removed


def test_dp_pgd_at_trains_and_reports_its_budget(digits):
    config = TrainConfig(epochs=5, batch_size=64, lr=1e-2)
    x, y = digits.x_test, digits.y_test
    threat = ThreatModel("linf", 0.2, digits.bounds)  # twice the training budget, where DP-SGD keeps little
    found = {}
    for adversarial in (None, {"name": "pgd-at", "eps": 0.1, "steps": 5}):
        model, history, _ = _trained(digits, config, noise_multiplier=1.0, adversarial=adversarial)
        robust = robust_accuracy(model, x, y, threat, steps=10, step_size=0.05, random_start=True,
                                 generator=torch.Generator().manual_seed(0))  # fmt: skip
        found[adversarial is not None] = (accuracy(model, x, y), robust, history[-1])
    (clean, robust, spent), (clean_at, robust_at, spent_at) = found[False], found[True]
    # The same steps, noise and sampling: the loss does not change the accounting, and both report it.
    assert spent["epsilon"] == spent_at["epsilon"] and 0 < spent["epsilon"] < math.inf, found
    assert (spent_at["delta"], spent_at["noise_multiplier"]) == (DELTA, 1.0), found
    # Under this noise pgd-at buys little at its own budget, but what it trains shows beyond it: robustness
    # DP-SGD alone (or on noisy inputs) does not reach on the same privacy budget, at a cost in clean
    # accuracy, as adversarial training has.
    assert clean > 0.8 and clean_at > 0.75, found
    assert clean_at < clean - 0.02, found
    assert robust_at > robust + 0.05, found


def test_batch_norm_is_fixed_and_said_or_refused(digits):
    def with_batch_norm(member: int) -> nn.Module:
        torch.manual_seed(member)
        return nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10)
        )

    defense = _defense(noise_multiplier=1.0)
    model = defense.network(with_batch_norm)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    progress = Logged()
    history = train(
        model, digits, defense, TrainConfig(epochs=1), 0, device=torch.device("cpu"), progress=progress
    )
    assert history[-1]["epsilon"] > 0
    assert any("ModuleValidator.fix replaced 2: BatchNorm1d -> GroupNorm" in line for line in progress.lines)
    # a model that did not come through network() (a user's checkpoint, fine-tuned) is refused
    with pytest.raises(InputError, match="BatchNorm"):
        train(with_batch_norm(0), digits, defense, TrainConfig(epochs=1), 0, device=torch.device("cpu"),
              progress=Logged())  # fmt: skip


def test_refuses_bases_that_do_more_than_train():
    with pytest.raises(AdvsecError, match="does more than train"):
        _defense(adversarial="smoothing")
    with pytest.raises(AdvsecError, match=r"adversarial\.steps"):
        _defense(adversarial={"name": "pgd-at", "steps": "ten"})
    with pytest.raises(AdvsecError, match="not both"):
        _defense(noise_multiplier=1.0, epsilon=3.0)
    full = _defense(adversarial="pgd-at").adversarial
    assert full["name"] == "pgd-at" and full["steps"] == 10  # defaults enter the cache key


def test_missing_opacus_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)  # import opacus now raises ImportError
    with pytest.raises(AdvsecError, match=r'pip install -e "\.\[privacy\]"'):
        _defense(noise_multiplier=1.0)
