"""FD: Frechet distance of PANNs Cnn14 clip embeddings (2048-d, post-ReLU), as a torchmetrics Metric.

States are float64 sums (sum x, sum x x^T, count) for the generated and the reference side, so the metric
uses constant memory, and DDP ranks combine by summation: the result is the one a single process gets
on all clips. Feed every clip once (a DistributedSampler that pads ranks with repeated clips skews it).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_auffusion.metrics.frechet import frechet_distance, gaussian_from_sums


class FrechetDistance(Metric):
    """Frechet distance between the Gaussians of generated and reference feature vectors.

    ``update(features, real)`` takes features (N, num_features); ``real=True`` for reference clips.
    ``reset_real_features=False`` keeps the reference statistics across ``reset()`` (a fixed reference
    set scored against successive generations, as the evaluation callback does).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_features: int = 2048, reset_real_features: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_features = int(num_features)
        self.reset_real_features = reset_real_features
        d = self.num_features
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, features: Tensor, real: bool) -> None:
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"expected features of shape (N, {self.num_features}), got {tuple(features.shape)}")
        x = features.detach().to(device=self.real_sum.device, dtype=torch.float64)
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + x.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + x.T @ x)
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + x.shape[0])

    def compute(self) -> Tensor:
        for side, what in (("fake", "generated"), ("real", "reference")):
            n = int(getattr(self, f"{side}_count"))
            if n < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 {what} feature vectors, got {n}")
        mu_f, sigma_f = gaussian_from_sums(self.fake_sum, self.fake_outer, self.fake_count)
        mu_r, sigma_r = gaussian_from_sums(self.real_sum, self.real_outer, self.real_count)
        return frechet_distance(mu_f, sigma_f, mu_r, sigma_r)

    def reset(self) -> None:
        if self.reset_real_features:
            super().reset()
            return
        kept = {name: getattr(self, name).clone() for name in ("real_sum", "real_outer", "real_count")}
        super().reset()
        for name, value in kept.items():
            setattr(self, name, value)
