"""Caption grammar, parser and held-out split of the synthetic sounds."""

import itertools

import numpy as np
import pytest

from lightning_auffusion.synth.attributes import (
    HELDOUT_COMBINATIONS,
    LOUDNESSES,
    NOISES,
    PATTERNS,
    PITCHES,
    SPEAKERS,
    SPEECH_PHRASES,
    TONES,
    heldout_prompts,
    is_heldout,
    parse_caption,
    render_caption,
    render_captions,
    sample_events,
)


def all_events():
    for source, pitch, pattern, loud in itertools.product(TONES, PITCHES, PATTERNS, LOUDNESSES):
        yield {"source": source, "pitch": pitch, "pattern": pattern, "loudness": loud}
    for source, pattern, loud in itertools.product(NOISES, PATTERNS, LOUDNESSES):
        yield {"source": source, "pattern": pattern, "loudness": loud}


def test_every_phrasing_of_every_event_parses_back():
    rng = np.random.default_rng(0)
    for event in all_events():
        seen = set()
        for _ in range(60):  # enough draws to hit every template and word choice
            caption = render_caption([event], rng)
            seen.add(caption)
            assert parse_caption(caption) == [event], caption
        assert len(seen) >= 10


def test_multi_event_captions_parse_back():
    rng = np.random.default_rng(1)
    for _ in range(300):
        events = sample_events(rng, max_events=3, heldout=bool(rng.integers(2)))
        captions = render_captions(events, rng, n=5)
        assert len(set(captions)) == 5
        for caption in captions:
            assert parse_caption(caption) == events, caption


def test_speech_captions_parse_back():
    rng = np.random.default_rng(2)
    for speaker, words in itertools.product(SPEAKERS, SPEECH_PHRASES):
        event = {"source": "speech", "speaker": speaker, "words": words}
        captions = render_captions([event], rng, n=5)
        assert len(captions) == 5
        for caption in captions:
            assert parse_caption(caption) == [event], caption


@pytest.mark.parametrize(
    "text",
    [
        "",
        "birds singing in the rain",
        "a loud quiet sine beep",
        "a high-pitched white noise",
        "a sine square tone",
        "loud beeping, then a sine tone",
        None,
        42,
    ],
)
def test_unparseable_captions_give_none(text):
    assert parse_caption(text) is None


def test_partial_captions_keep_only_named_attributes():
    assert parse_caption("A sine beep followed by pink noise") == [
        {"source": "sine", "pattern": "beeping"},
        {"source": "pink"},
    ]
    assert parse_caption("high sine beeping, then soft steady pink noise") == [
        {"source": "sine", "pitch": "high", "pattern": "beeping"},
        {"source": "pink", "pattern": "continuous", "loudness": "quiet"},
    ]


def test_train_sampling_never_draws_heldout_and_test_always_does():
    rng = np.random.default_rng(3)
    for _ in range(500):
        assert not any(is_heldout(e) for e in sample_events(rng, 3, heldout=False))
        assert any(is_heldout(e) for e in sample_events(rng, 3, heldout=True))


def test_heldout_values_still_seen_in_training():
    """Each held-out source, pitch and pattern occurs in training in other combinations."""
    allowed = [e for e in all_events() if not is_heldout(e)]
    for source, pitch, pattern in HELDOUT_COMBINATIONS:
        assert any(e["source"] == source for e in allowed)
        assert any(e["pattern"] == pattern for e in allowed)
        if pitch is not None:
            assert any(e.get("pitch") == pitch for e in allowed)


def test_heldout_prompts_are_deterministic_and_heldout():
    prompts = heldout_prompts(20, seed=5)
    assert prompts == heldout_prompts(20, seed=5)
    assert prompts != heldout_prompts(20, seed=6)
    assert len(prompts) == 20
    for prompt in prompts:
        events = parse_caption(prompt)
        assert events is not None and any(is_heldout(e) for e in events), prompt
