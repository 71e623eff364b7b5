"""Attention localisation of recorded maps: which event each prompt token names, and whether it attends there.

:func:`token_events` maps the conditioner's tokens (their labels, ``"<encoder>:<piece>"``) to the events of a
synthetic-grammar caption: the caption is cut into events exactly as ``synth.attributes.parse_caption``
cuts it, a token belongs to event ``i`` when it lies (in part) in a word of event ``i`` that names an
attribute or the source (the parser's keywords). Tokens are placed in the caption by matching their pieces
(tokenizer marks removed, lower case) one after the other, so it works for every encoder family without
offset mappings; a piece that cannot be placed (``<unk>``) belongs to no event.

:func:`score_prompts` runs :class:`~lightning_auffusion.metrics.localisation.AttentionLocalisation` over
``TokenAttention`` maps and gives the JSON-ready summary that ``generate --attention_maps true`` writes to
``localisation.json``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

from lightning_auffusion.attention.capture import TokenAttention, is_padding
from lightning_auffusion.attention.figures import clean_piece
from lightning_auffusion.metrics.localisation import AttentionLocalisation, token_localisation

log = logging.getLogger(__name__)
LOCALISATION_FILE = "localisation.json"


def caption_event_words(caption: str) -> tuple[int, list[tuple[int, int, int]]] | None:
    """(number of events, [(start, end, event)] character spans of the content words) of a
    synthetic-grammar caption, or None when it does not parse. Speech captions have one event."""
    # the parser's own splitting and keyword table: the events here are the events it judges
    from lightning_auffusion.synth.attributes import _KEYWORDS, _SPLIT_RE, _parse_chunk, parse_caption

    events = parse_caption(caption)
    if events is None:
        return None
    if len(events) == 1:
        return 1, []
    text = caption.lower()
    cuts = [0] + [pos for m in _SPLIT_RE.finditer(text) for pos in (m.start(), m.end())] + [len(text)]
    spans, event = [], 0
    for start, stop in zip(cuts[::2], cuts[1::2]):
        if not _parse_chunk(text[start:stop]):
            continue  # connector leftovers, as the parser skips them
        for word in re.finditer(r"[a-z]+", text[start:stop]):
            if word.group() in _KEYWORDS:
                spans.append((start + word.start(), start + word.end(), event))
        event += 1
    if event != len(events):
        log.warning(
            "caption %r: %d event chunks but the parser found %d events; not scored", caption, event, len(events)
        )
        return None
    return event, spans


def token_events(
    caption: str, labels: Sequence[str], special: frozenset[str] = frozenset()
) -> tuple[int, list[int | None]]:
    """(number of events, event index or None per label); (0, all None) when the caption does not parse."""
    parsed = caption_event_words(caption)
    if parsed is None:
        return 0, [None] * len(labels)
    n_events, spans = parsed
    text = caption.lower()
    cursors: dict[str, int] = {}
    assigned: list[int | None] = []
    for label in labels:
        encoder = label.partition(":")[0]
        piece = clean_piece(label, with_encoder=False).lower().strip()
        if label in special or is_padding(label) or not piece:
            assigned.append(None)
            continue
        found = text.find(piece, cursors.get(encoder, 0))
        if found < 0:
            assigned.append(None)
            continue
        end = found + len(piece)
        cursors[encoder] = end
        assigned.append(next((e for s, t, e in spans if found < t and end > s), None))
    return n_events, assigned


def time_profiles(attention: TokenAttention):
    """(tokens, frames): each token's map summed over the mel axis (attention mass over time)."""
    return attention.maps.float().sum(dim=-2)


def kept_frames(frontend, duration_seconds: float, width: int) -> int:
    """Frames of a ``width``-frame image that a clip cut to ``duration_seconds`` covers."""
    samples = round(float(duration_seconds) * frontend.sample_rate)
    return max(1, min(int(width), int(frontend.mel_config.num_frames(samples))))


def score_prompts(
    maps: Sequence[TokenAttention], kept: Sequence[int], metric: AttentionLocalisation | None = None
) -> dict:
    """Localisation of each prompt's maps (``kept[i]``: frames of prompt i that its audio covers) and overall.

    Returns ``{"localisation", "chance", "tokens", "prompts", "skipped", "per_prompt": [...]}``; per prompt the
    number of events, its score and each content token's label, event and credit. ``metric`` accumulates
    (a fresh one by default)."""
    metric = AttentionLocalisation() if metric is None else metric
    per_prompt = []
    for attention, frames in zip(maps, kept):
        n_events, assigned = token_events(attention.prompt, attention.labels, attention.special)
        # an unparseable caption counts as 0 events: the metric skips it like a one-event prompt
        profiles = time_profiles(attention)
        metric.update(profiles, assigned, n_events, frames)
        if not metric.scores(assigned, n_events):
            per_prompt.append({"prompt": attention.prompt, "events": n_events, "score": None, "tokens": []})
            continue
        credit = token_localisation(profiles, assigned, n_events, frames, metric.rtol)
        tokens = [
            {"label": attention.labels[i], "event": e, "credit": float(credit[i])}
            for i, e in enumerate(assigned)
            if e is not None
        ]
        per_prompt.append(
            {
                "prompt": attention.prompt,
                "events": n_events,
                "kept_frames": int(frames),
                "score": sum(t["credit"] for t in tokens) / len(tokens),
                "tokens": tokens,
            }
        )
    summary = {key: float(value) for key, value in metric.compute().items()}
    summary = {key: (None if math.isnan(value) else value) for key, value in summary.items()}  # NaN -> null
    return {**summary, "per_prompt": per_prompt}


class LocalisationCollector:
    """Attention localisation over batches of ``TokenAttention`` maps, keeping only the per-prompt records."""

    def __init__(self, frontend, duration_seconds: float) -> None:
        self.frontend, self.duration_seconds = frontend, float(duration_seconds)
        self.metric = AttentionLocalisation()
        self.summary: dict = {"per_prompt": []}

    def add(self, maps, ids: list[str]) -> None:
        kept = [kept_frames(self.frontend, self.duration_seconds, m.maps.shape[-1]) for m in maps]
        scored = score_prompts(maps, kept, self.metric)
        for clip_id, record in zip(ids, scored["per_prompt"]):
            record["id"] = clip_id
        self.summary = {**scored, "per_prompt": self.summary["per_prompt"] + scored["per_prompt"]}

    def results(self, prefix: str = "attention_localisation") -> dict[str, float | None]:
        """The summary as flat metrics: ``<prefix>`` (the score), ``<prefix>_chance``, ``_tokens``, ...."""
        return {
            prefix if key == "localisation" else f"{prefix}_{key}": value
            for key, value in self.summary.items()
            if key != "per_prompt"
        }
