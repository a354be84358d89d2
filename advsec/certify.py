"""Certified ℓ2 robustness by randomized smoothing (Cohen, Rosenfeld & Kolter 2019).

The smoothed classifier g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I), of any base classifier f is
provably constant on an ℓ2 ball around x: if the top class has probability at least p_A ≥ 1/2, the
radius is σ·Φ⁻¹(p_A) (Theorem 1). :func:`certify` estimates p_A from below with Monte Carlo draws, so
its certificate holds with probability at least 1 − α over those draws; :func:`smoothed_predict` evaluates
g itself, abstaining when its top two classes cannot be told apart at level α.

Both count base-classifier votes with :func:`noisy_counts`: the draws of many samples share each forward
pass, and each sample's noise comes from a generator seeded by the run and the sample's index alone, so
certificates reproduce exactly and do not depend on how many samples are certified.
:class:`Certification` runs this for every defense of a spec that can certify and stores the results.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from advsec.data.subset import drawn
from advsec.errors import InputError, ParameterError
from advsec.keys import content_key
from advsec.progress import Task
from advsec.protocol import Job, SideProtocol
from advsec.records import CertificationResult
from advsec.runtime import Runtime
from advsec.spec import CertifyConfig, certifiable
from advsec.store import Store

ABSTAIN = -1  # the prediction of a smoothed classifier that declines to answer


@dataclass(frozen=True)
class Certificates:
    """Per sample: g's prediction (or :data:`ABSTAIN`), the evidence for it and the certified radius."""

    prediction: torch.Tensor  # int64
    count: torch.Tensor  # estimation draws on the selected class
    p_lower: np.ndarray  # one-sided (1 − α) lower confidence bound on that class's probability
    radius: np.ndarray  # certified ℓ2 radius; NaN where g abstains


def certify(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float,
    settings: CertifyConfig,
    seed: int,
    task: Task | None = None,
) -> Certificates:
    """Cohen et al.'s CERTIFY for every sample of ``x`` under the base classifier ``model``.

    ``n0`` draws select a class ĉ; ``n`` fresh draws count its votes k, and p_A is the Clopper–Pearson
    lower bound on its probability. With probability at least 1 − α, g(x + δ) = ĉ for every ‖δ‖₂ below
    the radius σ·Φ⁻¹(p_A); where p_A < 1/2 nothing is certified and the sample abstains. Selection and
    estimation use separate draws, as the guarantee requires.
    """
    _check_sigma(sigma)
    generators = _generators(x, seed)
    selection = noisy_counts(model, x, sigma, settings.n0, settings.batch_size, generators, task)
    guess = selection.argmax(1)
    estimation = noisy_counts(model, x, sigma, settings.n, settings.batch_size, generators, task)
    count = estimation.gather(1, guess[:, None]).squeeze(1)
    p_lower = lower_confidence_bound(count.cpu().numpy(), settings.n, settings.alpha)
    certified = p_lower >= 0.5
    radius = np.where(certified, sigma * norm.ppf(p_lower), np.nan)
    prediction = torch.where(torch.from_numpy(certified).to(guess.device), guess, ABSTAIN)
    return Certificates(prediction=prediction, count=count, p_lower=p_lower, radius=radius)


def smoothed_predict(
    model: nn.Module, x: torch.Tensor, *, sigma: float, settings: CertifyConfig, seed: int
) -> torch.Tensor:
    """Cohen et al.'s PREDICT: g's class for each sample of ``x``, or :data:`ABSTAIN`.

    Of ``n`` draws, the top two classes' counts n_A and n_B go to a two-sided binomial test of
    P(A) = P(B); the top class is returned only when it rejects at level α. Then the probability of
    returning a class other than g(x) is at most α.
    """
    _check_sigma(sigma)
    counts = noisy_counts(model, x, sigma, settings.n, settings.batch_size, _generators(x, seed))
    top = counts.topk(2, dim=1)
    p_values = torch.tensor(
        [binomtest(a, a + b, 0.5).pvalue for a, b in top.values.tolist()], device=counts.device
    )
    return torch.where(p_values <= settings.alpha, top.indices[:, 0], ABSTAIN)


