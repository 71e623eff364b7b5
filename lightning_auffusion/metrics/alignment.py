"""Synthetic alignment accuracy: does generated audio have the attributes its synthetic-grammar prompt asks for?

The synthetic analyser (``lightning_auffusion.synth.analyser.score_caption``) parses a caption of the
synthetic grammar and judges each attribute of each event (source, pitch, pattern, loudness) on the audio.
This metric needs no pretrained weights, so it means something offline.

- ``accuracy``: judged attributes that are True / all judged attributes, over all clips;
- ``clip_accuracy``: clips whose judged attributes are all True / clips with at least one judged attribute;
- ``unparseable``: prompts that are not synthetic-grammar captions (nothing judged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

log = logging.getLogger(__name__)

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

    def __init__(self, loudness: str = "relative", scorer: Scorer | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if loudness not in ("relative", "absolute"):
            raise ValueError(f"loudness must be 'relative' or 'absolute', got {loudness!r}")
        self.loudness = loudness
        self._scorer = scorer
        for name in self._FIELDS:
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = default_scorer(self.loudness)
        return self._scorer

    def update(self, audio: Tensor | Sequence[np.ndarray], captions: Sequence[str], sample_rate: int,
               verdicts: Sequence[dict] | None = None) -> None:
        """Score each clip against its caption; ``verdicts`` (one analyser result per clip) skips the scoring."""
        if len(audio) != len(captions) or (verdicts is not None and len(verdicts) != len(captions)):
            raise ValueError(f"{len(audio)} clips for {len(captions)} captions")
        if verdicts is None:
            verdicts = [self.scorer(self._array(clip), int(sample_rate), caption)
                        for clip, caption in zip(audio, captions)]
        counts = dict.fromkeys(self._FIELDS, 0)
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
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)

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
        return {
            "accuracy": self.attributes_true / judged if judged else nan,
            "clip_accuracy": self.clips_all_correct / clips_judged if clips_judged else nan,
            "attributes_judged": self.attributes_judged.clone(),
            "clips": self.clips.clone(),
            "unparseable": self.unparseable.clone(),
        }
