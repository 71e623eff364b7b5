"""FAD: Frechet distance of frame-level VGGish embeddings (128-d, no PCA, no final ReLU).

Each clip contributes one embedding per non-overlapping 0.96 s example; the Gaussians are fitted over
all frames of all clips (as the evaluation toolbox does), not over clip means.
"""

from __future__ import annotations

from torch import Tensor

from lightning_auffusion.metrics.fd import FrechetDistance


class FrechetAudioDistance(FrechetDistance):
    """``update(frame_embeddings, real)`` with the VGGish embeddings (num_frames, 128) of one or more clips."""

    def __init__(self, num_features: int = 128, reset_real_features: bool = True, **kwargs) -> None:
        super().__init__(num_features=num_features, reset_real_features=reset_real_features, **kwargs)

    def update(self, features: Tensor, real: bool) -> None:
        if features.dim() == 2 and features.shape[0] == 0:
            return  # clips shorter than one VGGish example contribute no frames
        super().update(features, real)
