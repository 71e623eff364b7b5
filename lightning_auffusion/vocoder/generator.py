"""HiFi-GAN generator: log-mel (batch, n_mels, frames) -> waveform (batch, 1, frames * hop).

Transposed convolutions upsample by ``upsample_rates`` (their product is the hop); after each one a
multi-receptive-field fusion averages the outputs of ``len(resblock_kernel_sizes)`` residual blocks of
different kernel sizes and dilations. Every convolution carries weight normalisation (torch's
parametrization API) while training; ``remove_weight_norm()`` folds it into plain weights for inference.

Module and parameter names follow the original implementation (``conv_pre``, ``ups.N``,
``resblocks.N.convs1.M`` / ``convs2.M`` / ``convs.M``, ``conv_post``), so its checkpoints map one-to-one
(see ``checkpoint.py`` for the ``weight_g`` / ``weight_v`` renaming).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from lightning_auffusion.vocoder.config import GeneratorConfig


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size - 1) * dilation // 2


def _normal_init(module: nn.Module, std: float) -> None:
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        nn.init.normal_(module.weight, 0.0, std)


def _conv(channels: int, kernel_size: int, dilation: int, std: float) -> nn.Conv1d:
    conv = nn.Conv1d(channels, channels, kernel_size, 1, dilation=dilation, padding=same_padding(kernel_size, dilation))
    _normal_init(conv, std)
    return weight_norm(conv)


def remove_weight_norm_from(module: nn.Module) -> int:
    """Fold every weight-norm parametrization under ``module`` into a plain weight; returns how many."""
    count = 0
    for child in list(module.modules()):
        if parametrize.is_parametrized(child, "weight"):
            # torch re-registers the folded weight as a buffer when called under no_grad or on frozen
            # weights; compute it here and register a Parameter either way
            requires_grad = any(p.requires_grad for p in child.parametrizations["weight"].parameters())
            with torch.no_grad():
                weight = child.weight.detach().clone()
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
            child._parameters.pop("weight", None)
            child._buffers.pop("weight", None)
            child.weight = nn.Parameter(weight, requires_grad=requires_grad)
            count += 1
    return count


class ResBlock1(nn.Module):
    """Per dilation d: x + conv(lrelu(conv_d(lrelu(x)))) with a dilated then an undilated conv."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int], slope: float, std: float) -> None:
        super().__init__()
        self.slope = slope
        self.convs1 = nn.ModuleList([_conv(channels, kernel_size, d, std) for d in dilations])
        self.convs2 = nn.ModuleList([_conv(channels, kernel_size, 1, std) for _ in dilations])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, self.slope)), self.slope))
        return x


class ResBlock2(nn.Module):
    """Per dilation d: x + conv_d(lrelu(x)), one conv per dilation (HiFi-GAN V3)."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int], slope: float, std: float) -> None:
        super().__init__()
        self.slope = slope
        self.convs = nn.ModuleList([_conv(channels, kernel_size, d, std) for d in dilations])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, self.slope))
        return x


def _upsampler(c_in: int, c_out: int, kernel: int, rate: int, std: float) -> nn.ConvTranspose1d:
    # output length = rate * input length: padding (k - u) / 2, or one more plus an output pad when k - u is odd
    excess = kernel - rate
    padding, output_padding = (excess // 2, 0) if excess % 2 == 0 else (excess // 2 + 1, 1)
    up = nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=padding, output_padding=output_padding)
    _normal_init(up, std)
    return weight_norm(up)


class HifiGanGenerator(nn.Module):
    """HiFi-GAN generator built from a :class:`GeneratorConfig` (V1/V2/V3 family)."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or GeneratorConfig()
        self.num_kernels = len(c.resblock_kernel_sizes)
        self.conv_pre = weight_norm(
            nn.Conv1d(
                c.num_mels,
                c.upsample_initial_channel,
                c.conv_pre_kernel_size,
                1,
                padding=same_padding(c.conv_pre_kernel_size),
            )
        )
        block = ResBlock1 if c.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = c.upsample_initial_channel
        for rate, kernel in zip(c.upsample_rates, c.upsample_kernel_sizes):
            self.ups.append(_upsampler(channels, channels // 2, kernel, rate, c.init_std))
            channels //= 2
            for k, dilations in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes):
                self.resblocks.append(block(channels, k, dilations, c.lrelu_slope, c.init_std))
        post = nn.Conv1d(channels, 1, c.conv_post_kernel_size, 1, padding=same_padding(c.conv_post_kernel_size))
        _normal_init(post, c.init_std)
        self.conv_post = weight_norm(post)

    @property
    def hop_length(self) -> int:
        return self.config.hop_size

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def has_weight_norm(self) -> bool:
        return parametrize.is_parametrized(self.conv_pre, "weight")

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel (batch, n_mels, frames) -> waveform (batch, 1, frames * hop) in [-1, 1]."""
        if logmel.dim() == 2:
            logmel = logmel[None]
        if logmel.dim() != 3 or logmel.shape[1] != self.config.num_mels:
            raise ValueError(
                f"vocoder expects a log-mel of shape (batch, {self.config.num_mels}, frames), got {tuple(logmel.shape)}"
            )
        x = self.conv_pre(logmel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, self.config.lrelu_slope))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            fused = blocks[0](x)
            for block in blocks[1:]:
                fused = fused + block(x)
            x = fused / self.num_kernels
        x = self.conv_post(F.leaky_relu(x, self.config.post_lrelu_slope))
        return torch.tanh(x)

    def remove_weight_norm(self) -> HifiGanGenerator:
        """Fold weight normalisation into the weights (inference; output unchanged). Returns self."""
        remove_weight_norm_from(self)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
