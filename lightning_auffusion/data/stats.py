"""``python -m lightning_auffusion stats``: dataset log-mel mean and std for the ``meanstd`` image mode.

Streams the shards, computes every clip's log-mel exactly as the front end does (peak normalisation
then ``LogMelSpectrogram``) over its real frames only (no padding), and merges per-band counts, means
and squared deviations in float64 (Chan's parallel formula). Writes ``stats.json`` with ``mel_mean``
and ``mel_std`` scalars (what ``ImageConfig(stats_file=...)`` reads), the per-band lists, the
``MelConfig`` used and the clip and frame counts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from lightning_auffusion.audio.mel import LogMelSpectrogram, MelConfig, peak_normalize
from lightning_auffusion.data.pipeline import expand_shards, iterate_shard_samples
from lightning_auffusion.errors import UserInputError

log = logging.getLogger(__name__)


class RunningMoments:
    """Per-band count, mean and sum of squared deviations, merged exactly in float64."""

    def __init__(self, bands: int) -> None:
        self.count = 0
        self.mean = np.zeros(bands, dtype=np.float64)
        self.m2 = np.zeros(bands, dtype=np.float64)

    def add_frames(self, frames: np.ndarray) -> None:
        """``frames``: (bands, n) values of one clip."""
        frames = np.asarray(frames, dtype=np.float64)
        n = frames.shape[1]
        if n == 0:
            return
        mean = frames.mean(axis=1)
        m2 = ((frames - mean[:, None]) ** 2).sum(axis=1)
        self.merge(n, mean, m2)

    def merge(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def overall(self) -> tuple[float, float]:
        """Mean and (population) std over every band and frame together."""
        mean = float(self.mean.mean())
        m2 = float(self.m2.sum() + self.count * ((self.mean - mean) ** 2).sum())
        return mean, float(np.sqrt(m2 / (self.count * self.mean.shape[0])))

    def per_band_std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.count)


class ClipMoments(IterableDataset):
    """Per clip (or per window): ``(frames, band means, band squared deviations)``; workers split shards."""

    def __init__(self, urls: list[str], mel: MelConfig, peak: bool, segment_seconds: float | None, max_clips: int | None) -> None:
        self.urls, self.mel, self.peak = urls, mel, peak
        self.segment_seconds, self.max_clips = segment_seconds, max_clips

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        info = get_worker_info()
        urls = self.urls if info is None else self.urls[info.id :: info.num_workers]
        if not urls:
            return
        if info is not None:
            torch.set_num_threads(1)  # the workers already use the cores
        logmel = LogMelSpectrogram(self.mel)
        window = None if self.segment_seconds is None else int(round(self.segment_seconds * self.mel.sample_rate))
        for i, clip in enumerate(iterate_shard_samples(urls, sample_rate=self.mel.sample_rate)):
            if self.max_clips is not None and i >= self.max_clips:
                break
            audio = torch.from_numpy(clip["audio"])
            pieces = [audio] if window is None else list(torch.split(audio, window))
            moments = RunningMoments(self.mel.n_mels)
            for piece in pieces:
                if piece.shape[0] < self.mel.hop_length:
                    continue  # shorter than one frame
                if self.peak:
                    piece = peak_normalize(piece, self.mel.peak_level)
                with torch.no_grad():
                    moments.add_frames(logmel(piece[None])[0].double().numpy())
            yield moments.count, moments.mean, moments.m2


def compute_stats(urls: list[str], mel: MelConfig | None = None, peak_normalize: bool = True,
                  segment_seconds: float | None = None, max_clips: int | None = None, workers: int = 0,
                  progress: bool = False) -> dict[str, Any]:
    """Log-mel moments of the clips in ``urls`` (see the module docstring for the output)."""
    mel = mel or MelConfig()
    data = ClipMoments(urls, mel, peak_normalize, segment_seconds, max_clips)
    loader = DataLoader(data, batch_size=None, num_workers=workers)
    moments = RunningMoments(mel.n_mels)
    clips = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-clip STFTs are too small to split; parallelism comes from `workers`
    try:
        for count, mean, m2 in tqdm(loader, unit="clip", desc="stats", disable=not progress):
            if max_clips is not None and clips >= max_clips:
                break
            if count:
                moments.merge(count, np.asarray(mean, dtype=np.float64), np.asarray(m2, dtype=np.float64))
                clips += 1
    finally:
        torch.set_num_threads(threads)
    if moments.count == 0:
        raise UserInputError(f"no audio frames found in {len(urls)} shard(s): are they empty? see their rejects.jsonl")
    overall_mean, overall_std = moments.overall()
    return {
        "mel_mean": overall_mean,
        "mel_std": overall_std,
        "mel_mean_per_band": moments.mean.tolist(),
        "mel_std_per_band": moments.per_band_std().tolist(),
        "num_clips": clips,
        "num_frames": int(moments.count),
        "peak_normalize": peak_normalize,
        "segment_seconds": segment_seconds,
        "mel_config": dataclasses.asdict(mel),
        "shards": urls,
    }


def stats(
    name: str | None = None,
    shards: str | list[str] | None = None,
    out_root: str = "data_shards",
    output: str | None = None,
    mel: MelConfig | None = None,
    peak_normalize: bool = True,
    segment_seconds: float | None = None,
    max_clips: int | None = None,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Compute the dataset log-mel mean/std that ImageConfig(mode="meanstd", stats_file=...) reads.

    Args:
        name: shard folder name: reads ``<out_root>/<name>/index.json``, writes ``<out_root>/<name>/stats.json``.
        shards: shards to read instead (paths, globs, brace patterns, pipe: URLs, index.json).
        out_root: root folder of the shard folders.
        output: where to write the JSON; default ``<out_root>/<name>/stats.json``.
        mel: log-mel settings (default: Auffusion's MelConfig).
        peak_normalize: peak-normalise each clip (or window) first, as the front end does.
        segment_seconds: measure consecutive windows of this length, each peak-normalised on its own
            (as training crops are); None = whole clips.
        max_clips: stop after this many clips (None = all).
        workers: DataLoader worker processes (shards are split between them); 0 = this process.
        progress: show a progress bar.

    Returns:
        The statistics written to ``output``.
    """
    if name is None and shards is None:
        raise UserInputError("give --name (a folder under out_root written by `shard`) or --shards")
    spec = shards if shards is not None else str(Path(out_root) / name / "index.json")
    if output is None:
        if name is None:
            raise UserInputError("with --shards, also give --output (the stats.json path) or --name")
        output = str(Path(out_root) / name / "stats.json")
    urls = expand_shards(spec)
    result = compute_stats(urls, mel, peak_normalize, segment_seconds, max_clips, workers, progress)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    log.info("%s: mel mean %.4f, std %.4f over %d clips (%d frames)", output, result["mel_mean"], result["mel_std"],
             result["num_clips"], result["num_frames"])
    return result
