"""A fake detector: real digits against the shared GAN's samples, its detection rate at a fixed false-alarm
rate, and PGD passing the fakes it caught off as real."""

import pytest
import torch

from advsec import registry
from advsec.data.fakes import FAKE, REAL
from advsec.detection import detection_under_attack, fake_scores, threshold_at
from advsec.progress import Progress
from advsec.runtime import load_dataset
from advsec.spec import TrainConfig, make_plugin
from advsec.threat import ThreatModel
from advsec.train import load_or_train

CPU = torch.device("cpu")
QUIET = Progress(quiet=True)
# One pass of the GAN over digits' 1,433 training images: crude fakes, but fakes, fitted in seconds.
FAKES = {"real": "digits", "gan_epochs": 1, "inverter_epochs": 0, "seed": 3}
TRAIN = TrainConfig(epochs=10)


@pytest.fixture(scope="module")
def fakes():
    return load_dataset("fakes", FAKES)


def train(dataset):
    return load_or_train(dataset, "mlp", "standard", {}, TRAIN, 0, device=CPU, progress=QUIET)


def test_the_fakes_data_set_holds_real_digits_and_gan_samples_with_a_stable_fingerprint(fakes, digits):
    assert fakes.classes == ("real", "fake") and fakes.bounds == digits.bounds
    assert len(fakes.x_train) == 2 * len(digits.x_train) and len(fakes.x_test) == 2 * len(digits.x_test)
    assert int((fakes.y_test == FAKE).sum()) == len(digits.x_test)
    assert 0.3 < (fakes.y_test[:100] == FAKE).float().mean() < 0.7  # shuffled: a first-N sample holds both
    real = fakes.x_test[fakes.y_test == REAL]
    assert {tuple(r.flatten().tolist()) for r in real} == {tuple(r.flatten().tolist()) for r in digits.x_test}
    again = load_dataset("fakes", FAKES)  # the GAN from the cache, the same codes and shuffle
    assert again.fingerprint == fakes.fingerprint and torch.equal(again.x_train, fakes.x_train)
    assert fakes.fingerprint != load_dataset("digits").fingerprint


def test_the_threshold_flags_at_most_the_false_alarm_rate_of_real_scores():
    scores = torch.arange(200.0)
    threshold = threshold_at(scores, 0.01)
    assert int((scores > threshold).sum()) == 2  # 1 % of 200
    assert threshold_at(torch.arange(50.0), 0.01) == 49  # fewer than 100: not one false alarm


def test_pgd_passes_the_caught_fakes_and_the_detection_rate_falls(fakes):
    detector = train(fakes).model
    real, fake = fakes.x_test[fakes.y_test == REAL], fakes.x_test[fakes.y_test == FAKE]
    pgd = make_plugin(registry.attacks.get("pgd"), {"steps": 20}, "pgd")
    threat = ThreatModel("linf", 0.3, fakes.bounds)  # at 0.2 PGD passes none of these crude fakes
    before, _ = detection_under_attack(detector, real, fake, None, threat, far=0.01)
    assert before.false_alarms <= 0.01 * before.reals and before.rate_after_attack == 1.0
    assert before.detection_rate > 0.9  # one GAN pass is easy to tell from a digit
    after, attacked = detection_under_attack(
        detector, real, fake, pgd, threat, far=0.01, generator=torch.Generator().manual_seed(0)
    )
    assert after.caught == before.caught and after.threshold == before.threshold
    assert after.rate_after_attack < 0.5 * before.rate_after_attack, after
    caught = fake[fake_scores(detector, fake) > after.threshold]
    assert (attacked - caught).abs().amax() <= 0.3 + 1e-6 and attacked.min() >= 0 and attacked.max() <= 1


def test_a_fitted_detector_reloads_from_the_cache_unchanged(fakes):
    first = train(fakes)
    again = train(load_dataset("fakes", FAKES))
    assert again.cached and again.key == first.key
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    probe = fakes.x_test[:64]
    assert torch.equal(fake_scores(first.model, probe), fake_scores(again.model, probe))
