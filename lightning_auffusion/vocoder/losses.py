"""HiFi-GAN's training losses: least-squares GAN, feature matching and mel-spectrogram L1.

The weights (mel x 45, feature matching x 2) are applied by ``VocoderModule`` from its config, so every
function here returns the unweighted sum over discriminators.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(
    real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """LSGAN discriminator loss: sum over discriminators of mean((1 - D(real))^2) + mean(D(fake)^2).

    Returns the total and the per-discriminator real and fake terms.
    """
    if len(real_logits) != len(fake_logits):
        raise ValueError(f"got {len(real_logits)} real and {len(fake_logits)} fake discriminator outputs")
    real_terms = [torch.mean((1.0 - r.float()) ** 2) for r in real_logits]
    fake_terms = [torch.mean(f.float() ** 2) for f in fake_logits]
    total = torch.stack(real_terms).sum() + torch.stack(fake_terms).sum()
    return total, real_terms, fake_terms


def generator_adversarial_loss(fake_logits: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """LSGAN generator loss: sum over discriminators of mean((1 - D(G(mel)))^2)."""
    terms = [torch.mean((1.0 - f.float()) ** 2) for f in fake_logits]
    return torch.stack(terms).sum(), terms


def feature_matching_loss(
    real_features: list[list[torch.Tensor]], fake_features: list[list[torch.Tensor]]
) -> torch.Tensor:
    """Sum over discriminators and their layers of mean |D_l(real) - D_l(fake)| (real features detached)."""
    total = None
    for real_maps, fake_maps in zip(real_features, fake_features, strict=True):
        for r, f in zip(real_maps, fake_maps, strict=True):
            term = torch.mean(torch.abs(r.detach().float() - f.float()))
            total = term if total is None else total + term
    if total is None:
        raise ValueError("feature matching needs at least one feature map")
    return total


def mel_l1_loss(real_logmel: torch.Tensor, fake_logmel: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two log-mel spectrograms of the same shape."""
    if real_logmel.shape != fake_logmel.shape:
        raise ValueError(f"log-mel shapes differ: {tuple(real_logmel.shape)} vs {tuple(fake_logmel.shape)}")
    return F.l1_loss(fake_logmel.float(), real_logmel.float())
