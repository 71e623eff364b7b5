"""Frame-position channels: where along the clip each latent frame sits, as extra U-Net input channels.

Convolutions and attention without positional embeddings know where a latent column lies in time only
through the zero padding at the borders, which a deep U-Net (SD-1.5 at 32 x 128 latents, 4 x 16 at the
bottom) sees from everywhere but a small one does not. With ``frame_position_channels = 2k`` the U-Net input
gets ``k`` sine/cosine pairs of the normalised frame position ``x`` in [0, 1) (frequencies pi, 2 pi, 4 pi, ...),
so that "the second of three events" has a place to go. 0 (the default) is Auffusion's recipe.
"""

from __future__ import annotations

import math

import torch


def check_position_channels(channels: int) -> int:
    if channels < 0 or channels % 2:
        raise ValueError(f"frame_position_channels must be an even number >= 0 (sine/cosine pairs), got {channels}")
    return int(channels)


def frame_position_features(channels: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(channels, height, width) features: pair ``j`` is sin / cos of ``pi * 2**j * x``, x = frame / width."""
    check_position_channels(channels)
    x = torch.arange(width, device=device, dtype=torch.float32) / width
    rows = []
    for j in range(channels // 2):
        angle = math.pi * (2**j) * x
        rows += [torch.sin(angle), torch.cos(angle)]
    if not rows:
        return torch.zeros(0, height, width, device=device, dtype=dtype)
    return torch.stack(rows)[:, None, :].expand(-1, height, -1).to(dtype)


def with_frame_positions(latents: torch.Tensor, channels: int) -> torch.Tensor:
    """``latents`` (B, C, H, W) with ``channels`` frame-position channels appended (unchanged for 0)."""
    if not channels:
        return latents
    b, _, h, w = latents.shape
    features = frame_position_features(channels, h, w, latents.device, latents.dtype)
    return torch.cat([latents, features.unsqueeze(0).expand(b, -1, -1, -1)], dim=1)
