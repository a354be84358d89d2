"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): Gaussian data augmentation, noisy inference.

The smoothed classifier g(x) = argmax_c P(f(x + N(0, σ²I)) = c) is only as good as the base classifier f is
under that noise, so f is trained on noisy inputs; both that training loss and the deployed model (one
noise draw per call) are :class:`GaussianNoise`'s. What smoothing adds is the certificate: ``advsec
certify`` estimates g itself and its certified ℓ2 radii (:mod:`advsec.certify`).
"""

from __future__ import annotations

from dataclasses import dataclass

from advsec.defenses.gaussian_noise import GaussianNoise


@dataclass
class RandomizedSmoothing(GaussianNoise):
    """Cohen et al.: trained on x + N(0, sigma²) noise; `advsec certify` gives certified ℓ2 radii."""

    certifiable = True
