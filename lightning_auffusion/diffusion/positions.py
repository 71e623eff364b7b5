"""Position channels: where along the clip each latent frame sits, and where in its caption each token sits.

Convolutions and attention without positional embeddings know where a latent column lies in time only
through the zero padding at the borders, which a deep U-Net (SD-1.5 at 32 x 128 latents, 4 x 16 at the
bottom) sees from everywhere but a small one does not. With ``frame_position_channels = 2k`` the U-Net input
gets ``k`` sine/cosine pairs of the normalised frame position ``x`` in [0, 1) (frequencies pi, 2 pi, 4 pi, ...),
so that "the second of three events" has a place to go. 0 (the default) is Auffusion's recipe.

Token-position channels (``EncoderSpec.token_position_channels``) are the same features of each caption token's
relative position ``i / n`` among the caption's ``n`` tokens, appended to the encoder's output before its adapter.
Captions name their events in the order they sound, so a token's relative place in the caption and its event's
place in the clip agree; with both kinds of channels, cross-attention can match the two (a frame at ``x`` attends
to the tokens near ``x`` of its caption) instead of having to count the caption's events from word embeddings.
"""

from __future__ import annotations

import math

import torch

from lightning_auffusion.errors import UserInputError


def check_position_channels(channels: int, name: str = "frame_position_channels") -> int:
    """``channels`` as an int; refused (``name`` says which option) unless an even number >= 0."""
    if channels < 0 or channels % 2:
        raise UserInputError(f"{name} must be an even number >= 0 (sine/cosine pairs), got {channels}")
    return int(channels)


def position_encoding(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``x.shape + (channels,)`` features of positions ``x`` in [0, 1): pair ``j`` is sin / cos of ``pi * 2**j * x``."""
    check_position_channels(channels, "position channels")
    rows = []
    for j in range(channels // 2):
        angle = math.pi * (2**j) * x.float()
        rows += [torch.sin(angle), torch.cos(angle)]
    if not rows:
        return x.new_zeros(*x.shape, 0, dtype=torch.float32)
    return torch.stack(rows, dim=-1)


def frame_position_features(channels: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(channels, height, width) features of the frame positions x = frame / width (``position_encoding``)."""
    x = torch.arange(width, device=device, dtype=torch.float32) / width
    features = position_encoding(x, channels).T  # (channels, width)
    return features[:, None, :].expand(-1, height, -1).to(dtype)


def with_frame_positions(latents: torch.Tensor, channels: int) -> torch.Tensor:
    """``latents`` (B, C, H, W) with ``channels`` frame-position channels appended (unchanged for 0)."""
    if not channels:
        return latents
    b, _, h, w = latents.shape
    features = frame_position_features(channels, h, w, latents.device, latents.dtype)
    return torch.cat([latents, features.unsqueeze(0).expand(b, -1, -1, -1)], dim=1)


def with_token_positions(hidden: torch.Tensor, channels: int) -> torch.Tensor:
    """``hidden`` (B, L, d), zero rows after each caption's tokens, with ``channels`` token-position features
    appended: token ``i`` of a caption of ``n`` tokens gets ``position_encoding(i / n)``; padding rows stay zero."""
    if not channels:
        return hidden
    valid = hidden.detach().abs().amax(dim=-1) > 0  # (B, L): the caption's tokens (padding is exact zeros)
    lengths = valid.sum(dim=1, keepdim=True).clamp(min=1)
    index = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
    features = position_encoding(index / lengths, channels) * valid.unsqueeze(-1)
    return torch.cat([hidden, features.to(hidden.dtype)], dim=-1)
