"""Fixtures of the evaluation tests: synthetic generated/reference folders, prompts, a tiny CLAP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from tests.metrics.tiny import tiny_clap_embedder

N_CLIPS = 4


@pytest.fixture(scope="session")
def tiny_clap():
    return tiny_clap_embedder()


@pytest.fixture
def tiny_clap_backend(monkeypatch, tiny_clap):
    """Route the suite's CLAP to the tiny model, reported as random weights."""
    from lightning_auffusion.metrics import suite
    from lightning_auffusion.metrics.extractors.weights import WeightStatus

    status = WeightStatus("CLAP", False, None, "tiny test model")
    monkeypatch.setattr(suite, "build_clap", lambda *a, **k: (tiny_clap, status))
    return tiny_clap


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory):
    """Reference clips (16 kHz) rendered from synthetic captions; 'generated' copies at 22.05 kHz, quieter, plus
    one extra clip without reference, one unreadable file; prompts.jsonl with one non-grammar prompt."""
    from lightning_auffusion.synth.attributes import render_caption, sample_events
    from lightning_auffusion.synth.generator import render_clip

    root = tmp_path_factory.mktemp("eval_set")
    ref, gen = root / "reference", root / "generated"
    ref.mkdir()
    gen.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_CLIPS):
        events = sample_events(rng, max_events=1)
        caption = render_caption(events, rng)
        audio, _ = render_clip(events, 16000, 2.0, rng)
        sf.write(ref / f"clip{i}.wav", audio, 16000, subtype="PCM_16")
        sf.write(gen / f"clip{i}.wav", 0.8 * scipy.signal.resample_poly(audio, 441, 320), 22050, subtype="PCM_16")
        rows.append({"id": f"clip{i}", "captions": [caption]})
    extra, _ = render_clip(sample_events(rng, max_events=1), 16000, 2.0, rng)
    sf.write(gen / "extra.wav", extra, 16000)
    rows.append({"id": "extra", "caption": "a dog barks in the distance"})
    (gen / "broken.wav").write_bytes(b"RIFF....not audio")
    prompts = root / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return {"root": root, "reference": ref, "generated": gen, "prompts": prompts}
