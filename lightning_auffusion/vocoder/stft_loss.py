"""Multi-resolution STFT distance between two waveforms (the vocoder's validation measure).

At each resolution (n_fft, hop, window) the distance is the spectral convergence
``||S_ref - S_est||_F / ||S_ref||_F`` plus the mean absolute difference of log magnitudes; the result is
the mean over resolutions. Magnitudes ignore phase, so a vocoder is not penalised for a phase that
differs from the reference but sounds the same.
"""

from __future__ import annotations

import torch

# (n_fft, hop, window) triples; the common multi-resolution STFT set
DEFAULT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((512, 50, 240), (1024, 120, 600), (2048, 240, 1200))


def stft_magnitude(audio: torch.Tensor, n_fft: int, hop: int, win: int, eps: float = 1e-7) -> torch.Tensor:
    """|STFT| (batch, bins, frames) with a centred Hann window, floored at ``eps``."""
    window = torch.hann_window(win, device=audio.device, dtype=torch.float32)
    spec = torch.stft(audio.float(), n_fft, hop, win, window, center=True, return_complex=True)
    return spec.abs().clamp_min(eps)


def stft_distance_terms(
    estimate: torch.Tensor, reference: torch.Tensor, n_fft: int, hop: int, win: int, eps: float = 1e-7
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip spectral convergence and log-magnitude L1 at one resolution; inputs (batch, samples)."""
    est = stft_magnitude(estimate, n_fft, hop, win, eps)
    ref = stft_magnitude(reference, n_fft, hop, win, eps)
    sc = torch.linalg.vector_norm(ref - est, dim=(-2, -1)) / torch.linalg.vector_norm(ref, dim=(-2, -1)).clamp_min(eps)
    log_l1 = (ref.log() - est.log()).abs().mean(dim=(-2, -1))
    return sc, log_l1


def multi_resolution_stft_distance(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    resolutions: tuple[tuple[int, int, int], ...] | list[list[int]] = DEFAULT_RESOLUTIONS,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Per-clip distance (batch,) between waveforms of shape (batch, samples) or (batch, 1, samples)."""
    estimate, reference = _as_batch(estimate), _as_batch(reference)
    if estimate.shape != reference.shape:
        n = min(estimate.shape[-1], reference.shape[-1])
        estimate, reference = estimate[..., :n], reference[..., :n]
    total = estimate.new_zeros(estimate.shape[0], dtype=torch.float32)
    for n_fft, hop, win in resolutions:
        sc, log_l1 = stft_distance_terms(estimate, reference, int(n_fft), int(hop), int(win), eps)
        total = total + sc + log_l1
    return total / len(resolutions)


def _as_batch(audio: torch.Tensor) -> torch.Tensor:
    if audio.dim() == 3:
        if audio.shape[1] != 1:
            raise ValueError(f"expected mono audio (batch, 1, samples), got {tuple(audio.shape)}")
        audio = audio[:, 0]
    if audio.dim() == 1:
        audio = audio[None]
    return audio
