"""The attention localisation score on constructed maps, and the token -> event assignment."""

from __future__ import annotations

import pytest
import torch

from lightning_auffusion.attention.localisation import caption_event_words, token_events
from lightning_auffusion.metrics.localisation import AttentionLocalisation, segment_overlap, token_localisation


def _concentrated(frames: int, n_events: int, events: list[int]) -> torch.Tensor:
    profiles = torch.full((len(events), frames), 0.01)
    for row, event in enumerate(events):
        centre = int((event + 0.5) * frames / n_events)
        profiles[row, centre] = 1.0
    return profiles


def test_a_map_concentrated_on_the_right_segment_scores_1_and_the_wrong_one_0():
    credit = token_localisation(_concentrated(30, 3, [0, 1, 2]), [0, 1, 2], 3)
    assert credit.tolist() == [1.0, 1.0, 1.0]
    assert token_localisation(_concentrated(30, 3, [2, 0]), [0, 1], 3).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("frames,n_events", [(30, 3), (10, 3), (7, 2), (64, 2)])
def test_a_uniform_map_scores_exactly_chance(frames, n_events):
    events = list(range(n_events))
    credit = token_localisation(torch.ones(n_events, frames), events, n_events)
    assert credit.sum().item() / n_events == pytest.approx(1 / n_events, abs=1e-12)
    assert segment_overlap(frames, n_events).sum(0).tolist() == pytest.approx([1.0] * frames)


def test_ties_and_the_kept_part_of_the_time_axis():
    profiles = torch.zeros(1, 20)
    profiles[0, 2] = profiles[0, 7] = 1.0  # tied peaks: one inside event 0's segment, one in event 1's
    assert token_localisation(profiles, [0], 2, kept_frames=10).item() == pytest.approx(0.5)
    profiles = torch.zeros(1, 20)
    profiles[0, 7] = 0.5
    profiles[0, 15] = 1.0  # the peak lies in the cut-off tail: only the first 10 frames count
    assert token_localisation(profiles, [1], 2, kept_frames=10).item() == 1.0
    profiles = torch.zeros(1, 5)
    profiles[0, 2] = 1.0  # frame 2 of 5 is cut by the border at 2.5: half its credit in each segment
    assert token_localisation(profiles, [0], 2).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="outside"):
        token_localisation(profiles, [2], 2)


def test_metric_accumulates_content_tokens_and_skips_single_event_prompts():
    metric = AttentionLocalisation()
    assert not metric.scores([0, None], 1)
    metric.update(torch.ones(2, 10), [0, None], 1)  # one event: nothing to localise
    metric.update(_concentrated(30, 3, [0, 1, 2]), [0, 1, 2], 3)
    metric.update(torch.ones(3, 10), [0, 1, None], 2)
    result = {k: float(v) for k, v in metric.compute().items()}
    assert result["tokens"] == 5 and result["prompts"] == 2 and result["skipped"] == 1
    assert result["localisation"] == pytest.approx((3 + 0.5 + 0.5) / 5)
    assert result["chance"] == pytest.approx((3 / 3 + 2 / 2) / 5)


CAPTION = "A loud high-pitched sine beep, then quiet steady pink noise"


def test_tokens_map_to_the_events_whose_attribute_words_they_spell():
    n_events, spans = caption_event_words(CAPTION)
    assert n_events == 2 and {CAPTION.lower()[s:e]: ev for s, e, ev in spans} == {
        "loud": 0,
        "high": 0,
        "sine": 0,
        "beep": 0,
        "quiet": 1,
        "steady": 1,
        "pink": 1,
    }
    special = frozenset({"clip:<|startoftext|>", "clip:<|endoftext|>"})
    words = "a loud high - pitched si ne beep , then quiet steady pink noise".split()
    labels = ["clip:<|startoftext|>"] + [f"clip:{w}</w>" for w in words] + ["clip:<|endoftext|>", "clip:<pad>"]
    labels += ["t5:\u2581quiet", "t5:\u2581sin", "t5:</s>"]  # a second encoder is placed on its own
    n, assigned = token_events(CAPTION, labels, special | {"t5:</s>"})
    pieces = dict(zip(labels, assigned))
    assert n == 2 and pieces["clip:loud</w>"] == 0 and pieces["clip:si</w>"] == 0 and pieces["clip:ne</w>"] == 0
    assert pieces["clip:quiet</w>"] == 1 and pieces["clip:noise</w>"] is None and pieces["clip:pitched</w>"] is None
    assert pieces["clip:<|startoftext|>"] is None and pieces["clip:<pad>"] is None
    assert pieces["t5:\u2581quiet"] == 1 and pieces["t5:\u2581sin"] is None  # 'sin' is found only after 'quiet'
    assert token_events("a dog barks", labels)[0] == 0
