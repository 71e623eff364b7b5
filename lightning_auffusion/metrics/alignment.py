"""Synthetic alignment accuracy: does generated audio have the attributes its synthetic-grammar prompt asks for?

The synthetic analyser (``lightning_auffusion.synth.analyser.score_caption``) parses a caption of the
synthetic grammar and judges each attribute of each event (source, pitch, pattern, loudness) on the audio.
This metric needs no pretrained weights, so it means something offline.

- ``accuracy``: judged attributes that are True / all judged attributes, over all clips;
- ``clip_accuracy``: clips whose judged attributes are all True / clips with at least one judged attribute;
- ``unparseable``: prompts that are not synthetic-grammar captions (nothing judged).

Breakdown (``compute()`` keys; NaN where nothing was judged):

- ``<attribute>_accuracy`` / ``<attribute>_judged`` for ``source``, ``pitch``, ``pattern``, ``loudness``;
- ``event<i>_accuracy`` / ``event<i>_judged``: attributes of the i-th event (0-based, as in the analyser's
  ``event<i>.<attribute>`` keys), for i < ``max_events``;
- ``events<n>_clip_accuracy`` / ``events<n>_clips``: clips of n events (1..``max_events``) all correct.

Event count and order are not judged on their own: the analyser cuts a clip into as many equal segments as
the caption has events and judges event i on segment i, so a wrong order or count shows up as wrong
attributes of the events concerned (the per-position rows say where).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

log = logging.getLogger(__name__)

ATTRIBUTES = ("source", "pitch", "pattern", "loudness")  # the analyser's judged attributes (synth.analyser.JUDGED)
_VERDICT_KEY = re.compile(r"^event(\d+)\.(\w+)$")

Scorer = Callable[[np.ndarray, int, str], dict]


def default_scorer(loudness: str = "relative") -> Scorer:
    """The synthetic analyser's ``score_caption`` with the given loudness mode."""
    from lightning_auffusion.synth.analyser import score_caption

    def score(audio: np.ndarray, sample_rate: int, caption: str) -> dict:
        return score_caption(audio, sample_rate, caption, loudness=loudness)

    return score


