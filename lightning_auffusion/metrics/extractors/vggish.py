"""VGGish for FAD: the torchvggish port of Google's model, with its input pipeline written in torch.

Input pipeline (``vggish_input`` / ``mel_features`` of the reference code): mono, 16 kHz; frames of
25 ms (400 samples) every 10 ms (160), no centring; periodic Hann window; |rfft| with 512 points;
64 HTK-mel bands 125-7500 Hz (triangles in HTK mel space, DC bin zeroed); log(mel + 0.01); then
non-overlapping examples of 96 frames x 64 bands (0.96 s). A 10 s clip gives 10 examples.

Network: VGG features (conv 64, pool, conv 128, pool, conv 256 x2, pool, conv 512 x2, pool) and
``embeddings`` (4096, 4096, 128) as in ``vggish-10086976.pth``; for FAD the final ReLU and the PCA
post-processing are left out, so the output is the 128-d pre-activation embedding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lightning_auffusion.audio.resample import resample
from lightning_auffusion.metrics.extractors.weights import WeightStatus, resolve_or_random
from lightning_auffusion.safe_load import load_weights


@dataclass
class VGGishConfig:
    sample_rate: int = 16000
    window_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    fft_length: int = 512
    num_mel_bins: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7500.0
    log_offset: float = 0.01
    example_frames: int = 96  # 0.96 s, non-overlapping
    dtype: str = "float64"  # front-end precision (the reference computes in numpy float64)


def htk_mel(freq: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def vggish_mel_matrix(cfg: VGGishConfig) -> np.ndarray:
    """(fft_length // 2 + 1, num_mel_bins) weights, triangles spaced evenly in HTK mel, DC row zero."""
    n_bins = cfg.fft_length // 2 + 1
    bin_mel = htk_mel(np.linspace(0.0, cfg.sample_rate / 2.0, n_bins))
    edges = np.linspace(htk_mel(cfg.mel_min_hz), htk_mel(cfg.mel_max_hz), cfg.num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lower[None]) / (center - lower)[None]
    falling = (upper[None] - bin_mel[:, None]) / (upper - center)[None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


class VGGishFrontEnd(nn.Module):
    """Waveform (B, T) at 16 kHz -> examples (B, n_examples, 96, 64) of log-mel."""

    def __init__(self, cfg: VGGishConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dtype = getattr(torch, cfg.dtype)
        n = torch.arange(cfg.window_length, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2 * torch.pi * n / cfg.window_length)
        self.register_buffer("window", window.to(dtype), persistent=False)
        self.register_buffer("mel", torch.from_numpy(vggish_mel_matrix(cfg)).to(dtype), persistent=False)

    def num_examples(self, num_samples: int) -> int:
        c = self.cfg
        if num_samples < c.window_length:
            return 0
        frames = 1 + (num_samples - c.window_length) // c.hop_length
        return 0 if frames < c.example_frames else 1 + (frames - c.example_frames) // c.example_frames

    def forward(self, waveform: Tensor) -> Tensor:
        c = self.cfg
        n_examples = self.num_examples(waveform.shape[-1])
        if n_examples == 0:
            return waveform.new_zeros(waveform.shape[0], 0, c.example_frames, c.num_mel_bins)
        frames = waveform.to(self.window.dtype).unfold(-1, c.window_length, c.hop_length)  # (B, F, 400)
        spectrum = torch.fft.rfft(frames * self.window, n=c.fft_length).abs()
        log_mel = torch.log(spectrum @ self.mel + c.log_offset)  # (B, F, 64)
        used = n_examples * c.example_frames
        return log_mel[:, :used].reshape(waveform.shape[0], n_examples, c.example_frames, c.num_mel_bins)


class VGGish(nn.Module):
    """VGGish with torchvggish's parameter names (``features.*``, ``embeddings.*``); input (N, 1, 96, 64)."""

    def __init__(self, final_relu: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for spec in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(spec), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = int(spec)
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [
            nn.Linear(512 * 4 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
        ]
        if final_relu:
            head.append(nn.ReLU(inplace=True))
        self.embeddings = nn.Sequential(*head)

    def forward(self, examples: Tensor) -> Tensor:
        x = self.features(examples)  # (N, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # TF's channels-last flattening order
        return self.embeddings(x)


def prepare_vggish_audio(audio: np.ndarray | Tensor, sample_rate: int, cfg: VGGishConfig | None = None) -> Tensor:
    """Audio (T,) or (channels, T) -> float32 (T',) at 16 kHz; channels averaged as the FAD toolbox does."""
    cfg = cfg or VGGishConfig()
    x = torch.as_tensor(np.asarray(audio) if not isinstance(audio, Tensor) else audio).float()
    if x.dim() == 2:
        x = x.mean(dim=0)
    if sample_rate != cfg.sample_rate:
        x = resample(x, sample_rate, cfg.sample_rate)
    return x


def load_vggish(
    path: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    download: bool = False,
    allow_random: bool = False,
) -> tuple[VGGish, WeightStatus]:
    """VGGish (no final ReLU) in eval mode with ``vggish-10086976.pth`` (or random weights when allowed)."""
    found, status = resolve_or_random("vggish", "VGGish", path, weights_dir, download, allow_random)
    model = VGGish(final_relu=False)
    if found is not None:
        state = load_weights(found, "VGGish weights")
        model.load_state_dict(state, strict=True)
    return model.eval(), status


class VGGishExtractor:
    """Frame embeddings of a list of prepared clips: (total examples, 128) and the example count per clip."""

    def __init__(
        self, model: VGGish, device: str | torch.device = "cpu", batch_size: int = 64, cfg: VGGishConfig | None = None
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.front_end = VGGishFrontEnd(cfg or VGGishConfig()).to(self.device)
        self.batch_size = int(batch_size)  # examples per forward pass

    @torch.no_grad()
    def __call__(self, clips: list[Tensor]) -> tuple[Tensor, list[int]]:
        examples = [self.front_end(clip.to(self.device)[None])[0] for clip in clips]
        counts = [int(e.shape[0]) for e in examples]
        stacked = torch.cat(examples).float()[:, None] if examples else torch.zeros(0, 1, 96, 64)
        step = self.batch_size
        outputs = [self.model(stacked[i : i + step]).cpu() for i in range(0, stacked.shape[0], step)]
        return (torch.cat(outputs) if outputs else torch.zeros(0, 128)), counts
