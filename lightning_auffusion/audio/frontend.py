"""Waveform -> spectrogram image and image -> log-mel: the full Auffusion audio representation."""

from __future__ import annotations

import torch
from torch import nn

from lightning_auffusion.audio.image import ImageConfig, SpectrogramImage
from lightning_auffusion.audio.mel import LogMelSpectrogram, MelConfig, peak_normalize


def fit_frames(logmel: torch.Tensor, n_frames: int, fill_value: float) -> torch.Tensor:
    """Crop or pad (with ``fill_value``, i.e. silence) the last axis of ``logmel`` to ``n_frames``."""
    frames = logmel.shape[-1]
    if frames >= n_frames:
        return logmel[..., :n_frames]
    pad = logmel.new_full((*logmel.shape[:-1], n_frames - frames), fill_value)
    return torch.cat([logmel, pad], dim=-1)


class AuffusionFrontend(nn.Module):
    """Peak-normalise -> log-mel -> pad/crop to ``n_frames`` -> image, and the inverse to log-mel.

    ``n_frames`` 1024 makes the (256, 1024) clip image of Auffusion (10.24 s at hop 160); a 10 s clip
    gives 1000 frames and is padded with silence (the image minimum).
    """

    def __init__(
        self,
        mel: MelConfig | None = None,
        image: ImageConfig | None = None,
        n_frames: int | None = 1024,
        peak_normalize: bool = True,
    ) -> None:
        super().__init__()
        self.mel_config = mel or MelConfig()
        self.logmel = LogMelSpectrogram(self.mel_config)
        self.image = SpectrogramImage(image or ImageConfig(), n_mels=self.mel_config.n_mels)
        self.n_frames = n_frames
        self.peak_normalize = peak_normalize

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.mel_config.hop_length

    def waveform_to_logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.peak_normalize:
            waveform = peak_normalize(waveform, self.mel_config.peak_level)
        logmel = self.logmel(waveform)
        if self.n_frames is not None:
            logmel = fit_frames(logmel, self.n_frames, self.mel_config.log_floor)
        return logmel

    def logmel_to_image(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.image.to_image(logmel)

    def image_to_logmel(self, image: torch.Tensor) -> torch.Tensor:
        return self.image.to_logmel(image)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveform (batch, samples) -> image (batch, 3, n_mels, n_frames) in [-1, 1]."""
        return self.logmel_to_image(self.waveform_to_logmel(waveform))
