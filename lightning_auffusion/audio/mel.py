"""Auffusion's log-mel spectrogram, computed exactly as the released code does, in batched torch.

Reflect-pad ``(n_fft - hop) / 2`` samples on both sides, STFT with ``center=False`` and a Hann window of
``win_length`` (zero-padded to ``n_fft``), magnitude ``sqrt(re^2 + im^2 + 1e-9)``, Slaney mel filterbank
with Slaney area normalisation, then ``ln(max(mel, clip_val))``. The same formula with HiFi-GAN's
numbers (22.05 kHz, 80 mels, hop 256) is what the original HiFi-GAN checkpoints expect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class MelConfig:
    """Log-mel parameters; the defaults are Auffusion's."""

    sample_rate: int = 16000
    n_fft: int = 2048
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 256
    f_min: float = 0.0
    f_max: float | None = 8000.0
    mel_scale: str = "slaney"  # "slaney" or "htk"
    mel_norm: str | None = "slaney"  # "slaney" (area normalisation) or None
    magnitude_eps: float = 1e-9
    clip_val: float = 1e-5
    peak_level: float = 0.95
    dtype: str = "float32"  # STFT precision: "float32" (as released, GPU friendly) or "float64" (reference)

    def __post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if (self.n_fft - self.hop_length) % 2:
            raise ValueError("n_fft - hop_length must be even so the reflect padding is symmetric")
        if self.mel_scale not in ("slaney", "htk"):
            raise ValueError(f"mel_scale must be 'slaney' or 'htk', got {self.mel_scale!r}")
        if self.mel_norm not in ("slaney", None):
            raise ValueError(f"mel_norm must be 'slaney' or None, got {self.mel_norm!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    @property
    def padding(self) -> int:
        return (self.n_fft - self.hop_length) // 2

    @property
    def log_floor(self) -> float:
        """The log-mel value of silence, ``ln(clip_val)``."""
        return float(np.log(self.clip_val))

    def num_frames(self, num_samples: int) -> int:
        return (num_samples + 2 * self.padding - self.n_fft) // self.hop_length + 1


def hz_to_mel(freq: np.ndarray, scale: str = "slaney") -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    linear = freq / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(freq >= 1000.0, log_part, linear)


def mel_to_hz(mels: np.ndarray, scale: str = "slaney") -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    linear = mels * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels - 15.0))
    return np.where(mels >= 15.0, log_part, linear)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: str = "slaney",
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular mel filters, shape (n_mels, n_fft // 2 + 1), in float64."""
    f_max = sample_rate / 2.0 if f_max is None else f_max
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2), scale)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


def peak_normalize(waveform: torch.Tensor, peak: float = 0.95, eps: float = 1e-8) -> torch.Tensor:
    """Scale each clip (last axis) so its absolute peak is ``peak``; silent clips stay silent.

    The released converter reads 16-bit PCM with scipy, divides by 32768 (which makes the samples
    float64), runs ``librosa.util.normalize(audio) * 0.95`` in float64 and only then casts to float32.
    So the division and the product run here in float64 and the result is rounded once to the
    waveform's dtype. Doing them in float32 rounds twice: the samples move by one ulp, and the FFT
    carries that into a log-mel error of up to ~3e-3 in bins near the log floor. (On MPS, which has no
    float64, the waveform's own dtype is used.)"""
    compute = waveform.dtype if waveform.device.type == "mps" else torch.float64
    x = waveform.to(compute)
    top = x.abs().amax(dim=-1, keepdim=True)
    return (x / top.clamp_min(eps) * peak * (top > eps)).to(waveform.dtype)


class LogMelSpectrogram(nn.Module):
    """Waveform (batch, samples) -> natural-log mel spectrogram (batch, n_mels, samples // hop).

    The STFT runs in ``config.dtype``. float32 is what the released code does; in bins whose energy is
    far below the clip's peak its FFT round-off moves the log-mel by up to ~1e-3, which float64 removes.
    The output is float32 either way.
    """

    def __init__(self, config: MelConfig | None = None, mel_group: int = 8) -> None:
        super().__init__()
        self.config = config or MelConfig()
        c = self.config
        basis = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.f_min, c.f_max, c.mel_scale, c.mel_norm)
        self.register_buffer("mel_basis", torch.from_numpy(basis), persistent=False)
        self.register_buffer("window", torch.hann_window(c.win_length, dtype=torch.float64), persistent=False)
        # the released converter's window: torch.hann_window(win) built in float32 (not a float64 one rounded)
        self.register_buffer(
            "window32", torch.hann_window(c.win_length, periodic=True, dtype=torch.float32), persistent=False
        )
        # Mel filters are narrow (about 1% of the dense filterbank is non-zero), so each group of
        # `mel_group` consecutive filters is multiplied only with the FFT bins it covers: the same sums
        # as the dense product for a few percent of the work.
        self.mel_spans: list[tuple[int, int]] = []
        for i, first in enumerate(range(0, c.n_mels, mel_group)):
            rows = basis[first : first + mel_group]
            bins = np.flatnonzero(rows.any(axis=0))
            lo, hi = (int(bins[0]), int(bins[-1]) + 1) if bins.size else (0, 0)
            self.register_buffer(f"mel_block_{i}", torch.from_numpy(rows[:, lo:hi].copy()), persistent=False)
            self.mel_spans.append((lo, hi))

    def magnitude(self, waveform: torch.Tensor) -> torch.Tensor:
        c = self.config
        squeeze = waveform.dim() == 1
        x = waveform[None] if squeeze else waveform
        x = x.to(getattr(torch, c.dtype))
        mode = "reflect" if x.shape[-1] > c.padding else "constant"
        x = F.pad(x[:, None], (c.padding, c.padding), mode=mode)[:, 0]
        spec = torch.stft(
            x,
            n_fft=c.n_fft,
            hop_length=c.hop_length,
            win_length=c.win_length,
            window=self.window32 if x.dtype == torch.float32 else self.window.to(x.dtype),
            center=False,
            return_complex=True,
        )
        mag = spec.real.square().addcmul_(spec.imag, spec.imag).add_(c.magnitude_eps).sqrt_()
        return mag[0] if squeeze else mag

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mag = self.magnitude(waveform)
        blocks = [
            getattr(self, f"mel_block_{i}").to(mag.dtype) @ mag[..., lo:hi, :]
            for i, (lo, hi) in enumerate(self.mel_spans)
        ]
        mel = torch.cat(blocks, dim=-2)
        return torch.log(mel.clamp_min(self.config.clip_val)).float()
