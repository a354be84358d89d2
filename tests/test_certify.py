"""Randomized smoothing: certificates against analytically known probabilities, abstentions, training,
the [certify] spec table, and `advsec certify` / `advsec run` / `advsec report` end to end."""

import json
import math
import sqlite3

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import beta, norm
from torch import nn

from advsec.certify import ABSTAIN, certify, lower_confidence_bound, noisy_counts, smoothed_predict
from advsec.cli import main
from advsec.errors import ParameterError, SpecError
from advsec.spec import CertifyConfig, parse_spec

SIGMA = 0.5


class Threshold(nn.Module):
    """The base classifier "class 1 iff x0 > 0": under N(0, σ²) noise at x0 = c, P(class 1) = Φ(c/σ)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        first = x.flatten(1)[:, :1]
        return torch.cat([-first, first], dim=1)


def points(*offsets: float) -> torch.Tensor:
    """Inputs of two features whose first is the offset (the second only makes the noise 2-D)."""
    return torch.tensor([[c, 0.3] for c in offsets])


def test_certified_radius_matches_the_analytic_one():
    offsets = (0.25, 0.5, 0.8, -0.6)
    settings = CertifyConfig(n0=100, n=100_000, alpha=0.001, batch_size=20_000)
    found = certify(Threshold(), points(*offsets), sigma=SIGMA, settings=settings, seed=0)
    assert found.prediction.tolist() == [1, 1, 1, 0]
    # The radius is σ·Φ⁻¹ of the Clopper–Pearson bound on the counted votes, exactly.
    count = found.count.numpy()
    np.testing.assert_allclose(found.p_lower, beta.ppf(0.001, count, 100_000 - count + 1))
    np.testing.assert_allclose(found.radius, SIGMA * norm.ppf(found.p_lower))
    # The true p_A is Φ(|c|/σ), so the true radius is |c|: the certificate is a little below it (a lower
    # bound), never above; at n = 100,000 the gap is sampling error, about 0.01 here.
    truth = np.abs(offsets)
    assert (found.p_lower <= norm.cdf(truth / SIGMA)).all()
    assert (found.radius <= truth).all()
    assert (found.radius > truth - 0.03).all()


def test_a_coin_flip_abstains_in_predict_and_certify():
    settings = CertifyConfig(n0=100, n=10_000, alpha=0.001, batch_size=5000)
    x = points(0.0, 1.0)  # p = 0.5 exactly, then a clear class-1 point
    found = certify(Threshold(), x, sigma=SIGMA, settings=settings, seed=3)
    assert found.prediction.tolist() == [ABSTAIN, 1]
    assert math.isnan(found.radius[0]) and found.p_lower[0] < 0.5
    assert smoothed_predict(Threshold(), x, sigma=SIGMA, settings=settings, seed=3).tolist() == [ABSTAIN, 1]


def test_draws_are_batched_across_samples_and_reproduce():
    model = Threshold()
    x = points(*np.linspace(-1, 1, 7))
    counts = noisy_counts(model, x, SIGMA, 30, 64, [torch.Generator().manual_seed(i) for i in range(7)])
    assert model.batches == [60, 60, 60, 30]  # two whole samples' 30 draws per pass, never one draw
    assert counts.sum(1).tolist() == [30] * 7
    settings = CertifyConfig(n0=50, n=2000, batch_size=512)
    everything = certify(Threshold(), x, sigma=SIGMA, settings=settings, seed=1)
    again = certify(Threshold(), x, sigma=SIGMA, settings=settings, seed=1)
    fewer = certify(Threshold(), x[:3], sigma=SIGMA, settings=settings, seed=1)
    assert torch.equal(everything.count, again.count)
    assert torch.equal(everything.count[:3], fewer.count)  # a sample's draws do not depend on the others
    assert not torch.equal(
        everything.count, certify(Threshold(), x, sigma=SIGMA, settings=settings, seed=2).count
    )


def test_lower_confidence_bound_edges():
    assert lower_confidence_bound(np.array([0]), 100, 0.01)[0] == 0
    # All n draws on one class: the bound solves p^n = α.
    assert lower_confidence_bound(np.array([100]), 100, 0.01)[0] == pytest.approx(0.01 ** (1 / 100))


def test_bad_settings_are_errors_that_name_the_key():
    with pytest.raises(ParameterError, match="sigma: expected a noise level > 0"):
        certify(Threshold(), points(0.5), sigma=0.0, settings=CertifyConfig(), seed=0)
    with pytest.raises(ParameterError, match="alpha"):
        CertifyConfig(alpha=1.0)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("n = 0", "certify.n: expected an integer >= 1, got 0"),
        ('n = "many"', "certify.n: expected int, got str 'many'"),
        ("alpha = 1.5", "certify.alpha: expected a level strictly between 0 and 1, got 1.5"),
        ("samples = -3", "certify.samples: expected an integer >= 1, got -3"),
        ("nn = 5", "certify.nn: unknown key"),
    ],
)
def test_certify_table_errors_name_the_key_path(table, message):
    text = '[[defenses]]\nname = "smoothing"\n[[threats]]\nnorm = "l2"\neps = [0.5]\n'
    text += f'[[attacks]]\nname = "pgd"\n[certify]\n{table}\n'
    with pytest.raises(SpecError) as error:
        parse_spec(text)
    assert str(error.value).startswith(message)


def test_smoothing_training_learns_under_noise(digits):
    from advsec.progress import Progress
    from advsec.spec import TrainConfig
    from advsec.train import load_or_train

    trained = load_or_train(
        digits, "mlp", "smoothing", {"sigma": 0.25}, TrainConfig(epochs=10), seed=0,
        device=torch.device("cpu"), progress=Progress(quiet=True),
    )  # fmt: skip
    torch.manual_seed(0)  # the deployed model adds noise from the global generator
    with torch.no_grad():
        noisy_accuracy = (trained.model(digits.x_test).argmax(1) == digits.y_test).float().mean().item()
    assert noisy_accuracy > 0.8  # chance is 0.1


SPEC = """
name = "tiny-smoothing"
dataset = "digits"
model = "mlp"
[train]
epochs = 10
[[defenses]]
name = "standard"
[[defenses]]
name = "smoothing"
sigma = 0.25
[[threats]]
norm = "l2"
eps = [0.5]
[[attacks]]
name = "pgd"
steps = 3
[evaluation]
samples = 40
[certify]
n = 500
samples = 30
batch_size = 250
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_certifies_certify_resumes_and_report_shows_the_curve(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    ran = invoke("run", spec, "--out", out, "--json", "--no-report")
    assert ran.exit_code == 0, ran.output
    (certified,) = json.loads(ran.output)["certified"]  # only the smoothing defense can certify
    assert certified["defense"] == "smoothing" and certified["samples"] == 30 and certified["n"] == 500
    accuracy = list(certified["certified"].values())
    assert accuracy == sorted(accuracy, reverse=True) and accuracy[0] > 0.6  # chance is 0.1
    with sqlite3.connect(out / "results.sqlite") as db:
        rows = db.execute("SELECT idx, label, prediction, radius FROM certificates ORDER BY idx").fetchall()
    assert [r[0] for r in rows] == list(range(30))
    assert all((r[3] is None) == (r[2] == ABSTAIN) for r in rows)

    again = invoke("certify", spec, "--out", out, "--json")  # same settings: nothing recomputed
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["certified"] == [certified]
    fewer = invoke("certify", spec, "--out", out, "--json", "--samples", 10, "--no-report")
    assert json.loads(fewer.output)["certified"][0]["samples"] == 10

    rebuilt = invoke("report", out, "--out", tmp_path / "report")
    assert rebuilt.exit_code == 0, rebuilt.output
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Certified robustness" in html and "attacked (ℓ2, empirical)" in html
    assert (tmp_path / "report" / "certified.png").read_bytes().startswith(b"\x89PNG")


def test_certify_refuses_bad_options_and_specs_without_smoothing(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    result = invoke("certify", spec, "--out", tmp_path, "--n", 0)
    assert result.exit_code == 2 and "--n: expected an integer >= 1, got 0" in result.output
    spec.write_text(SPEC.replace('name = "smoothing"\nsigma = 0.25', 'name = "pgd-at"'))
    result = invoke("certify", spec, "--out", tmp_path)
    assert result.exit_code == 2 and "no defense in the spec can certify" in result.output