class AlignmentAccuracy(Metric):
    """``update(audio, captions, sample_rate)``: audio (B, T) tensor or a list of 1-D arrays, one caption each.

    ``loudness="relative"`` (default) judges quiet/loud against the loudest event of the clip, right for
    generated audio of a model trained on peak-normalised clips; ``"absolute"`` uses dBFS thresholds.
    ``scorer`` replaces the analyser (a callable ``(audio, sample_rate, caption) -> dict[str, bool]``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    _FIELDS = ("attributes_true", "attributes_judged", "clips_all_correct", "clips_judged", "clips", "unparseable")

    def __init__(self, loudness: str = "relative", scorer: Scorer | None = None, max_events: int = 3, **kwargs) -> None:
        super().__init__(**kwargs)
        if loudness not in ("relative", "absolute"):
            raise ValueError(f"loudness must be 'relative' or 'absolute', got {loudness!r}")
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        self.loudness = loudness
        self.max_events = int(max_events)
        self._scorer = scorer
        for name in self._FIELDS:
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        sizes = {
            "attribute_true": len(ATTRIBUTES),
            "attribute_judged": len(ATTRIBUTES),
            "event_true": max_events,
            "event_judged": max_events,
            "count_correct": max_events,
            "count_judged": max_events,
        }
        for name, size in sizes.items():
            self.add_state(name, torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = default_scorer(self.loudness)
        return self._scorer

    def update(
        self,
        audio: Tensor | Sequence[np.ndarray],
        captions: Sequence[str],
        sample_rate: int,
        verdicts: Sequence[dict] | None = None,
    ) -> None:
        """Score each clip against its caption; ``verdicts`` (one analyser result per clip) skips the scoring."""
        if len(audio) != len(captions) or (verdicts is not None and len(verdicts) != len(captions)):
            raise ValueError(f"{len(audio)} clips for {len(captions)} captions")
        if verdicts is None:
            verdicts = [
                self.scorer(self._array(clip), int(sample_rate), caption) for clip, caption in zip(audio, captions)
            ]
        counts = dict.fromkeys(self._FIELDS, 0)
        arrays = {
            name: torch.zeros_like(getattr(self, name))
            for name in (
                "attribute_true",
                "attribute_judged",
                "event_true",
                "event_judged",
                "count_correct",
                "count_judged",
            )
        }
        for verdict in verdicts:
            counts["clips"] += 1
            if not verdict:
                counts["unparseable"] += 1
                continue
            true = sum(bool(v) for v in verdict.values())
            counts["attributes_true"] += true
            counts["attributes_judged"] += len(verdict)
            counts["clips_judged"] += 1
            counts["clips_all_correct"] += int(true == len(verdict))
            self._add_breakdown(verdict, arrays, all_correct=true == len(verdict))
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)
        for name, value in arrays.items():
            setattr(self, name, getattr(self, name) + value)

    def _add_breakdown(self, verdict: dict, arrays: dict[str, Tensor], all_correct: bool) -> None:
        """Per-attribute and per-event-position counts of one clip's verdicts; keys outside the
        ``event<i>.<attribute>`` form count only in the totals."""
        events = 0
        for key, value in verdict.items():
            match = _VERDICT_KEY.match(str(key))
            if match is None:
                continue
            position, attribute = int(match.group(1)), match.group(2)
            events = max(events, position + 1)
            if attribute in ATTRIBUTES:
                arrays["attribute_true"][ATTRIBUTES.index(attribute)] += bool(value)
                arrays["attribute_judged"][ATTRIBUTES.index(attribute)] += 1
            if position < self.max_events:
                arrays["event_true"][position] += bool(value)
                arrays["event_judged"][position] += 1
        if 0 < events <= self.max_events:
            arrays["count_correct"][events - 1] += int(all_correct)
            arrays["count_judged"][events - 1] += 1
        elif events > self.max_events:
            log.warning(
                "alignment: a clip with %d events is beyond max_events=%d; only its first %d events are "
                "broken down by position",
                events,
                self.max_events,
                self.max_events,
            )

    def update_batch(
        self,
        audio: Tensor,
        lengths: Tensor,
        captions: Sequence[str],
        sample_rate: int,
        complete: Tensor | Sequence[bool] | None = None,
    ) -> int:
        """Score the clips of a training-style batch whose window holds the whole clip (``complete``; all
        when None), each cut to its valid ``lengths``; returns how many were scored. Windows cut from
        longer clips are left out: a caption describes the whole clip."""
        keep = [i for i in range(len(captions)) if complete is None or bool(complete[i])]
        clips = [audio[i, : int(lengths[i])] for i in keep]
        if clips:
            self.update(clips, [captions[i] for i in keep], int(sample_rate))
        return len(clips)

    def loggable(self, prefix: str) -> dict[str, Tensor]:
        """``compute()``'s ratios that were judged at least once, as ``{prefix + key: value}`` (for ``log_dict``)."""
        if not float(self.attributes_judged):
            return {}
        return {
            prefix + key: value.float()
            for key, value in self.compute().items()
            if key.endswith("accuracy") and not torch.isnan(value)
        }

    @staticmethod
    def _array(clip: Tensor | np.ndarray) -> np.ndarray:
        x = clip.detach().float().cpu().numpy() if isinstance(clip, Tensor) else np.asarray(clip, dtype=np.float32)
        return x.mean(axis=0) if x.ndim == 2 else x

    def compute(self) -> dict[str, Tensor]:
        judged = float(self.attributes_judged)
        clips_judged = float(self.clips_judged)
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        if judged == 0:
            log.warning("alignment accuracy: none of %d prompts is a synthetic-grammar caption", int(self.clips))
        out = {
            "accuracy": self.attributes_true / judged if judged else nan,
            "clip_accuracy": self.clips_all_correct / clips_judged if clips_judged else nan,
            "attributes_judged": self.attributes_judged.clone(),
            "clips": self.clips.clone(),
            "unparseable": self.unparseable.clone(),
        }
        for i, attribute in enumerate(ATTRIBUTES):
            out[f"{attribute}_accuracy"] = _ratio(self.attribute_true[i], self.attribute_judged[i])
            out[f"{attribute}_judged"] = self.attribute_judged[i].clone()
        for i in range(self.max_events):
            out[f"event{i}_accuracy"] = _ratio(self.event_true[i], self.event_judged[i])
            out[f"event{i}_judged"] = self.event_judged[i].clone()
            out[f"events{i + 1}_clip_accuracy"] = _ratio(self.count_correct[i], self.count_judged[i])
            out[f"events{i + 1}_clips"] = self.count_judged[i].clone()
        return out


def _ratio(true: Tensor, judged: Tensor) -> Tensor:
    return true / judged if float(judged) else torch.tensor(float("nan"), dtype=torch.float64)
