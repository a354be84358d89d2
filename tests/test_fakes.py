"""A fake detector: real digits against the shared GAN's samples, its detection rate at a fixed false-alarm
rate, PGD passing the fakes it caught off as real, and natural-gan's latent search finding fakes it passes."""

import json
import math
from fractions import Fraction

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advsec import registry
from advsec.cli import main
from advsec.data.fakes import FAKE, REAL
from advsec.data.load import load_dataset
from advsec.data.subset import draw_seed, stratified
from advsec.detection import Thresholded, fake_scores, threshold_at
from advsec.errors import SpecError
from advsec.harness import plan
from advsec.progress import Progress
from advsec.results import RunResults
from advsec.spec import TrainConfig, make_plugin, parse_spec
from advsec.store import Store
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


def lowest_threshold(scores: list[float], far: str) -> float:
    """The definition, by brute force: of −inf and every score, the lowest threshold that flags (a score
    must exceed it) at most ``far`` of ``scores``; ``far`` as written, so that 0.29 of 100 is 29."""
    allowed = Fraction(far) * len(scores)
    return min(t for t in [-math.inf, *scores] if sum(s > t for s in scores) <= allowed)


@pytest.mark.parametrize(
    "scores, far, expected",
    [
        ([5, 5, 5, 1, 0, 0, 0, 0, 0, 0], "0.2", 5),  # a tie across the allowance: none of it may be flagged
        ([5, 5, 1, 1, 1, 0, 0, 0, 0, 0], "0.2", 1),  # a tie that fits it exactly, and one at the threshold
        ([3] * 10, "0.1", 3),  # all tied: one false alarm is allowed, none can be had
        (list(range(200)), "0.01", 197),
        (list(range(50)), "0.01", 49),  # fewer than 100: not one false alarm
        ([2, 1], "1", -math.inf),
    ],
)
def test_the_threshold_is_the_lowest_that_flags_at_most_the_false_alarm_rate(scores, far, expected):
    assert lowest_threshold(scores, far) == expected  # the cases say what the definition gives
    threshold = threshold_at(torch.tensor(scores, dtype=torch.float32), float(far))
    assert threshold == expected
    assert sum(s > threshold for s in scores) <= Fraction(far) * len(scores)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=60),  # few values: ties everywhere
    st.sampled_from(["0", "0.01", "0.05", "0.1", "0.2", "0.25", "0.29", "0.5", "0.99"]),
)
def test_the_threshold_meets_its_definition_on_tied_scores(scores, far):
    threshold = threshold_at(torch.tensor(scores, dtype=torch.float32), float(far))
    assert threshold == lowest_threshold(scores, far)
    assert sum(s > threshold for s in scores) <= Fraction(far) * len(scores)


def test_the_deployed_detector_flags_exactly_the_scores_above_its_threshold():
    scores = torch.tensor([-1.0, 0.5, 2.0, 2.0, 3.0])
    logits = torch.stack([torch.zeros(5), scores], dim=1)  # logit(fake) − logit(real) = the score
    flagged = Thresholded(nn.Identity(), 2.0)(logits).argmax(1)
    assert flagged.tolist() == [REAL, REAL, REAL, REAL, FAKE]  # a score at the threshold passes as real


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


# The detector of train() (mlp, 10 epochs, seed 0) deployed at 1 % false alarms, PGD aimed at real.
DETECTOR_SPEC = f"""
name = "detector"
model = "mlp"
seed = 0
[dataset]
name = "fakes"
{chr(10).join(f"{k} = {json.dumps(v)}" for k, v in FAKES.items())}
[train]
epochs = {TRAIN.epochs}
[detection]
false_alarm = 0.01
[[defenses]]
name = "standard"
[[threats]]
norm = "linf"
eps = [0.3]
[[attacks]]
name = "pgd"
steps = 20
target = 0
[evaluation]
samples = 300
escalate = false
"""


