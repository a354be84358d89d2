"""Real trainings on the embedded digits: accuracy floors, attack strength, defense benefit, the cache."""

import torch

from advsec import registry
from advsec.progress import Progress
from advsec.spec import TrainConfig, make_plugin
from advsec.threat import ThreatModel
from advsec.train import cache_dir, load_or_train


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _pgd_accuracy(model, digits, eps: float, steps: int = 20) -> float:
    attack = make_plugin(registry.attacks.get("pgd"), {"steps": steps}, "pgd")
    threat = ThreatModel("linf", eps, digits.bounds)
    x_adv = attack.perturb(
        model, digits.x_test, digits.y_test, threat, generator=torch.Generator().manual_seed(0)
    )
    return _accuracy(model, x_adv, digits.y_test)


def test_digits_mlp_is_accurate(digits, digits_models):
    assert _accuracy(digits_models["standard"], digits.x_test, digits.y_test) >= 0.95


def test_pgd_breaks_the_undefended_mlp(digits, digits_models):
    assert _pgd_accuracy(digits_models["standard"], digits, eps=0.3) < 0.10


def test_pgd_training_buys_robustness(digits, digits_models):
    standard = _pgd_accuracy(digits_models["standard"], digits, eps=0.1)
    defended = _pgd_accuracy(digits_models["pgd-at"], digits, eps=0.1)
    assert defended > standard + 0.2, (standard, defended)


def test_cache_returns_the_same_weights_without_retraining(digits):
    config = TrainConfig(epochs=2)
    device = torch.device("cpu")
    first = load_or_train(
        digits, "lenet", "standard", {}, config, 3, device=device, progress=Progress(quiet=True)
    )
    again = load_or_train(
        digits, "lenet", "standard", {}, config, 3, device=device, progress=Progress(quiet=True)
    )
    assert not first.cached and again.cached
    assert again.train_seconds == first.train_seconds
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert (cache_dir() / f"{first.key}.safetensors").is_file()
    other_seed = load_or_train(
        digits, "lenet", "standard", {}, config, 4, device=device, progress=Progress(quiet=True)
    )
    assert other_seed.key != first.key and not other_seed.cached


def test_training_is_reproducible_from_the_seed(digits, tmp_path, monkeypatch):
    config = TrainConfig(epochs=1)
    weights = []
    for run in range(2):
        monkeypatch.setenv("ADVSEC_CACHE", str(tmp_path / str(run)))  # no cache hit: train twice
        trained = load_or_train(
            digits,
            "wong-cnn",
            "pgd-at",
            {"eps": 0.1, "steps": 2},
            config,
            0,
            device=torch.device("cpu"),
            progress=Progress(quiet=True),
        )
        weights.append(trained.model.state_dict())
    for a, b in zip(weights[0].values(), weights[1].values(), strict=True):
        assert torch.equal(a, b)
