"""KL: mean over clip pairs of KL(reference || generated) between Cnn14 softmax class distributions.

As the evaluation toolbox: p = softmax(reference logits), q = softmax(generated logits) + 1e-6,
KL = sum_c p_c (log p_c - log q_c) (terms with p_c = 0 count 0), averaged over pairs. Generated and
reference clips are paired by clip id (the file stem). Clips without a partner are reported
(``on_unpaired="report"``, the default: the mean is over the pairs found) or refused
(``on_unpaired="error"``). A clip id seen twice on one side (a DistributedSampler pads ranks with
repeats) counts once.

The toolbox also reports a sigmoid KL, the same sum with sigmoid(logits) (Cnn14's per-class
probabilities, not a distribution) in place of softmax: :attr:`KLDivergence.last_sigmoid` after
``compute``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from lightning_auffusion.metrics.ids import decode_ids, encode_ids

log = logging.getLogger(__name__)


class UnpairedClipsError(ValueError):
    """Generated and reference clips do not pair up one to one."""


@dataclass
class PairingReport:
    """How generated and reference clips were paired in the last ``compute()``."""

    pairs: int = 0
    unpaired_generated: list[str] = field(default_factory=list)
    unpaired_reference: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)

    def summary(self, limit: int = 5) -> str:
        def names(items: list[str]) -> str:
            more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = [f"{self.pairs} pairs"]
        if self.unpaired_generated:
            gen = self.unpaired_generated
            parts.append(f"{len(gen)} generated clips without reference: {names(gen)}")
        if self.unpaired_reference:
            ref = self.unpaired_reference
            parts.append(f"{len(ref)} reference clips without generation: {names(ref)}")
        return "; ".join(parts)


def kl_ref_to_gen(
    reference_logits: Tensor, generated_logits: Tensor, eps: float = 1e-6, activation: str = "softmax"
) -> Tensor:
    """Per-pair KL(a(reference) || a(generated) + eps) in float64, shape (N,), with ``a`` softmax over the
    classes or the element-wise sigmoid (the toolbox's two variants)."""
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
    act = (lambda x: torch.softmax(x, dim=-1)) if activation == "softmax" else torch.sigmoid
    p = act(reference_logits.double())
    q = act(generated_logits.double()) + eps
    return (torch.xlogy(p, p) - p * torch.log(q)).sum(-1)


def _by_id(values: Tensor, ids: list[str]) -> tuple[dict[str, Tensor], list[str]]:
    table: dict[str, Tensor] = {}
    duplicates: list[str] = []
    for clip_id, row in zip(ids, values):
        if clip_id in table:
            duplicates.append(clip_id)
            continue
        table[clip_id] = row
    return table, duplicates


class KLDivergence(Metric):
    """``update(logits, ids, real)``: Cnn14 logits (B, num_classes) with one clip id per row."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        num_classes: int = 527,
        eps: float = 1e-6,
        on_unpaired: str = "report",
        reset_real_features: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if on_unpaired not in ("report", "error"):
            raise ValueError(f"on_unpaired must be 'report' or 'error', got {on_unpaired!r}")
        self.num_classes = int(num_classes)
        self.eps = float(eps)
        self.on_unpaired = on_unpaired
        self.reset_real_features = reset_real_features
        self.last_pairing = PairingReport()
        self.last_sigmoid = torch.tensor(float("nan"), dtype=torch.float64)
        for side in ("real", "fake"):
            self.add_state(f"{side}_logits", [], dist_reduce_fx="cat")
            self.add_state(f"{side}_ids", [], dist_reduce_fx="cat")

    def update(self, logits: Tensor, ids: Sequence[str], real: bool) -> None:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"expected logits of shape (B, {self.num_classes}), got {tuple(logits.shape)}")
        if len(ids) != logits.shape[0]:
            raise ValueError(f"{len(ids)} ids for {logits.shape[0]} rows of logits")
        side = "real" if real else "fake"
        getattr(self, f"{side}_logits").append(logits.detach().float().reshape(-1).to(self.device))
        getattr(self, f"{side}_ids").append(encode_ids(ids, self.device))

    def _side(self, side: str) -> tuple[Tensor, list[str]]:
        logits_state, ids_state = getattr(self, f"{side}_logits"), getattr(self, f"{side}_ids")
        logits = dim_zero_cat(logits_state) if len(logits_state) else torch.zeros(0)
        ids = dim_zero_cat(ids_state) if len(ids_state) else torch.zeros(0)
        return logits.reshape(-1, self.num_classes), decode_ids(ids)

    def pair(self) -> tuple[Tensor, Tensor, PairingReport]:
        """Reference and generated logits of the paired clips (sorted by id) and the pairing report."""
        gen, gen_ids = self._side("fake")
        ref, ref_ids = self._side("real")
        gen_table, gen_dup = _by_id(gen, gen_ids)
        ref_table, ref_dup = _by_id(ref, ref_ids)
        shared = sorted(set(gen_table) & set(ref_table))
        report = PairingReport(
            pairs=len(shared),
            unpaired_generated=sorted(set(gen_table) - set(ref_table)),
            unpaired_reference=sorted(set(ref_table) - set(gen_table)),
            duplicate_ids=sorted(set(gen_dup) | set(ref_dup)),
        )
        if not shared:
            empty = torch.zeros(0, self.num_classes)
            return empty, empty, report
        return torch.stack([ref_table[k] for k in shared]), torch.stack([gen_table[k] for k in shared]), report

    def compute(self) -> Tensor:
        ref, gen, report = self.pair()
        self.last_pairing = report
        unpaired = report.unpaired_generated or report.unpaired_reference
        if unpaired and self.on_unpaired == "error":
            raise UnpairedClipsError(f"KL pairs clips by id and some have no partner: {report.summary()}")
        if unpaired:
            log.warning("KL: %s", report.summary())
        if report.pairs == 0:
            raise UnpairedClipsError(f"KL found no generated/reference clip pairs ({report.summary()})")
        self.last_sigmoid = kl_ref_to_gen(ref, gen, self.eps, "sigmoid").mean()
        return kl_ref_to_gen(ref, gen, self.eps).mean()

    def reset(self) -> None:
        if self.reset_real_features:
            super().reset()
            return
        kept = {name: list(getattr(self, name)) for name in ("real_logits", "real_ids")}
        super().reset()
        for name, value in kept.items():
            setattr(self, name, value)
