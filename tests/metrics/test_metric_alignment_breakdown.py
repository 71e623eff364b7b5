"""The alignment accuracy broken down per attribute, event position and event count, on constructed clips."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_auffusion.metrics import AlignmentAccuracy
from lightning_auffusion.synth.attributes import render_caption
from lightning_auffusion.synth.generator import render_clip

EVENTS = [
    {"source": "square", "pitch": "low", "pattern": "continuous", "loudness": "loud"},
    {"source": "white", "pattern": "beeping", "loudness": "quiet"},
]


def _clip(events):
    audio, _ = render_clip(events, 16000, 4.0, np.random.default_rng(1))
    return audio


@pytest.fixture(scope="module")
def caption():
    return render_caption(EVENTS, np.random.default_rng(0))


def test_a_correct_clip_scores_100_percent_on_every_attribute(caption):
    metric = AlignmentAccuracy()
    metric.update([_clip(EVENTS)], [caption], 16000)
    result = {k: float(v) for k, v in metric.compute().items()}
    assert result["accuracy"] == 1.0 and result["clip_accuracy"] == 1.0
    for attribute in ("source", "pitch", "pattern", "loudness"):
        assert result[f"{attribute}_accuracy"] == 1.0, attribute
    assert result["pitch_judged"] == 1 and result["source_judged"] == 2  # noise has no pitch
    assert result["event0_accuracy"] == 1.0 and result["event1_accuracy"] == 1.0 and result["event2_judged"] == 0
    assert (
        result["events2_clip_accuracy"] == 1.0
        and result["events2_clips"] == 1
        and np.isnan(result["events1_clip_accuracy"])
    )


def test_a_wrong_pitch_clip_fails_exactly_pitch(caption):
    metric = AlignmentAccuracy()
    metric.update([_clip([dict(EVENTS[0], pitch="high"), EVENTS[1]])], [caption], 16000)
    result = {k: float(v) for k, v in metric.compute().items()}
    assert result["pitch_accuracy"] == 0.0
    for attribute in ("source", "pattern", "loudness"):
        assert result[f"{attribute}_accuracy"] == 1.0, attribute
    assert result["event0_accuracy"] == pytest.approx(3 / 4) and result["event1_accuracy"] == 1.0
    assert result["accuracy"] == pytest.approx(6 / 7) and result["clip_accuracy"] == 0.0


def test_breakdown_counts_positions_and_event_counts_and_ignores_foreign_keys():
    verdicts = [
        {"event0.source": True, "event1.source": False, "event1.loudness": True},
        {"event0.pitch": True, "event0.duration": False},  # 'duration' only counts in the totals
        {"event0.source": True, "event1.source": True, "event2.source": True, "event3.source": False},
        {},
    ]
    metric = AlignmentAccuracy(max_events=3)
    metric.update([None] * 4, ["x"] * 4, 16000, verdicts=verdicts)
    r = {k: float(v) for k, v in metric.compute().items()}
    assert r["accuracy"] == pytest.approx(6 / 9) and r["unparseable"] == 1
    assert r["source_accuracy"] == pytest.approx(4 / 6) and r["loudness_accuracy"] == 1.0 and r["pitch_judged"] == 1
    assert r["event0_accuracy"] == pytest.approx(3 / 4) and r["event1_accuracy"] == pytest.approx(2 / 3)
    assert r["event2_accuracy"] == 1.0 and r["event2_judged"] == 1  # event3 is beyond max_events: totals only
    assert r["events1_clips"] == 1 and r["events1_clip_accuracy"] == 0.0
    assert r["events2_clips"] == 1 and r["events3_clips"] == 0  # the 4-event clip is counted by no event count
    assert set(metric.loggable("val/")) >= {"val/accuracy", "val/source_accuracy", "val/events2_clip_accuracy"}
    assert "val/events3_clip_accuracy" not in metric.loggable("val/")  # never judged: not logged


def test_update_batch_judges_only_whole_clips(caption):
    import torch

    clip = torch.from_numpy(_clip(EVENTS))
    audio = torch.stack([clip, clip])
    metric = AlignmentAccuracy()
    scored = metric.update_batch(
        audio,
        torch.tensor([clip.numel(), clip.numel()]),
        [caption, caption],
        16000,
        complete=torch.tensor([True, False]),
    )
    assert scored == 1 and float(metric.clips) == 1 and float(metric.compute()["accuracy"]) == 1.0
    assert AlignmentAccuracy().loggable("val/") == {}  # nothing judged: nothing to log
