"""Vocoder quality metrics as torchmetrics: log-mel L1 and multi-resolution STFT distance.

Both average a per-clip distance over every clip seen. ``lengths`` (valid samples per clip) crops
zero padding away before the comparison, so padded batches give the same numbers as unpadded clips.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from lightning_auffusion.audio.mel import LogMelSpectrogram, MelConfig
from lightning_auffusion.vocoder.stft_loss import DEFAULT_RESOLUTIONS, multi_resolution_stft_distance


def _clips(preds: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor | None, multiple: int = 1):
    """Yield (pred, target) pairs of shape (1, n), cropped to the valid length (a multiple of ``multiple``)."""
    if preds.dim() == 3:
        preds = preds[:, 0]
    if target.dim() == 3:
        target = target[:, 0]
    n_max = min(preds.shape[-1], target.shape[-1])
    for i in range(target.shape[0]):
        n = n_max if lengths is None else min(int(lengths[i]), n_max)
        n -= n % multiple
        if n > 0:
            yield preds[i : i + 1, :n].float(), target[i : i + 1, :n].float()


class _ClipMean(Metric):
    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _add(self, value: torch.Tensor) -> None:
        self.total += value.detach().double().sum()
        self.count += value.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class LogMelL1Distance(_ClipMean):
    """Mean |log-mel(preds) - log-mel(target)| per clip, at the given mel settings."""

    def __init__(self, mel: MelConfig | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.logmel = LogMelSpectrogram(mel or MelConfig())

    def update(self, preds: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        for p, t in _clips(preds, target, lengths, self.logmel.config.hop_length):
            self._add((self.logmel(p) - self.logmel(t)).abs().mean())


class MultiResolutionSTFTDistance(_ClipMean):
    """Mean over resolutions of spectral convergence + log-magnitude L1, averaged over clips."""

    def __init__(self, resolutions=DEFAULT_RESOLUTIONS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.resolutions = tuple(tuple(int(v) for v in r) for r in resolutions)

    def update(self, preds: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        for p, t in _clips(preds, target, lengths):
            self._add(multi_resolution_stft_distance(p, t, self.resolutions))
