"""Griffin-Lim from a natural-log mel spectrogram, with the front end's exact framing.

The mel is mapped back to a linear magnitude with the pseudo-inverse of the mel filterbank (negative
values clipped to zero), then the phase is estimated by alternating projections, optionally with the
"fast Griffin-Lim" momentum. STFT and inverse STFT use the same reflect padding, ``center=False`` framing
and zero-padded Hann window as :class:`~lightning_auffusion.audio.LogMelSpectrogram`, so frame ``t`` of the
estimate lines up with frame ``t`` of the input and ``frames`` mel frames give ``frames * hop`` samples.
This is the reference the vocoder is validated against and the sampling code's fallback when no
vocoder is configured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_auffusion.audio.mel import MelConfig, mel_filterbank


@dataclass
class GriffinLimConfig:
    n_iter: int = 32
    momentum: float = 0.99  # 0 = classic Griffin-Lim; 0.99 = fast Griffin-Lim (librosa's default)
    init: str = "random"  # initial phase: "random" (seeded) or "zeros"
    seed: int = 0
    envelope_floor: float = 1e-8  # floor of the window envelope in the overlap-add division

    def __post_init__(self) -> None:
        if self.n_iter < 0:
            raise ValueError(f"n_iter must be >= 0, got {self.n_iter}")
        if self.init not in ("random", "zeros"):
            raise ValueError(f"init must be 'random' or 'zeros', got {self.init!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")


class GriffinLim(nn.Module):
    """Log-mel (batch, n_mels, frames) -> waveform (batch, frames * hop)."""

    def __init__(self, mel: MelConfig | None = None, config: GriffinLimConfig | None = None) -> None:
        super().__init__()
        self.mel_config = m = mel or MelConfig()
        self.config = config or GriffinLimConfig()
        basis = mel_filterbank(m.sample_rate, m.n_fft, m.n_mels, m.f_min, m.f_max, m.mel_scale, m.mel_norm)
        self.register_buffer("inverse_basis", torch.from_numpy(np.linalg.pinv(basis)).float(), persistent=False)
        window = F.pad(
            torch.hann_window(m.win_length), ((m.n_fft - m.win_length) // 2, (m.n_fft - m.win_length + 1) // 2)
        )
        self.register_buffer("window", window, persistent=False)  # zero-padded to n_fft, as torch.stft does

    def mel_to_magnitude(self, logmel: torch.Tensor) -> torch.Tensor:
        """Linear magnitude (batch, n_fft // 2 + 1, frames) whose mel is closest to exp(logmel)."""
        return torch.matmul(self.inverse_basis, logmel.float().exp()).clamp_min(0.0)

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        m = self.mel_config
        mode = "reflect" if audio.shape[-1] > m.padding else "constant"
        x = F.pad(audio[:, None], (m.padding, m.padding), mode=mode)[:, 0]
        return torch.stft(x, m.n_fft, m.hop_length, m.n_fft, self.window, center=False, return_complex=True)

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        """Weighted overlap-add inverse of :meth:`stft`: (batch, bins, frames) -> (batch, frames * hop)."""
        m = self.mel_config
        frames = spec.shape[-1]
        chunks = torch.fft.irfft(spec, n=m.n_fft, dim=1) * self.window[None, :, None]  # (batch, n_fft, frames)
        length = (frames - 1) * m.hop_length + m.n_fft
        fold = dict(output_size=(1, length), kernel_size=(1, m.n_fft), stride=(1, m.hop_length))
        audio = F.fold(chunks, **fold)[:, 0, 0]
        squared = (self.window**2)[None, :, None].expand(1, -1, frames)
        envelope = F.fold(squared, **fold)[:, 0, 0]
        audio = audio / envelope.clamp_min(self.config.envelope_floor)
        return audio[:, m.padding : m.padding + frames * m.hop_length]

    def initial_phase(self, magnitude: torch.Tensor) -> torch.Tensor:
        if self.config.init == "zeros":
            return torch.ones_like(magnitude, dtype=torch.complex64)
        gen = torch.Generator().manual_seed(self.config.seed)
        angle = torch.rand(magnitude.shape, generator=gen) * (2 * np.pi)
        return torch.polar(torch.ones_like(angle), angle).to(magnitude.device)

    @torch.no_grad()
    def reconstruct(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Phase retrieval from a linear magnitude (batch, bins, frames)."""
        c = self.config
        angles = self.initial_phase(magnitude)
        previous = None
        blend = c.momentum / (1.0 + c.momentum)
        for _ in range(c.n_iter):
            rebuilt = self.stft(self.istft(magnitude * angles))
            angles = rebuilt if previous is None else rebuilt - blend * previous
            angles = angles / (angles.abs() + 1e-16)
            previous = rebuilt
        return self.istft(magnitude * angles)

    @torch.no_grad()
    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        if logmel.dim() == 2:
            logmel = logmel[None]
        if logmel.shape[1] != self.mel_config.n_mels:
            raise ValueError(f"expected a log-mel (batch, {self.mel_config.n_mels}, frames), got {tuple(logmel.shape)}")
        return self.reconstruct(self.mel_to_magnitude(logmel))


def griffin_lim(
    logmel: torch.Tensor, mel: MelConfig | None = None, n_iter: int = 32, momentum: float = 0.99
) -> torch.Tensor:
    """One-call Griffin-Lim: log-mel (batch, n_mels, frames) -> waveform (batch, frames * hop)."""
    module = GriffinLim(mel, GriffinLimConfig(n_iter=n_iter, momentum=momentum)).to(logmel.device)
    return module(logmel)
