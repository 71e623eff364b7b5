"""CLAP score: mean cosine similarity of each generated clip's CLAP audio embedding and its prompt's text
embedding (laion/clap-htsat-unfused, audio at 48 kHz padded or cut to 480000 samples). Papers print it
times 100 as a percentage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric


class ClapScore(Metric):
    """``update(audio_embeddings, text_embeddings)``, row i of each belonging to clip i."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("cosine_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, audio_embeddings: Tensor, text_embeddings: Tensor) -> None:
        if audio_embeddings.shape != text_embeddings.shape or audio_embeddings.dim() != 2:
            raise ValueError(
                f"audio {tuple(audio_embeddings.shape)} and text {tuple(text_embeddings.shape)} "
                "embeddings must both be (B, D)"
            )
        a = F.normalize(audio_embeddings.detach().double(), dim=-1)
        t = F.normalize(text_embeddings.detach().double(), dim=-1)
        self.cosine_sum += (a * t).sum().to(self.cosine_sum.device)
        self.count += a.shape[0]

    def compute(self) -> Tensor:
        if int(self.count) == 0:
            raise ValueError("ClapScore has no clips")
        return self.cosine_sum / self.count
