"""CLAP score and the synthetic alignment accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_auffusion.metrics import AlignmentAccuracy, ClapScore
from lightning_auffusion.metrics.extractors.clap import CLAP_SAMPLES, prepare_clap_audio


def test_clap_score_is_the_mean_cosine():
    rng = np.random.default_rng(0)
    a, t = rng.normal(size=(7, 16)), rng.normal(size=(7, 16))
    metric = ClapScore()
    metric.update(torch.from_numpy(a[:3]).float(), torch.from_numpy(t[:3]).float())
    metric.update(torch.from_numpy(a[3:]).float(), torch.from_numpy(t[3:]).float())
    cos = (a * t).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(t, axis=1)
    assert float(metric.compute()) == pytest.approx(cos.mean(), rel=1e-6)


def test_clap_audio_is_48k_and_480000_samples():
    assert prepare_clap_audio(torch.ones(16000), 16000).shape == (CLAP_SAMPLES,)  # resampled 16 -> 48 kHz
    clip = torch.ones(70000)
    repeated = prepare_clap_audio(clip, 48000, "repeatpad")
    zero = prepare_clap_audio(clip, 48000, "zero")
    assert float(zero[:70000].min()) == 1.0 and float(zero[70000:].abs().max()) == 0.0
    assert float(repeated[: 6 * 70000].min()) == 1.0 and float(repeated[6 * 70000 :].abs().max()) == 0.0
    long = prepare_clap_audio(torch.arange(600000, dtype=torch.float32), 48000)
    assert long.shape == (CLAP_SAMPLES,) and float(long[-1]) == CLAP_SAMPLES - 1  # cut, keeping the start


def test_tiny_clap_embeddings_are_unit_vectors(tiny_clap):
    clips = [prepare_clap_audio(torch.randn(8000) * 0.1, 16000) for _ in range(3)]
    audio = tiny_clap.audio_embeddings(clips)
    text = tiny_clap.text_embeddings(["a dog barks", "rain", "a loud sine tone"])
    assert audio.shape == text.shape == (3, 16)
    assert torch.allclose(audio.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(tiny_clap.text_embeddings(["rain"])[0], text[1], atol=1e-5)


def test_alignment_counts_attributes_clips_and_unparseable(scorer):
    loud, quiet = np.full(32000, 0.9, np.float32), np.full(8000, 0.1, np.float32)
    metric = AlignmentAccuracy(scorer=scorer)
    metric.update([loud, quiet], ["synthetic long", "synthetic long"], 16000)
    metric.update(torch.from_numpy(np.stack([loud[:8000], quiet])), ["synthetic", "a dog barking"], 16000)
    out = metric.compute()
    # clip 1: 2/2, clip 2: 0/2, clip 3: 1/1, clip 4: unparseable
    assert float(out["accuracy"]) == pytest.approx(3 / 5)
    assert float(out["clip_accuracy"]) == pytest.approx(2 / 3)
    assert (int(out["attributes_judged"]), int(out["clips"]), int(out["unparseable"])) == (5, 4, 1)


def test_alignment_with_the_synthetic_analyser_separates_right_from_wrong_audio():
    """Rendered audio of a caption scores higher against that caption than against another one."""
    from lightning_auffusion.synth.attributes import parse_caption, render_caption, sample_events
    from lightning_auffusion.synth.generator import render_clip

    rng = np.random.default_rng(5)
    right, wrong = AlignmentAccuracy(), AlignmentAccuracy()
    for _ in range(2):
        events = sample_events(rng, max_events=1)
        caption = render_caption(events, rng)
        audio, _ = render_clip(events, 16000, 2.0, rng)
        assert parse_caption(caption) is not None
        other = render_caption(sample_events(rng, max_events=1), rng)
        right.update([audio], [caption], 16000)
        wrong.update([audio], [other], 16000)
    assert float(right.compute()["accuracy"]) >= 0.75
    assert float(right.compute()["accuracy"]) > float(wrong.compute()["accuracy"])
