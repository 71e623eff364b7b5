"""IS: Inception score of generated clips from Cnn14 logits, as the evaluation toolbox computes it.

Rows are shuffled with ``numpy.random.RandomState(2020).permutation``, cut into 10 splits
(``[i N // 10, (i + 1) N // 10)``), each split scores exp(mean_i KL(p_i || mean p)) in float64, and the
result is the mean and the population standard deviation of the split scores.

The toolbox sees clips in sorted file-name order. With clip ids the metric restores that order (sorted by
id, repeated ids once) before shuffling, so the score does not depend on batch or DDP rank order; without
ids rows are used in the order received.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from lightning_auffusion.metrics.ids import decode_ids, encode_ids

log = logging.getLogger(__name__)


def inception_score(logits: Tensor, splits: int = 10, seed: int | None = 2020) -> tuple[float, float]:
    """(mean, population std) over ``splits`` of exp(E KL(p(y|x) || p(y))); ``seed=None`` keeps the order."""
    x = logits.double()
    n = x.shape[0]
    if seed is not None:
        x = x[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    p = torch.softmax(x, dim=1)
    log_p = torch.log_softmax(x, dim=1)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        chunk, log_chunk = p[lo:hi], log_p[lo:hi]
        log_q = torch.log(chunk.mean(dim=0, keepdim=True))
        scores.append(float((chunk * (log_chunk - log_q)).sum(dim=1).mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


class InceptionScore(Metric):
    """``update(logits, ids=None)`` with generated clips' Cnn14 logits; ``compute()`` -> (mean, std)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int = 527,
        splits: int = 10,
        seed: int = 2020,
        shuffle: bool = True,
        file_suffix: str = ".wav",
        **kwargs,
    ) -> None:
        """``file_suffix``: ids are file stems; clips are ordered by ``id + file_suffix``, the file names the
        toolbox sorts before its seeded shuffle."""
        super().__init__(**kwargs)
        self.file_suffix = file_suffix
        self.num_classes = int(num_classes)
        self.splits = int(splits)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.splits_used = self.splits
        self.add_state("logits", [], dist_reduce_fx="cat")
        self.add_state("ids", [], dist_reduce_fx="cat")
        self.add_state("rows_without_id", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, ids: Sequence[str] | None = None) -> None:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"expected logits of shape (B, {self.num_classes}), got {tuple(logits.shape)}")
        self.logits.append(logits.detach().float().reshape(-1).to(self.device))
        if ids is None:
            self.rows_without_id += logits.shape[0]
        else:
            if len(ids) != logits.shape[0]:
                raise ValueError(f"{len(ids)} ids for {logits.shape[0]} rows of logits")
            self.ids.append(encode_ids(ids, self.device))

    def ordered_logits(self) -> Tensor:
        logits = (dim_zero_cat(self.logits) if len(self.logits) else torch.zeros(0)).reshape(-1, self.num_classes)
        if int(self.rows_without_id) == 0 and logits.shape[0]:
            ids = decode_ids(dim_zero_cat(self.ids))
            first: dict[str, int] = {}
            for row, clip_id in enumerate(ids):
                first.setdefault(clip_id, row)
            # the toolbox sorts file names, not stems: "x-y.wav" < "x.wav" although "x" < "x-y"
            logits = logits[[first[k] for k in sorted(first, key=lambda k: k + self.file_suffix)]]
        elif len(self.ids):
            raise ValueError("InceptionScore got ids for some batches and none for others; give ids always or never")
        return logits

    def compute(self) -> tuple[Tensor, Tensor]:
        logits = self.ordered_logits()
        n = logits.shape[0]
        if n == 0:
            raise ValueError("InceptionScore has no generated clips")
        self.splits_used = min(self.splits, n)
        if self.splits_used < self.splits:
            log.warning(
                "IS: %d clips < %d splits; using %d splits (not comparable with a 10-split score)",
                n,
                self.splits,
                self.splits_used,
            )
        mean, std = inception_score(logits, self.splits_used, self.seed if self.shuffle else None)
        return torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
