"""Attention localisation: does each event's words attend to that event's stretch of time?

For a prompt of ``n`` events (the synthetic grammar plays event ``i`` in the ``i``-th of ``n`` equal
segments of the clip), every *content token* (a token of a word that names an attribute or the source of
event ``i``) has a cross-attention mass over time (its map summed over the mel axis). The token scores 1
when that mass peaks inside segment ``i`` and 0 when it peaks elsewhere; the score of a prompt set is the
mean over all content tokens of all multi-event prompts. Chance is ``1 / n``.

Ties: every frame holding the maximum (within ``rtol``) shares the token's credit, each frame by the part
of it that lies inside the token's segment (frames are unit intervals of the time axis, segment ``i`` is
``[i T / n, (i + 1) T / n)``). A flat map therefore scores exactly ``1 / n``, and a map whose peak sits
on a frame cut by a segment border gets the fraction of that frame inside its segment.

Only the first ``kept_frames`` frames count: generated clips are cut to their duration while the image
(and so the map) may be wider; the segments divide the kept part.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

log = logging.getLogger(__name__)


def segment_overlap(n_frames: int, n_events: int) -> Tensor:
    """(n_events, n_frames): the length of frame ``f`` (interval ``[f, f + 1)``) inside event ``i``'s segment."""
    if n_frames < 1 or n_events < 1:
        raise ValueError(f"need at least one frame and one event, got {n_frames} frames and {n_events} events")
    frames = torch.arange(n_frames, dtype=torch.float64)
    edges = torch.arange(n_events + 1, dtype=torch.float64) * n_frames / n_events
    lo = torch.maximum(frames[None, :], edges[:-1, None])
    hi = torch.minimum(frames[None, :] + 1, edges[1:, None])
    return (hi - lo).clamp(min=0.0)


def token_localisation(
    profiles: Tensor,
    token_events: Sequence[int | None],
    n_events: int,
    kept_frames: int | None = None,
    rtol: float = 1e-6,
) -> Tensor:
    """Credit in [0, 1] of each content token (NaN for tokens not assigned to an event).

    Args:
        profiles: (tokens, frames) attention mass over time of each token.
        token_events: the event index (0-based) of each token, None for tokens of no event.
        n_events: number of events of the prompt (the time axis is cut into that many equal segments).
        kept_frames: frames of the time axis that the kept audio covers (default: all).
        rtol: frames within ``rtol`` x the maximum of the maximum count as tied peaks.
    """
    if profiles.dim() != 2:
        raise ValueError(f"profiles must be (tokens, frames), got shape {tuple(profiles.shape)}")
    if len(token_events) != profiles.shape[0]:
        raise ValueError(f"{len(token_events)} token assignments for {profiles.shape[0]} token profiles")
    frames = profiles.shape[1] if kept_frames is None else min(int(kept_frames), profiles.shape[1])
    bad = [e for e in token_events if e is not None and not 0 <= e < n_events]
    if bad:
        raise ValueError(f"token event indices {bad} are outside 0..{n_events - 1}")
    overlap = segment_overlap(frames, n_events)
    mass = profiles[:, :frames].detach().double().cpu()
    peak = mass.max(dim=1, keepdim=True).values
    tied = (mass >= peak - rtol * peak.abs()).double()
    credit = torch.full((profiles.shape[0],), float("nan"), dtype=torch.float64)
    for token, event in enumerate(token_events):
        if event is not None:
            credit[token] = (tied[token] * overlap[event]).sum() / tied[token].sum()
    return credit


class AttentionLocalisation(Metric):
    """``update(profiles, token_events, n_events, kept_frames)`` per prompt; ``compute()`` gives
    ``localisation`` (mean credit over content tokens), ``chance`` (mean of ``1 / n`` over the same tokens),
    ``tokens`` and ``prompts`` scored. Prompts with fewer than ``min_events`` events or no content token are
    counted in ``skipped`` only."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, min_events: int = 2, rtol: float = 1e-6, **kwargs) -> None:
        super().__init__(**kwargs)
        if min_events < 1:
            raise ValueError(f"min_events must be >= 1, got {min_events}")
        self.min_events = int(min_events)
        self.rtol = float(rtol)
        for name in ("credit", "chance_sum", "tokens", "prompts", "skipped"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def scores(self, token_events: Sequence[int | None], n_events: int) -> bool:
        """Whether a prompt with these token assignments is scored (else it counts as skipped)."""
        return n_events >= self.min_events and any(e is not None for e in token_events)

    def update(
        self, profiles: Tensor, token_events: Sequence[int | None], n_events: int, kept_frames: int | None = None
    ) -> None:
        """Score one prompt (per-token credits: :func:`token_localisation`)."""
        if not self.scores(token_events, n_events):
            self.skipped += 1
            return
        content = sum(e is not None for e in token_events)
        credit = token_localisation(profiles, token_events, n_events, kept_frames, self.rtol)
        self.credit += credit[~torch.isnan(credit)].sum().to(self.credit)
        self.chance_sum += content / n_events
        self.tokens += content
        self.prompts += 1

    def compute(self) -> dict[str, Tensor]:
        tokens = float(self.tokens)
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        if not tokens:
            log.warning(
                "attention localisation: no multi-event prompt with content tokens (%d skipped)", int(self.skipped)
            )
        return {
            "localisation": self.credit / tokens if tokens else nan,
            "chance": self.chance_sum / tokens if tokens else nan,
            "tokens": self.tokens.clone(),
            "prompts": self.prompts.clone(),
            "skipped": self.skipped.clone(),
        }
