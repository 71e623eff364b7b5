"""FD / FAD against an independent numpy + scipy.linalg.sqrtm computation (the toolbox's algorithm)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from lightning_auffusion.metrics import FrechetAudioDistance, FrechetDistance, frechet_distance_from_features


def scipy_frechet(x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """mu/cov with numpy, sqrtm with scipy, the diagonal offset fallback when the product is singular."""
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1.dot(s2))
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def features(n: int, d: int, shift: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.maximum(rng.normal(shift, 1.0, size=(n, d)) @ mix, 0).astype(np.float32)  # post-ReLU-like


@pytest.mark.parametrize(("n_gen", "n_ref", "dim"), [(400, 300, 16), (40, 50, 128), (9, 12, 64)])
def test_fd_matches_scipy_sqrtm(n_gen, n_ref, dim):
    """Full rank and rank-deficient (fewer clips than dimensions) covariances."""
    x, y = features(n_gen, dim, 0.0, 1), features(n_ref, dim, 0.4, 2)
    metric = FrechetDistance(num_features=dim)
    for chunk in np.array_split(x, 3):
        metric.update(torch.from_numpy(chunk), real=False)
    metric.update(torch.from_numpy(y), real=True)
    got = float(metric.compute())
    expected = scipy_frechet(x, y)
    assert metric.compute().dtype == torch.float64
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # streaming (chunked float64 sums) vs one pass: round-off only, but the square root of a rank-deficient
    # covariance product amplifies it (measured 1.4e-9 relative at 40 x 128), so 1e-9 was too tight
    assert float(frechet_distance_from_features(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(
        got, rel=1e-7
    )


def test_fd_of_identical_sets_is_zero_and_symmetric():
    x, y = features(30, 48, 0.0, 3), features(25, 48, 1.0, 4)
    same = FrechetDistance(48)
    same.update(torch.from_numpy(x), real=True)
    same.update(torch.from_numpy(x), real=False)
    assert float(same.compute()) == pytest.approx(0.0, abs=1e-6)
    ab, ba = FrechetDistance(48), FrechetDistance(48)
    ab.update(torch.from_numpy(x), real=False)
    ab.update(torch.from_numpy(y), real=True)
    ba.update(torch.from_numpy(y), real=False)
    ba.update(torch.from_numpy(x), real=True)
    assert float(ab.compute()) == pytest.approx(float(ba.compute()), rel=1e-9)


def test_fd_keeps_reference_across_reset_when_asked():
    x, y = features(20, 8, 0.0, 5), features(20, 8, 0.5, 6)
    metric = FrechetDistance(8, reset_real_features=False)
    metric.update(torch.from_numpy(y), real=True)
    metric.update(torch.from_numpy(x), real=False)
    first = float(metric.compute())
    metric.reset()
    assert int(metric.fake_count) == 0 and int(metric.real_count) == 20
    metric.update(torch.from_numpy(x), real=False)
    assert float(metric.compute()) == pytest.approx(first, rel=1e-12)


def test_fd_refuses_too_few_vectors_and_wrong_shapes():
    metric = FrechetDistance(4)
    metric.update(torch.ones(1, 4), real=False)
    metric.update(torch.randn(5, 4), real=True)
    with pytest.raises(ValueError, match="at least 2 generated"):
        metric.compute()
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        metric.update(torch.ones(3, 5), real=True)


def test_fad_is_frame_level_frechet():
    """FAD pools the frames of all clips (not clip means); clips without frames add nothing."""
    clips_gen = [features(n, 128, 0.0, 10 + n) for n in (10, 7, 12)]
    clips_ref = [features(n, 128, 0.3, 20 + n) for n in (10, 10, 9)]
    metric = FrechetAudioDistance()
    for clip in clips_gen:
        metric.update(torch.from_numpy(clip), real=False)
    metric.update(torch.zeros(0, 128), real=False)
    for clip in clips_ref:
        metric.update(torch.from_numpy(clip), real=True)
    expected = scipy_frechet(np.concatenate(clips_gen), np.concatenate(clips_ref))
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-5)
