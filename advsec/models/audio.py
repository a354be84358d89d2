"""Spoken-digit models that take raw waveforms ``(N, 1, T)``, so attacks perturb the waveform itself.

``m5`` convolves the waveform directly (Dai et al. 2017). ``logmel-cnn`` computes a log-mel spectrogram
inside the model with ``torch.stft`` and a mel filterbank built here, then classifies it as an image: the
features stay differentiable, so gradient attacks still reach the waveform. (torchaudio would provide the
filterbank, but it has no CPU build for this torch, so advsec does not depend on it.)

Both augment their input while training, never once deployed: a random circular shift of up to
``max_shift`` of the clip and a random gain, so a digit is recognized wherever and however loudly it is
said. The draws come from torch's global generator, which training seeds.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ShiftAndGain(nn.Module):
    """In training mode, shift each clip circularly by up to ``max_shift`` of its length and scale it by a
    gain drawn from ``gains``, clipped to the waveform bounds [-1, 1]; the identity otherwise."""

    def __init__(self, max_shift: float = 0.1, gains: tuple[float, float] = (0.5, 1.5)) -> None:
        super().__init__()
        self.max_shift, self.gains = max_shift, gains

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        reach = int(self.max_shift * x.shape[-1])
        shifts = torch.randint(-reach, reach + 1, (len(x),)).tolist()
        shifted = torch.stack([clip.roll(shift, dims=-1) for clip, shift in zip(x, shifts, strict=True)])
        low, high = self.gains
        gain = low + (high - low) * torch.rand(len(x), 1, 1, device=x.device)
        return (shifted * gain).clamp(-1, 1)


def _block(conv: nn.Module, channels: int, pool: nn.Module) -> list[nn.Module]:
    norm = nn.BatchNorm1d(channels) if isinstance(conv, nn.Conv1d) else nn.BatchNorm2d(channels)
    return [conv, norm, nn.ReLU(), pool]


class M5(nn.Sequential):
    """Dai et al.'s M5: a wide strided first convolution on the raw waveform, three more, global pooling."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 32) -> None:
        channels, _ = input_shape
        super().__init__(
            ShiftAndGain(),
            *_block(nn.Conv1d(channels, width, 80, stride=4), width, nn.MaxPool1d(4)),
            *_block(nn.Conv1d(width, width, 3), width, nn.MaxPool1d(4)),
            *_block(nn.Conv1d(width, 2 * width, 3), 2 * width, nn.MaxPool1d(4)),
            *_block(nn.Conv1d(2 * width, 4 * width, 3), 4 * width, nn.AdaptiveAvgPool1d(1)),
            nn.Flatten(),
            nn.Linear(4 * width, num_classes),
        )


def mel_filterbank(sample_rate: int, n_fft: int, mels: int) -> torch.Tensor:
    """Triangular filters ``(mels, n_fft // 2 + 1)`` evenly spaced on the mel scale (HTK's formula)."""

    def mel(hz: float) -> float:
        return 2595 * math.log10(1 + hz / 700)

    edges_mel = torch.linspace(0, mel(sample_rate / 2), mels + 2)
    edges = 700 * (10 ** (edges_mel / 2595) - 1)
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - low) / (centre - low)
    falling = (high - bins) / (high - centre)
    return rising.minimum(falling).clamp_min(0)


class LogMel(nn.Module):
    """Waveform ``(N, 1, T)`` → log-mel spectrogram ``(N, 1, mels, frames)``, differentiable throughout."""

    def __init__(self, sample_rate: int = 8000, n_fft: int = 256, hop: int = 128, mels: int = 40) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("filters", mel_filterbank(sample_rate, n_fft, mels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(x.flatten(0, 1), self.n_fft, self.hop, window=self.window, return_complex=True)
        power = spectrum.real.square() + spectrum.imag.square()
        return torch.log(self.filters @ power + 1e-6).unsqueeze(1)


class LogMelCNN(nn.Sequential):
    """Log-mel features computed inside the model (8 kHz audio), then a small 2-D CNN over mels × frames."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> None:
        super().__init__(
            ShiftAndGain(),
            LogMel(),
            nn.BatchNorm2d(1),  # standardizes the log energies, whose scale depends on the recording level
            *_block(nn.Conv2d(1, width, 3, padding=1), width, nn.MaxPool2d(2)),
            *_block(nn.Conv2d(width, 2 * width, 3, padding=1), 2 * width, nn.MaxPool2d(2)),
            *_block(nn.Conv2d(2 * width, 4 * width, 3, padding=1), 4 * width, nn.AdaptiveAvgPool2d(1)),
            nn.Flatten(),
            nn.Linear(4 * width, num_classes),
        )
