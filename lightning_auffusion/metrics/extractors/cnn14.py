"""PANNs Cnn14 (16 kHz variant) for FD, KL and IS, with its log-mel front end written in torch.

Architecture and parameter names are PANNs' (``bn0``, ``conv_block1..6`` with ``conv1/conv2/bn1/bn2``,
``fc1``, ``fc_audioset``), so ``Cnn14_16k_mAP=0.438.pth`` (state dict under ``"model"``) loads strictly.
The checkpoint also stores its STFT and mel matrices (``spectrogram_extractor.*``, ``logmel_extractor.*``);
this module computes the same front end itself from non-persistent buffers and drops those keys on load.

Front end (as PANNs' torchlibrosa layers): periodic Hann window 512, hop 160, centred STFT with reflect
padding, power spectrogram, Slaney mel filters (64 bands, 50-8000 Hz, Slaney area norm),
10 log10(max(mel, 1e-10)). Outputs: ``embedding`` = ReLU(fc1) (2048-d), ``logits`` = fc_audioset of it
(527 AudioSet classes, before the sigmoid).

Audio preparation as the toolbox: channel 0, mean removed, resampled to 16 kHz, zero padded to at least
2 s (32000 samples).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_auffusion.audio.mel import mel_filterbank
from lightning_auffusion.audio.resample import resample
from lightning_auffusion.metrics.extractors.weights import WeightStatus, resolve_or_random
from lightning_auffusion.safe_load import load_weights

log = logging.getLogger(__name__)

FRONT_END_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.")


@dataclass
class Cnn14Config:
    """Cnn14 at 16 kHz, as the evaluation toolbox builds it."""

    sample_rate: int = 16000
    window_size: int = 512
    hop_size: int = 160
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    classes_num: int = 527
    amin: float = 1e-10
    min_samples: int = 32000  # the toolbox pads shorter clips to 2 s


class Cnn14LogMel(nn.Module):
    """Waveform (B, T) -> log-mel (B, 1, frames, mel_bins) in dB, frames = 1 + T // hop."""

    def __init__(self, cfg: Cnn14Config) -> None:
        super().__init__()
        self.cfg = cfg
        basis = mel_filterbank(cfg.sample_rate, cfg.window_size, cfg.mel_bins, cfg.fmin, cfg.fmax, "slaney", "slaney")
        self.register_buffer("mel_basis", torch.from_numpy(basis.T.copy()).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.window_size, periodic=True), persistent=False)

    def forward(self, waveform: Tensor) -> Tensor:
        c = self.cfg
        spec = torch.stft(
            waveform.float(),
            n_fft=c.window_size,
            hop_length=c.hop_size,
            win_length=c.window_size,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real**2 + spec.imag**2  # (B, freq, frames)
        mel = power.transpose(1, 2) @ self.mel_basis  # (B, frames, mel)
        return (10.0 * torch.log10(mel.clamp(min=c.amin)))[:, None]


class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, pool_size: tuple[int, int] = (2, 2)) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(nn.Module):
    """PANNs Cnn14; ``forward(waveform (B, T) at 16 kHz) -> {"embedding": (B, 2048), "logits": (B, 527)}``."""

    def __init__(self, cfg: Cnn14Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg or Cnn14Config()
        self.front_end = Cnn14LogMel(self.cfg)
        self.bn0 = nn.BatchNorm2d(self.cfg.mel_bins)
        widths = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, self.cfg.classes_num)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, waveform: Tensor) -> dict[str, Tensor]:
        x = self.front_end(waveform)  # (B, 1, frames, mels)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # batch norm over mel bins
        for i in range(1, 7):
            block = getattr(self, f"conv_block{i}")
            x = block(x, pool_size=(2, 2) if i < 6 else (1, 1))
            x = F.dropout(x, p=0.2, training=self.training)
        x = x.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        embedding = F.relu(self.fc1(x))
        embedding = F.dropout(embedding, p=0.5, training=self.training)
        return {"embedding": embedding, "logits": self.fc_audioset(embedding)}

    def load_panns_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        """Load a PANNs state dict strictly, except the front-end matrices this module computes itself."""
        kept = {k: v for k, v in state_dict.items() if not k.startswith(FRONT_END_PREFIXES)}
        self.load_state_dict(kept, strict=True)


def prepare_cnn14_audio(audio: np.ndarray | Tensor, sample_rate: int, cfg: Cnn14Config | None = None) -> Tensor:
    """Audio (T,) or (channels, T) -> float32 (T',) at 16 kHz: channel 0, mean removed, padded to 2 s."""
    cfg = cfg or Cnn14Config()
    x = torch.as_tensor(np.asarray(audio) if not isinstance(audio, Tensor) else audio).float()
    if x.dim() == 2:
        x = x[0]
    x = x - x.mean()
    if sample_rate != cfg.sample_rate:
        x = resample(x, sample_rate, cfg.sample_rate)
    if x.shape[-1] < cfg.min_samples:
        x = F.pad(x, (0, cfg.min_samples - x.shape[-1]))
    return x


def load_cnn14(
    path: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    download: bool = False,
    allow_random: bool = False,
    cfg: Cnn14Config | None = None,
) -> tuple[Cnn14, WeightStatus]:
    """Cnn14 in eval mode with the PANNs 16 kHz weights (or random ones when allowed and missing)."""
    found, status = resolve_or_random("cnn14_16k", "Cnn14", path, weights_dir, download, allow_random)
    model = Cnn14(cfg)
    if found is not None:
        checkpoint = load_weights(found, "Cnn14 weights")
        model.load_panns_state_dict(checkpoint.get("model", checkpoint))
    return model.eval(), status


class Cnn14Extractor:
    """Batched Cnn14 features for a list of prepared clips; equal-length clips share a forward pass.

    Clips are never zero padded to a common length (that would change max/mean pooling over time), so the
    result per clip is what a batch of one gives.
    """

    def __init__(self, model: Cnn14, device: str | torch.device = "cpu", batch_size: int = 8) -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def __call__(self, clips: list[Tensor]) -> dict[str, Tensor]:
        n = len(clips)
        out = {"embedding": torch.zeros(n, 2048), "logits": torch.zeros(n, self.model.cfg.classes_num)}
        by_length: dict[int, list[int]] = {}
        for i, clip in enumerate(clips):
            by_length.setdefault(int(clip.shape[-1]), []).append(i)
        for indices in by_length.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = torch.stack([clips[i] for i in chunk]).to(self.device)
                result = self.model(batch)
                for key in out:
                    out[key][chunk] = result[key].float().cpu()
        return out
