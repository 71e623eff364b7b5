"""HiFi-GAN generator and discriminator settings.

``GeneratorConfig`` uses the field names of HiFi-GAN's ``config.json`` (the file the original recipe and
the released Auffusion ``vocoder/`` folder ship), so a config read from either can be written back
unchanged and read by their loaders. Its defaults are a V1-size generator at Auffusion's mel settings
(16 kHz, 256 mels, hop 160 = 5 x 4 x 2 x 2 x 2).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_auffusion.audio.mel import MelConfig
from lightning_auffusion.errors import MissingInputError, UserInputError

# keys of a HiFi-GAN config.json that only concern its training script; kept when read, never used
TRAINING_ONLY_KEYS = (
    "num_gpus",
    "batch_size",
    "learning_rate",
    "adam_b1",
    "adam_b2",
    "lr_decay",
    "seed",
    "segment_size",
    "num_freq",
    "fmax_for_loss",
    "num_workers",
    "dist_config",
)


@dataclass
class GeneratorConfig:
    """HiFi-GAN generator architecture plus the mel settings it was trained on."""

    resblock: str = "1"  # "1": two dilated convs per stage pair (V1/V2), "2": one conv per dilation (V3)
    upsample_rates: list[int] = field(default_factory=lambda: [5, 4, 2, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [11, 8, 4, 4, 4])
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    # mel settings of the input (HiFi-GAN names); Slaney scale/norm and log(max(x, 1e-5)) are implied
    num_mels: int = 256
    sampling_rate: int = 16000
    hop_size: int = 160
    n_fft: int = 2048
    win_size: int = 1024
    fmin: float = 0.0
    fmax: float | None = 8000.0
    # fixed in the original code, exposed here
    lrelu_slope: float = 0.1  # LeakyReLU slope inside the network
    post_lrelu_slope: float = 0.01  # the LeakyReLU before conv_post (torch's default slope in the original)
    conv_pre_kernel_size: int = 7
    conv_post_kernel_size: int = 7
    init_std: float = 0.01  # normal(0, std) init of the upsampling, residual and output convs

    def __post_init__(self) -> None:
        self.resblock = str(self.resblock)
        self.upsample_rates = [int(r) for r in self.upsample_rates]
        self.upsample_kernel_sizes = [int(k) for k in self.upsample_kernel_sizes]
        self.resblock_kernel_sizes = [int(k) for k in self.resblock_kernel_sizes]
        self.resblock_dilation_sizes = [[int(d) for d in ds] for ds in self.resblock_dilation_sizes]
        self.validate()

    def validate(self) -> None:
        if self.resblock not in ("1", "2"):
            raise UserInputError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if not self.upsample_rates:
            raise UserInputError("upsample_rates must list at least one upsampling factor")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise UserInputError(
                f"upsample_rates {self.upsample_rates} and upsample_kernel_sizes {self.upsample_kernel_sizes} "
                "must have the same length (one kernel per upsampling layer)"
            )
        product = math.prod(self.upsample_rates)
        if product != self.hop_size:
            raise UserInputError(
                f"upsample_rates {self.upsample_rates} multiply to {product} but hop_size is {self.hop_size}: "
                f"each mel frame must become exactly hop_size samples (e.g. 5 x 4 x 2 x 2 x 2 = 160)"
            )
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if rate < 1 or kernel < rate:
                raise UserInputError(f"upsampling layer with rate {rate} needs a kernel size >= rate, got {kernel}")
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise UserInputError(
                f"upsample_initial_channel ({self.upsample_initial_channel}) must be divisible by "
                f"2^{len(self.upsample_rates)} (channels halve at every upsampling layer)"
            )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes) or not self.resblock_kernel_sizes:
            raise UserInputError("resblock_kernel_sizes and resblock_dilation_sizes need one entry per residual block")
        for kernel in self.resblock_kernel_sizes + [self.conv_pre_kernel_size, self.conv_post_kernel_size]:
            if kernel % 2 == 0:
                raise UserInputError(f"residual/pre/post conv kernel sizes must be odd ('same' padding), got {kernel}")
        if any(not ds for ds in self.resblock_dilation_sizes):
            raise UserInputError("every residual block needs at least one dilation")

    @property
    def num_upsamples(self) -> int:
        return len(self.upsample_rates)

    def mel_config(self, **overrides: Any) -> MelConfig:
        """The front end that computes this vocoder's input: HiFi-GAN's formula at these settings."""
        values = dict(
            sample_rate=self.sampling_rate,
            n_fft=self.n_fft,
            win_length=self.win_size,
            hop_length=self.hop_size,
            n_mels=self.num_mels,
            f_min=self.fmin,
            f_max=self.fmax,
        )
        values.update(overrides)
        return MelConfig(**values)

    def check_compatible(self, mel: MelConfig, what: str = "the model's mel front end") -> None:
        """Raise a ValueError naming every setting where this vocoder and ``mel`` disagree."""
        pairs = {
            "sampling_rate / sample_rate": (self.sampling_rate, mel.sample_rate),
            "num_mels / n_mels": (self.num_mels, mel.n_mels),
            "hop_size / hop_length": (self.hop_size, mel.hop_length),
            "n_fft": (self.n_fft, mel.n_fft),
            "win_size / win_length": (self.win_size, mel.win_length),
            "fmin / f_min": (float(self.fmin), float(mel.f_min)),
            "fmax / f_max": (_nyquist_or(self.fmax, self.sampling_rate), _nyquist_or(mel.f_max, mel.sample_rate)),
        }
        wrong = [f"{name}: vocoder {a} vs {b}" for name, (a, b) in pairs.items() if a != b]
        if wrong:
            raise UserInputError(
                f"vocoder does not match {what} ({'; '.join(wrong)}). Use a vocoder trained at these mel "
                "settings (conf/vocoder/*.yaml) or set the mel front end to the vocoder's settings."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GeneratorConfig:
        """Build from a HiFi-GAN style dict; training-only keys are ignored, unknown keys rejected."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names - set(TRAINING_ONLY_KEYS))
        if unknown:
            raise UserInputError(f"unknown HiFi-GAN generator config keys {unknown}; known keys: {sorted(names)}")
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_json(cls, path: str | Path) -> GeneratorConfig:
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"vocoder config {path} not found (a HiFi-GAN config.json is expected there)")
        with open(path) as fh:
            return cls.from_dict(json.load(fh))

    def to_json(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write a HiFi-GAN style config.json (``extra`` adds training keys, e.g. learning_rate)."""
        values = {**(extra or {}), **self.to_dict()}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            json.dump(values, fh, indent=2)

    @classmethod
    def v1(cls, **overrides: Any) -> GeneratorConfig:
        """Full HiFi-GAN V1 size (512 initial channels, ResBlock1 with kernels 3/7/11)."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides: Any) -> GeneratorConfig:
        """A CPU-sized generator (the quickstart's): 64 channels, ResBlock2 with two kernels."""
        values: dict[str, Any] = dict(
            resblock="2",
            upsample_initial_channel=64,
            resblock_kernel_sizes=[3, 7],
            resblock_dilation_sizes=[[1, 3], [1, 3]],
        )
        values.update(overrides)
        return cls(**values)


def _nyquist_or(f_max: float | None, sample_rate: int) -> float:
    return float(sample_rate / 2 if f_max is None else f_max)


@dataclass
class DiscriminatorConfig:
    """Multi-period and multi-scale discriminator sizes; defaults are HiFi-GAN's."""

    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    # multi-period: (kernel x 1) convs with stride (stride x 1), then one stride-1 conv and a (3 x 1) output
    period_channels: list[int] = field(default_factory=lambda: [32, 128, 512, 1024, 1024])
    period_kernel_size: int = 5
    period_stride: int = 3
    # multi-scale: raw audio, then average-pooled by 2 per extra scale; the first scale uses spectral norm
    num_scales: int = 3
    scale_channels: list[int] = field(default_factory=lambda: [128, 128, 256, 512, 1024, 1024, 1024])
    scale_kernel_sizes: list[int] = field(default_factory=lambda: [15, 41, 41, 41, 41, 41, 5])
    scale_strides: list[int] = field(default_factory=lambda: [1, 2, 2, 4, 4, 1, 1])
    scale_groups: list[int] = field(default_factory=lambda: [1, 4, 16, 16, 16, 16, 1])
    lrelu_slope: float = 0.1

    def __post_init__(self) -> None:
        if any(p < 1 for p in self.periods):
            raise UserInputError(f"periods must be positive integers, got {self.periods}")
        if len(self.period_channels) < 2:
            raise UserInputError("period_channels needs at least two layers")
        n = len(self.scale_channels)
        if not (len(self.scale_kernel_sizes) == len(self.scale_strides) == len(self.scale_groups) == n):
            raise UserInputError(
                "scale_channels, scale_kernel_sizes, scale_strides and scale_groups need equal lengths"
            )
        in_channels = [1] + self.scale_channels[:-1]
        for c_in, c_out, g in zip(in_channels, self.scale_channels, self.scale_groups):
            if c_in % g or c_out % g:
                raise UserInputError(f"scale conv groups {g} must divide its channels ({c_in} -> {c_out})")
        if self.num_scales < 0:
            raise UserInputError("num_scales must be >= 0")

    @classmethod
    def small(cls, **overrides: Any) -> DiscriminatorConfig:
        """Quarter-width discriminators for CPU training."""
        values: dict[str, Any] = dict(
            period_channels=[16, 32, 64, 128, 128],
            scale_channels=[16, 32, 64, 128, 128, 128, 128],
            scale_groups=[1, 4, 8, 16, 16, 16, 1],
        )
        values.update(overrides)
        return cls(**values)
