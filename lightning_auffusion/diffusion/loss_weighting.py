"""Min-SNR loss weighting and offset noise, the two switches of diffusers' text-to-image training example.

* Min-SNR-gamma (Hang et al. 2023, https://arxiv.org/abs/2303.09556): each sample's MSE is weighted by
  ``min(SNR(t), gamma) / SNR(t)`` for epsilon prediction and ``min(SNR(t), gamma) / (SNR(t) + 1)`` for
  v-prediction, where ``SNR(t) = alpha_bar_t / (1 - alpha_bar_t)``; 5.0 is the paper's recommended gamma.
* Offset noise (Guttenberg 2023): the training noise gets ``offset * randn(B, C, 1, 1)`` added, a per-sample,
  per-channel constant, so the model can learn to change a latent's mean (very quiet or loud clips).

Both are off in the Auffusion recipe (plain MSE on plain Gaussian noise).
"""

from __future__ import annotations

import torch

from lightning_auffusion.errors import UserInputError


def check_switches(snr_gamma: float | None, noise_offset: float) -> None:
    if snr_gamma is not None and not float(snr_gamma) > 0:
        raise UserInputError(
            f"snr_gamma must be positive (5.0 in the Min-SNR paper) or null to turn it off, got {snr_gamma!r}"
        )
    if float(noise_offset) < 0:
        raise UserInputError(f"noise_offset must be >= 0 (0 turns it off; 0.05-0.1 is usual), got {noise_offset!r}")


def snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``alpha_bar_t / (1 - alpha_bar_t)`` of each timestep, float32 on the timesteps' device."""
    alpha_bar = alphas_cumprod.to(device=timesteps.device, dtype=torch.float32)[timesteps]
    return alpha_bar / (1.0 - alpha_bar)


def min_snr_weights(
    alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float, prediction_type: str
) -> torch.Tensor:
    """Per-sample loss weights ``min(snr, gamma) / snr`` (epsilon) or ``min(snr, gamma) / (snr + 1)`` (v_prediction)."""
    ratio = snr(alphas_cumprod, timesteps)
    clipped = torch.clamp(ratio, max=float(gamma))
    if prediction_type == "epsilon":
        return clipped / ratio
    if prediction_type == "v_prediction":
        return clipped / (ratio + 1.0)
    raise UserInputError(f"Min-SNR weighting supports epsilon or v_prediction, not {prediction_type!r}")


def offset_noise(noise: torch.Tensor, offset: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``noise + offset * randn(B, C, 1, 1)``; ``noise`` itself when ``offset`` is 0."""
    if not offset:
        return noise
    shift = torch.randn((*noise.shape[:2], 1, 1), generator=generator, device=noise.device, dtype=noise.dtype)
    return noise + float(offset) * shift


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error; with ``weights`` (B,), each sample's mean error is weighted before the batch mean."""
    error = (pred.float() - target.float()) ** 2
    if weights is None:
        return error.mean()
    per_sample = error.reshape(error.shape[0], -1).mean(dim=1)
    return (per_sample * weights.to(per_sample)).mean()
