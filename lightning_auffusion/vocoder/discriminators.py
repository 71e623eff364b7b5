"""HiFi-GAN's multi-period and multi-scale discriminators.

Each discriminator returns its flattened logits and the list of its intermediate feature maps (used by
the feature-matching loss). Names follow the original implementation (``discriminators.N.convs.M``,
``discriminators.N.conv_post``, ``meanpools.N``) so its ``do_*`` checkpoints map one-to-one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from lightning_auffusion.vocoder.config import DiscriminatorConfig

Outputs = tuple[
    list[torch.Tensor], list[list[torch.Tensor]]
]  # logits per discriminator, feature maps per discriminator


def run_conv_stack(
    x: torch.Tensor, convs: nn.ModuleList, conv_post: nn.Module, slope: float
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv stack + output conv: (flattened logits, every layer's activations for feature matching)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), slope)
        features.append(x)
    x = conv_post(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """Reshapes audio (B, 1, T) to (B, 1, T/p, p) and applies (k x 1) 2-D convs, so each column sees every p-th sample."""

    def __init__(self, period: int, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.period = period
        self.slope = config.lrelu_slope
        k, s = config.period_kernel_size, config.period_stride
        pad = ((k - 1) // 2, 0)
        channels = [1] + list(config.period_channels)
        layers = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            stride = (1, 1) if i == len(channels) - 2 else (s, 1)  # the last conv keeps the resolution
            layers.append(weight_norm(nn.Conv2d(c_in, c_out, (k, 1), stride, padding=pad)))
        self.convs = nn.ModuleList(layers)
        self.conv_post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = audio.shape
        if t % self.period:
            pad = self.period - t % self.period
            audio = F.pad(audio, (0, pad), mode="reflect" if t > pad else "constant")
            t = t + pad
        return run_conv_stack(audio.view(b, c, t // self.period, self.period), self.convs, self.conv_post, self.slope)


class ScaleDiscriminator(nn.Module):
    """Grouped strided 1-D convs over raw (or average-pooled) audio."""

    def __init__(self, config: DiscriminatorConfig, use_spectral_norm: bool = False) -> None:
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        self.slope = config.lrelu_slope
        channels = [1] + list(config.scale_channels)
        self.convs = nn.ModuleList(
            norm(nn.Conv1d(c_in, c_out, k, s, groups=g, padding=(k - 1) // 2))
            for c_in, c_out, k, s, g in zip(
                channels[:-1], channels[1:], config.scale_kernel_sizes, config.scale_strides, config.scale_groups
            )
        )
        self.conv_post = norm(nn.Conv1d(channels[-1], 1, 3, 1, padding=1))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return run_conv_stack(audio, self.convs, self.conv_post, self.slope)


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        config = config or DiscriminatorConfig()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, config) for p in config.periods)

    def forward(self, audio: torch.Tensor) -> Outputs:
        logits, features = [], []
        for disc in self.discriminators:
            out, feats = disc(audio)
            logits.append(out)
            features.append(feats)
        return logits, features


class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` discriminators on audio average-pooled by 1, 2, 4, ...; spectral norm on the first."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        config = config or DiscriminatorConfig()
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(config, use_spectral_norm=(i == 0)) for i in range(config.num_scales)
        )
        self.meanpools = nn.ModuleList(nn.AvgPool1d(4, 2, padding=2) for _ in range(max(config.num_scales - 1, 0)))

    def forward(self, audio: torch.Tensor) -> Outputs:
        logits, features = [], []
        for i, disc in enumerate(self.discriminators):
            if i > 0:
                audio = self.meanpools[i - 1](audio)
            out, feats = disc(audio)
            logits.append(out)
            features.append(feats)
        return logits, features