@torch.no_grad()
def noisy_counts(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    draws: int,
    batch_size: int,
    generators: list[torch.Generator],
    task: Task | None = None,
) -> torch.Tensor:
    """``(len(x), classes)`` counts of the base classifier's votes on ``draws`` noisy copies per sample.

    A forward pass holds up to ``batch_size`` noisy copies: the draws of several whole samples when
    ``draws`` is small (selection), a block of one sample's when it is large (estimation). Sample i's noise
    comes from ``generators[i]`` in blocks counted from its own first draw, so its counts do not depend on
    which samples precede it (torch's random streams change when a request is split differently).
    """
    per_pass = max(1, batch_size // draws)  # whole samples per forward pass, when their draws fit
    block = min(draws, batch_size)  # else a sample's draws come in blocks of this size
    counts: torch.Tensor | None = None
    for first in range(0, len(x), per_pass):
        group = range(first, min(first + per_pass, len(x)))
        for offset in range(0, draws, block):
            size = min(block, draws - offset)
            noise = torch.cat(
                [torch.randn((size, *x.shape[1:]), generator=generators[i], device=x.device) for i in group]
            )
            owner = torch.arange(len(group), device=x.device).repeat_interleave(size)
            logits = model(x[first + owner] + sigma * noise)
            classes = logits.shape[1]
            if counts is None:
                counts = torch.zeros(len(x), classes, dtype=torch.long, device=x.device)
            votes = torch.bincount(owner * classes + logits.argmax(1), minlength=len(group) * classes)
            counts[group.start : group.stop] += votes.view(len(group), classes)
            if task is not None:
                task.advance(len(owner))
    if counts is None:
        raise InputError("no samples to certify")
    return counts


def lower_confidence_bound(count: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Clopper–Pearson: the one-sided (1 − α) lower bound on a probability seen ``count`` times in ``n``."""
    count = np.asarray(count)
    bound = np.zeros(count.shape)
    seen = count > 0  # Beta(0, ·) is undefined; the bound of zero successes is zero
    bound[seen] = beta.ppf(alpha, count[seen], n - count[seen] + 1)
    return bound


def _check_sigma(sigma: float) -> None:
    if not sigma > 0:
        raise ParameterError("sigma", f"expected a noise level > 0, got {sigma}")


def _generators(x: torch.Tensor, seed: int) -> list[torch.Generator]:
    """One generator per sample, seeded by a hash of (seed, index) so no two streams are shifted copies."""
    return [
        torch.Generator(device=x.device).manual_seed(
            int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "little") >> 1
        )
        for i in range(len(x))
    ]


class Certification(SideProtocol):
    """Certify every defense of the spec that can, on ``settings.samples`` test samples drawn by class.

    ``settings`` default to the spec's ``[certify]`` table, else :class:`CertifyConfig`'s defaults. A defense
    already certified with the same model and settings is skipped.
    """

    name = "certify"
    plan_meta = "certify_plan"

    def __init__(self, settings: CertifyConfig | None = None) -> None:
        self.settings = settings

    def _settings(self, runtime: Runtime) -> CertifyConfig:
        return self.settings or runtime.spec.certify or CertifyConfig()

    def jobs(self, runtime: Runtime) -> list[Job]:
        settings = asdict(self._settings(runtime))
        if drawn(settings["samples"], len(runtime.dataset.y_test)):
            settings["subset"] = "stratified"  # keyed apart from certificates of the first N samples
        return [
            Job(content_key({"model": runtime.deployed_key(d), "defense": d.label, "settings": settings}), d)
            for d in certifiable(runtime.spec.defenses)
        ]

    def done(self, store: Store) -> set[str]:
        return store.certification_keys()

    def save(self, store: Store, result: CertificationResult) -> None:
        store.save_certification(result)

    def run(self, runtime: Runtime, job: Job, seed: int) -> CertificationResult:
        settings = self._settings(runtime)
        x, y = runtime.test_split(settings.samples)
        trained = runtime.trained(job.defense)
        sigma = trained.defense.sigma
        started = time.perf_counter()
        draws = len(x) * (settings.n0 + settings.n)
        with runtime.progress.task(f"certify {job.defense.label}", total=draws) as task:
            found = certify(trained.network, x, sigma=sigma, settings=settings, seed=seed, task=task)
        return CertificationResult(
            defense=job.defense.label,
            key=job.key,
            settings={**asdict(settings), "samples": len(x), "sigma": sigma, "seed": seed},
            labels=y.cpu().numpy(),
            predictions=found.prediction.cpu().numpy(),
            counts=found.count.cpu().numpy(),
            p_lower=found.p_lower,
            radii=found.radius,
            forwards=draws,
            wall_seconds=time.perf_counter() - started,
        )