def test_the_cli_reports_the_detection_rate_at_the_false_alarm_rate_falling_on_the_caught_fakes(
    fakes, tmp_path
):
    spec = tmp_path / "detector.toml"
    spec.write_text(DETECTOR_SPEC)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(spec), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "fake detection at a fixed false-alarm rate" in result.output
    store = Store(out / "results.sqlite", readonly=True)
    (detection,) = RunResults.read(store).detection
    examples = store.examples(next(c["cell"] for c in store.cells() if c["norm"] == "linf"))
    store.close()
    # The threshold is the definition's, set on every real test image of the split, on the same cached
    # detector; at most 1 % of those score above it.
    detector = train(fakes).model
    real_scores = fake_scores(detector, fakes.x_test[fakes.y_test == REAL]).tolist()
    assert detection.threshold == pytest.approx(lowest_threshold(real_scores, "0.01"))
    assert sum(s > detection.threshold for s in real_scores) <= 0.01 * len(real_scores)
    scored = stratified(fakes.y_test, 300, draw_seed("test", 0))  # the samples `samples = 300` evaluates
    x, y = fakes.x_test[scored], fakes.y_test[scored]
    scores = fake_scores(detector, x)
    assert detection.fakes == int((y == FAKE).sum()) and detection.reals == int((y == REAL).sum())
    assert (
        detection.caught == int(((scores > detection.threshold) & (y == FAKE)).sum()) > 0.9 * detection.fakes
    )
    assert detection.rate_after_attack < 0.5, detection  # measured on the fakes caught before
    assert detection.passing_after > detection.passing_before
    assert f"{detection.passing_before}/{detection.fakes} → {detection.passing_after}/{detection.fakes}" in (
        result.output
    )
    # The stored examples are caught fakes that passed: the detector at its threshold now calls them real.
    assert examples
    deployed = Thresholded(detector, detection.threshold)
    for i, clean, attacked in examples:
        assert (
            y[i] == FAKE
            and scores[i] > detection.threshold
            and torch.equal(torch.from_numpy(clean.copy()), x[i])
        )
        attacked = torch.from_numpy(attacked.copy())
        assert deployed(attacked[None]).argmax(1).item() == REAL
        assert (attacked - x[i]).abs().amax() <= 0.3 + 1e-6 and attacked.min() >= 0 and attacked.max() <= 1


def test_detection_needs_a_detectors_data_set_and_a_rate_below_one(digits):
    with pytest.raises(SpecError, match=r"detection\.false_alarm: expected a rate"):
        parse_spec(DETECTOR_SPEC.replace("false_alarm = 0.01", "false_alarm = 1.5"))
    on_digits = parse_spec(
        DETECTOR_SPEC.split("[dataset]")[0] + "[detection]" + DETECTOR_SPEC.split("[detection]")[1]
    )
    with pytest.raises(SpecError, match=r"detection\.false_alarm: thresholds a fake detector"):
        plan(on_digits, digits)


def test_latent_search_finds_gan_outputs_the_thresholded_detector_passes(fakes):
    detector = train(fakes).model
    gan = fakes.gan
    codes = torch.randn(200, gan.latent, generator=torch.Generator().manual_seed(5))
    # One GAN pass over digits is so crude that no code passes at 1 % false alarms (measured: none of 5,000,
    # even at 3x the prior's scale; after 30 passes, 12 of 5,000 do). A threshold at the 5th percentile of
    # fresh fakes' scores leaves the search something to find, and catches 95 % of them.
    with torch.no_grad():
        scores = fake_scores(detector, gan.decode(codes))
    deployed = Thresholded(detector, float(scores.quantile(0.05)))
    search = make_plugin(
        registry.attacks.get("natural-gan"), {"candidates": 16, "rounds": 10, "step": 0.3}, "natural-gan"
    )
    search.prepare(fakes, seed=0, device=CPU, progress=QUIET)
    assert search.fitted_gan() is fakes.gan  # the fakes' own GAN, not one fitted on real and fake images
    gan = fakes.gan
    codes = torch.randn(200, gan.latent, generator=torch.Generator().manual_seed(5))
    codes = codes[scores > deployed.threshold]
    aim = torch.full((len(codes),), REAL)
    found_codes, found = search.search(deployed, codes, torch.full_like(aim, FAKE), target=aim,
                                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert found.sum() > 0.25 * len(codes), int(found.sum())  # 76 of 190 when measured
    with torch.no_grad():
        passing = gan.decode(found_codes[found])  # GAN outputs: decoded from the codes the search returns
        assert (deployed(passing).argmax(1) == REAL).all()
        assert (fake_scores(detector, passing) <= deployed.threshold).all()
    moved = (found_codes - codes).norm(dim=1)
    assert (moved[found] > 0).all() and (moved[found] <= search.rounds * search.step + 1e-5).all()
    assert (moved[~found] == 0).all()
    # perturb, as the unrestricted protocol calls it, returns the decoded codes of the same search
    x = gan.decode(codes[:16])
    y = torch.full((16,), FAKE)
    made = search.perturb(deployed, x, y, None, target=aim[:16], generator=torch.Generator().manual_seed(1))
    again, _ = search.search(
        deployed, gan.invert(x), y, target=aim[:16], generator=torch.Generator().manual_seed(1)
    )
    assert torch.allclose(made, gan.decode(again), atol=1e-6)
