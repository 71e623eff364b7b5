"""The Frechet distance between two Gaussians, in float64, robust to rank-deficient covariances.

d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

The evaluation toolbox takes ``scipy.linalg.sqrtm(S1 @ S2)`` and its trace. The trace only needs the
eigenvalues of S1 S2, which equal those of the symmetric PSD matrix R S2 R with R = S1^(1/2) (AB and BA
share their eigenvalues), so two symmetric eigendecompositions give it without a general matrix square
root. For singular covariances (fewer clips than feature dimensions), where ``sqrtm`` warns and the
toolbox falls back to adding 1e-6 to the diagonals, it is not exact either: like the toolbox, it lands
within about 5e-7 of the exact low-rank value (float64 round-off in the near-zero eigenvalues).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _sym_sqrt(matrix: Tensor) -> Tensor:
    """Square root of a symmetric PSD matrix; round-off negative eigenvalues are clamped to zero."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    """tr((sigma1 @ sigma2)^(1/2)) for symmetric PSD ``sigma1``, ``sigma2`` (computed in float64)."""
    s1 = sigma1.double()
    s2 = sigma2.double()
    root = _sym_sqrt((s1 + s1.T) / 2)
    middle = root @ ((s2 + s2.T) / 2) @ root
    eigenvalues = torch.linalg.eigvalsh((middle + middle.T) / 2)
    return eigenvalues.clamp(min=0).sqrt().sum()


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2), a float64 scalar tensor."""
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"shape mismatch: means {tuple(mu1.shape)} vs {tuple(mu2.shape)}, "
            f"covariances {tuple(sigma1.shape)} vs {tuple(sigma2.shape)}"
        )
    diff = mu1.double() - mu2.double()
    return diff @ diff + sigma1.double().trace() + sigma2.double().trace() - 2 * trace_sqrt_product(sigma1, sigma2)


def gaussian_from_sums(total: Tensor, outer: Tensor, count: Tensor | float) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance (``np.cov(x, rowvar=False)``) from sum(x), sum(x x^T) and n."""
    n = float(count)
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {int(n)}")
    mu = total.double() / n
    sigma = (outer.double() - n * torch.outer(mu, mu)) / (n - 1)
    return mu, sigma


def frechet_distance_from_features(x: Tensor, y: Tensor) -> Tensor:
    """Frechet distance of the Gaussians fitted to feature rows ``x`` (N, D) and ``y`` (M, D)."""
    x = x.double()
    y = y.double()
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("a covariance needs at least 2 feature vectors on each side")
    return frechet_distance(x.mean(0), torch.cov(x.T), y.mean(0), torch.cov(y.T))
