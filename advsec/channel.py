"""A simulated acoustic channel: what a waveform goes through between a loudspeaker and a microphone.

Each draw applies a random gain, a random delay, a synthetic room impulse response (a direct path, then
exponentially decaying noise: the room's reverberation) and background noise at a random signal-to-noise
ratio. Lengths are fractions of the clip, so the channel fits any sample rate. Every step is differentiable
in the waveform, so gradients pass through it: an attack that averages over its draws (EOT) survives rooms
it has never seen — the over-the-air attack (Carlini & Wagner 2018; Qin et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advsec.threat import random_tensor


@dataclass(frozen=True)
class Channel:
    gain_db: tuple[float, float] = (-6.0, 6.0)
    max_delay: float = 0.05  # of the clip
    room: float = 0.05  # impulse response length, of the clip
    decay: float = 0.01  # the reverberation's 1/e time, of the clip
    wet: float = 0.3  # reverberant energy relative to the direct path
    snr_db: tuple[float, float] = (20.0, 40.0)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One independent draw of the channel per clip of ``x`` (shaped (N, C, T))."""
        n, length = len(x), x.shape[-1]
        column = (n, *[1] * (x.dim() - 1))
        low, high = self.gain_db
        gain = 10 ** ((low + (high - low) * random_tensor(column, x, generator)) / 20)
        delays = (random_tensor((n,), x, generator) * self.max_delay * length).long().tolist()
        delayed = torch.stack([clip.roll(d, dims=-1) for clip, d in zip(x, delays, strict=True)])
        heard = _convolve(gain * delayed, self._rooms(x, generator))
        low, high = self.snr_db
        snr = low + (high - low) * random_tensor(column, x, generator)
        level = heard.flatten(1).square().mean(dim=1).sqrt().view(column)
        return heard + level * 10 ** (-snr / 20) * random_tensor(x.shape, x, generator, normal=True)

    def _rooms(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One impulse response per clip: 1 at time 0, then decaying noise of energy ``wet``."""
        taps = max(int(self.room * x.shape[-1]), 2)
        t = torch.arange(taps, dtype=x.dtype, device=x.device)
        tail = random_tensor((len(x), taps), x, generator, normal=True) * torch.exp(
            -t / (self.decay * x.shape[-1])
        )
        tail[:, 0] = 0
        tail = tail * (self.wet / tail.square().sum(dim=1, keepdim=True).clamp_min(1e-12)).sqrt()
        tail[:, 0] = 1
        return tail.view(len(x), *[1] * (x.dim() - 2), taps)


def _convolve(x: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """Each clip convolved with its own impulse response (FFT, linear, cut to the clip's length)."""
    length = x.shape[-1] + responses.shape[-1] - 1
    spectrum = torch.fft.rfft(x, n=length) * torch.fft.rfft(responses, n=length)
    return torch.fft.irfft(spectrum, n=length)[..., : x.shape[-1]]
