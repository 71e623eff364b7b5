"""The ``stats`` command: float64 log-mel moments over real frames, in the format ImageConfig reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lightning_auffusion.audio.image import ImageConfig, SpectrogramImage
from lightning_auffusion.audio.mel import LogMelSpectrogram, MelConfig, peak_normalize
from lightning_auffusion.data.pipeline import iterate_shard_samples
from lightning_auffusion.data.stats import RunningMoments, compute_stats, stats

from .conftest import VALID

SMALL_MEL = MelConfig(n_mels=32)


def reference_frames(shard_dir, mel, peak=True, window=None):
    """Every real log-mel frame of every clip, concatenated (bands, frames), in float64."""
    logmel = LogMelSpectrogram(mel)
    frames = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny STFTs: threads only add synchronisation
    try:
        for clip in iterate_shard_samples(str(shard_dir)):
            audio = torch.from_numpy(clip["audio"])
            for piece in ([audio] if window is None else torch.split(audio, window)):
                if piece.shape[0] < mel.hop_length:
                    continue
                if peak:
                    piece = peak_normalize(piece, mel.peak_level)
                frames.append(logmel(piece[None])[0].double().numpy())
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(frames, axis=1)


def test_stats_match_a_direct_computation(shard_dir, tmp_path):
    result = stats(shards=str(shard_dir / "index.json"), output=str(tmp_path / "stats.json"), mel=SMALL_MEL, progress=False)
    frames = reference_frames(shard_dir, SMALL_MEL)
    assert result["num_clips"] == len(VALID)
    assert result["num_frames"] == frames.shape[1]
    # 10 s -> 1000 frames: frames = samples // hop, no padding frames counted
    total_samples = sum(c["audio"].shape[0] for c in iterate_shard_samples(str(shard_dir)))
    assert result["num_frames"] == sum(c["audio"].shape[0] // 160 for c in iterate_shard_samples(str(shard_dir)))
    assert result["num_frames"] <= total_samples / 160
    assert result["mel_mean"] == pytest.approx(frames.mean(), rel=1e-10)
    assert result["mel_std"] == pytest.approx(frames.std(), rel=1e-10)
    np.testing.assert_allclose(result["mel_mean_per_band"], frames.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(result["mel_std_per_band"], frames.std(axis=1), rtol=1e-10)
    written = json.loads((tmp_path / "stats.json").read_text())
    assert written["mel_config"]["n_mels"] == 32 and written["mel_mean"] == result["mel_mean"]


def test_windows_and_no_peak_normalisation(shard_dir):
    window = 8000
    result = compute_stats([str(p) for p in sorted(shard_dir.glob("*.tar"))], SMALL_MEL, peak_normalize=False,
                           segment_seconds=0.5)
    frames = reference_frames(shard_dir, SMALL_MEL, peak=False, window=window)
    assert result["mel_mean"] == pytest.approx(frames.mean(), rel=1e-10)
    assert result["mel_std"] == pytest.approx(frames.std(), rel=1e-10)


def test_workers_give_the_same_numbers(shard_dir):
    urls = [str(p) for p in sorted(shard_dir.glob("*.tar"))]
    serial = compute_stats(urls, SMALL_MEL)
    parallel = compute_stats(urls, SMALL_MEL, workers=2)
    assert parallel["num_frames"] == serial["num_frames"]
    assert parallel["mel_mean"] == pytest.approx(serial["mel_mean"], rel=1e-12)
    assert parallel["mel_std"] == pytest.approx(serial["mel_std"], rel=1e-12)


def test_stats_file_feeds_the_meanstd_image_mode(shard_dir, tmp_path):
    out_root = shard_dir.parent
    result = stats(name=shard_dir.name, out_root=str(out_root), mel=SMALL_MEL, max_clips=3, progress=False)
    assert result["num_clips"] == 3
    path = out_root / shard_dir.name / "stats.json"
    image = SpectrogramImage(ImageConfig(mode="meanstd", stats_file=str(path)), n_mels=32)
    logmel = torch.full((1, 32, 4), result["mel_mean"])
    assert torch.allclose(image.to_image(logmel), torch.zeros(1, 3, 32, 4), atol=1e-6)  # the mean maps to the middle


def test_running_moments_merge_is_exact_in_float64():
    rng = np.random.default_rng(0)
    data = [rng.normal(5.0, 3.0, size=(4, n)) for n in (1, 7, 1000, 3)]
    moments = RunningMoments(4)
    for chunk in data:
        moments.add_frames(chunk)
    allv = np.concatenate(data, axis=1)
    np.testing.assert_allclose(moments.mean, allv.mean(axis=1), rtol=1e-13)
    np.testing.assert_allclose(moments.per_band_std(), allv.std(axis=1), rtol=1e-12)
    mean, std = moments.overall()
    assert mean == pytest.approx(allv.mean(), rel=1e-13) and std == pytest.approx(allv.std(), rel=1e-12)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="--name"):
        stats()
    with pytest.raises(ValueError, match="--output"):
        stats(shards="x.tar")
