"""Log-mel spectrogram <-> 3-channel image in [-1, 1], the representation the SD VAE sees.

Three normalisations are supported:

* ``minmax`` (the released Auffusion code, what its published weights expect): a fixed range
  ``x = (logmel - lo) / (hi - lo)`` with ``lo = ln(1e-5)`` and ``hi = ln(200)``, clamped to [0, 1].
* ``meanstd`` (the paper's text): standardise with the dataset mean and std (scalars or one value per
  mel band, computed by ``python -m lightning_auffusion stats``), then map ``+-num_std`` standard
  deviations onto [0, 1] and clamp.
* ``riffusion`` (the Riffusion baseline as re-implemented in the paper, appendix B.3): each clip is min-max
  scaled by its *own* minimum and maximum and quantised to an 8-bit image (``to_uint8``; the float image is
  ``q / 255`` mapped to [-1, 1]). The clip's min and max are not stored, as in the released Riffusion, so the
  mapping is not invertible; the inverse assumes every clip spanned the fixed range ``[lo, hi]`` (the minmax
  mode's ``ln(1e-5)`` .. ``ln(200)`` by default, or a dataset's range) and maps ``q / 255`` onto it. A clip that
  did span ``[lo, hi]`` comes back within half an 8-bit step, ``(hi - lo) / 510``; any other clip also keeps
  that error *relative to its own range*, shifted and rescaled onto ``[lo, hi]``.

The mel axis is flipped (low frequencies at the bottom of the image), the single channel repeated three
times, and [0, 1] mapped to [-1, 1]. The inverse takes channel 0, so it is exact wherever no clamping
happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

IMAGE_MODES = ("minmax", "meanstd", "riffusion")


@dataclass
class ImageConfig:
    mode: str = "minmax"  # "minmax" (released code), "meanstd" (paper) or "riffusion" (per-clip, 8-bit baseline)
    lo: float = math.log(1e-5)
    hi: float = math.log(200.0)
    mean: float | list[float] | None = None
    std: float | list[float] | None = None
    num_std: float = 3.0
    channels: int = 3
    flip_mel: bool = True
    stats_file: str | None = None  # a stats JSON written by the `stats` subcommand; fills mean/std
    levels: int = 256  # riffusion: quantisation levels of the image (8 bits)

    def __post_init__(self) -> None:
        if self.mode not in IMAGE_MODES:
            raise ValueError(f"image mode must be one of {IMAGE_MODES}, got {self.mode!r}")
        if self.mode == "riffusion" and not 2 <= self.levels <= 256:
            raise ValueError(f"riffusion images need 2 <= levels <= 256 (8 bits at most), got {self.levels}")
        if self.mode in ("minmax", "riffusion") and not self.hi > self.lo:
            raise ValueError(f"image range needs hi > lo, got lo={self.lo}, hi={self.hi}")
        if self.mode == "meanstd" and self.stats_file is None and (self.mean is None or self.std is None):
            raise ValueError("image mode 'meanstd' needs mean and std, or stats_file from the `stats` subcommand")


def _load_stats(path: str) -> tuple[list[float], list[float]]:
    import json

    with open(path) as fh:
        stats = json.load(fh)
    try:
        return stats["mel_mean"], stats["mel_std"]
    except KeyError as err:
        raise ValueError(f"{path} is not a stats file from `lightning_auffusion stats` (missing {err})") from None


class SpectrogramImage(nn.Module):
    """Maps log-mel (batch, n_mels, frames) to images (batch, channels, n_mels, frames) and back."""

    def __init__(self, config: ImageConfig | None = None, n_mels: int = 256) -> None:
        super().__init__()
        self.config = c = config or ImageConfig()
        mean, std = (c.mean, c.std)
        if c.mode == "meanstd" and c.stats_file is not None:
            mean, std = _load_stats(c.stats_file)
        if c.mode == "meanstd":
            mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1)
            std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1)
            if mean_t.shape[0] not in (1, n_mels) or std_t.shape[0] not in (1, n_mels):
                raise ValueError(f"mean/std must be scalars or have {n_mels} values (one per mel band)")
            if (std_t <= 0).any():
                raise ValueError("std must be positive in every mel band")
            lo = mean_t - c.num_std * std_t
            scale = 2.0 * c.num_std * std_t
        else:
            lo = torch.tensor([[c.lo]])
            scale = torch.tensor([[c.hi - c.lo]])
        self.register_buffer("lo", lo)
        self.register_buffer("scale", scale)

    def to_unit(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel -> [0, 1] grey image (batch, n_mels, frames), mel axis flipped if configured; for mode
        riffusion per-clip min-max scaled and quantised to ``levels`` values."""
        if self.config.mode == "riffusion":
            return self.quantised(logmel).to(logmel.dtype) / (self.config.levels - 1)
        unit = ((logmel - self.lo) / self.scale).clamp(0.0, 1.0)
        return unit.flip(-2) if self.config.flip_mel else unit

    def quantised(self, logmel: torch.Tensor) -> torch.Tensor:
        """Riffusion's integer grey image (batch, n_mels, frames) in [0, levels - 1], uint8: each clip's own
        min-max range (a constant clip gives zeros), rounded to the nearest level."""
        low = logmel.amin(dim=(-2, -1), keepdim=True)
        span = logmel.amax(dim=(-2, -1), keepdim=True) - low
        unit = torch.where(span > 0, (logmel - low) / span.clamp_min(torch.finfo(logmel.dtype).tiny), 0.0)
        q = torch.round(unit.clamp(0.0, 1.0) * (self.config.levels - 1)).to(torch.uint8)
        return q.flip(-2) if self.config.flip_mel else q

    def to_uint8(self, logmel: torch.Tensor) -> torch.Tensor:
        """The stored 8-bit image (batch, channels, n_mels, frames) of mode riffusion."""
        if self.config.mode != "riffusion":
            raise ValueError(f"to_uint8 is the riffusion mode's stored image; this mapping is {self.config.mode!r}")
        return self.quantised(logmel).unsqueeze(-3).repeat_interleave(self.config.channels, dim=-3)

    def from_unit(self, unit: torch.Tensor) -> torch.Tensor:
        if self.config.flip_mel:
            unit = unit.flip(-2)
        return unit * self.scale + self.lo

    def to_image(self, logmel: torch.Tensor) -> torch.Tensor:
        unit = self.to_unit(logmel)
        return (unit * 2.0 - 1.0).unsqueeze(-3).repeat_interleave(self.config.channels, dim=-3)

    def to_logmel(self, image: torch.Tensor) -> torch.Tensor:
        """Image -> log-mel from channel 0; mode riffusion first rounds it to its 8-bit levels (as Riffusion
        saves the generated image) and maps them onto the fixed ``[lo, hi]``."""
        unit = ((image.select(-3, 0) + 1.0) / 2.0).clamp(0.0, 1.0)
        if self.config.mode == "riffusion":
            unit = torch.round(unit * (self.config.levels - 1)) / (self.config.levels - 1)
        return self.from_unit(unit)

    forward = to_image
