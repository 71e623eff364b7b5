"""The stage-ceiling rows of evaluate on a tiny random LDM checkpoint whose mel is not 16 kHz."""

from __future__ import annotations

import json

import lightning
import numpy as np
import pytest
import torch

from lightning_auffusion.audio import MelConfig
from lightning_auffusion.evaluation import evaluate
from lightning_auffusion.evaluation.ceilings import CEILING_ROWS, StageCeilings, ceiling_pipeline
from tests.helpers import single_torch_thread, tiny_ldm  # noqa: F401 - single_torch_thread is a fixture used below

pytestmark = pytest.mark.usefixtures("single_torch_thread")
MEL = MelConfig(sample_rate=22050, n_mels=64, n_fft=512, win_length=512, hop_length=256)  # not 16 kHz, not 256 mels


@pytest.fixture(scope="module")
def model():
    return tiny_ldm(mel=MEL, n_frames=64, sampling=dict(num_inference_steps=2, duration_seconds=0.5)).eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ceiling_ckpt") / "tiny.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    return str(path)


def test_stage_ceilings_render_at_the_models_rate_and_keep_clip_lengths(model):
    stages = StageCeilings(ceiling_pipeline(model))
    short = np.sin(np.arange(8000) * 0.05).astype(np.float32)  # 0.5 s at 16 kHz
    stereo_long = np.stack([short, short]).repeat(3, axis=1)  # 1.5 s: longer than the model's 64 x 256 samples
    for row in CEILING_ROWS:
        out = stages.render(row, [short, stereo_long], [16000, 16000])
        assert stages.sample_rate == 22050
        assert out[0].shape == (11025,) and out[1].shape == (64 * 256,)
        assert all(np.isfinite(o).all() and np.abs(o).max() <= 1.0 for o in out)
    with pytest.raises(ValueError, match="unknown ceiling row"):
        stages.render("ceiling_vae", [short], [16000])


def test_evaluate_scores_the_ceiling_rows_beside_generated_audio(
    synthetic_set, checkpoint, tiny_clap_backend, tmp_path
):
    out = tmp_path / "report"
    report = evaluate(
        generated=str(synthetic_set["generated"]),
        reference=str(synthetic_set["reference"]),
        prompts=str(synthetic_set["prompts"]),
        ceiling_checkpoint=checkpoint,
        output=str(out),
        metrics=["kl", "clap", "alignment"],
        weights_dir=str(tmp_path / "none"),
        allow_random_weights=True,
        batch_size=3,
    )
    assert list(report["rows"]) == ["generated", "ceiling_vocoder", "ceiling_vae_vocoder"]
    assert report["rows"]["generated"] == report["metrics"]
    for name in CEILING_ROWS:
        row = report["rows"][name]
        assert row["generated"] == 4 and row["reference"] == 4  # every reference clip, rendered
        assert row["kl"] is not None and np.isfinite(row["kl"]) and row["clap_score"] is not None
        assert isinstance(row["alignment_accuracy"], float) and row["alignment_attributes_judged"] > 0
        assert "alignment_source_accuracy" in row
    assert report["metrics"]["generated"] == 5
    assert any("Row ceiling_vae_vocoder" in n for n in report["notes"])
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["rows"]) == {"generated", "ceiling_vocoder", "ceiling_vae_vocoder"}
    md = (out / "metrics.md").read_text()
    assert "| ceiling_vocoder |" in md and "| ceiling_vae_vocoder |" in md and "| run | source | pitch |" in md
    assert "Alignment by attribute" in md
    rows = [json.loads(line)["row"] for line in (out / "clips.jsonl").read_text().splitlines()]
    assert (
        rows.count("generated") == 5 and rows.count("ceiling_vocoder") == 4 and rows.count("ceiling_vae_vocoder") == 4
    )

    plain = evaluate(
        generated=str(synthetic_set["generated"]),
        prompts=str(synthetic_set["prompts"]),
        ceiling_checkpoint=checkpoint,
        output=str(tmp_path / "noref"),
        metrics=["alignment"],
    )
    assert list(plain["rows"]) == ["generated"]  # no reference: nothing to render, logged
    off = evaluate(
        generated=str(synthetic_set["generated"]),
        reference=str(synthetic_set["reference"]),
        prompts=str(synthetic_set["prompts"]),
        ceiling_checkpoint=checkpoint,
        ceilings=False,
        output=str(tmp_path / "off"),
        metrics=["alignment"],
    )
    assert list(off["rows"]) == ["generated"]
    with pytest.raises(ValueError, match="ceiling_checkpoint is for a generated folder"):
        evaluate(checkpoint=checkpoint, ceiling_checkpoint=checkpoint, prompts=str(synthetic_set["prompts"]))
    with pytest.raises(ValueError, match="attention_localisation needs a model"):
        evaluate(generated=str(synthetic_set["generated"]), attention_localisation=True)


def test_evaluate_from_a_checkpoint_reports_attention_localisation(synthetic_set, checkpoint, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a loud low sine tone, then quiet white noise pulsing on and off\na loud low sine tone\n")
    report = evaluate(
        checkpoint=checkpoint,
        prompts=str(prompts),
        metrics=["alignment"],
        output=str(tmp_path / "r"),
        reference=str(synthetic_set["reference"]),
        attention_localisation=True,
        batch_size=2,
    )
    m = report["metrics"]
    assert 0.0 <= m["attention_localisation"] <= 1.0 and m["attention_localisation_chance"] == pytest.approx(0.5)
    assert m["attention_localisation_prompts"] == 1 and m["attention_localisation_skipped"] == 1
    saved = json.loads((tmp_path / "r" / "localisation.json").read_text())
    assert [p["id"] for p in saved["per_prompt"]] == ["00000", "00001"] and saved["per_prompt"][1]["score"] is None
    assert "Attention loc." in (tmp_path / "r" / "metrics.md").read_text()
    assert list(report["rows"]) == [
        "generated",
        "ceiling_vocoder",
        "ceiling_vae_vocoder",
    ]  # the checkpoint's own stages
    notes = "\n".join(report["notes"])
    # alignment needs no reference clips and no extractor: the notes claim neither a count of 0 nor a resampling
    assert "2 generated clips." in notes and "reference clips" not in notes.split("Row ")[0]
    assert "No resampling" not in notes


def test_the_ceiling_cache_renders_each_row_once_for_the_same_decoders(
    synthetic_set, checkpoint, model, tmp_path, monkeypatch
):
    from lightning_auffusion.evaluation.ceilings import decoder_digest

    cache = tmp_path / "cache"
    options = dict(
        generated=str(synthetic_set["generated"]),
        reference=str(synthetic_set["reference"]),
        prompts=str(synthetic_set["prompts"]),
        ceiling_checkpoint=checkpoint,
        ceiling_cache=str(cache),
        metrics=["alignment"],
        batch_size=3,
    )
    first = evaluate(output=str(tmp_path / "first"), **options)
    (digest,) = [p.name for p in cache.iterdir()]
    for row in CEILING_ROWS:
        kept = cache / digest / row
        assert json.loads((kept / "complete.json").read_text()) == {"row": row, "clips": 4}
        assert len(list(kept.glob("*.wav"))) == 4

    def no_render(*args, **kwargs):
        raise AssertionError("rendered although the cache holds the row")

    monkeypatch.setattr(StageCeilings, "render", no_render)
    second = evaluate(output=str(tmp_path / "second"), **options)
    for row in CEILING_ROWS:  # float WAV: the same clips, so the same scores
        assert second["rows"][row] == first["rows"][row]

    # other decoder weights or another reference: another digest, rendered again
    changed = tiny_ldm(mel=MEL, n_frames=64, sampling=dict(num_inference_steps=2, duration_seconds=0.5)).eval()
    with torch.no_grad():
        next(changed.vae.parameters()).add_(0.5)
    assert decoder_digest(ceiling_pipeline(changed)) != decoder_digest(ceiling_pipeline(model))
    assert decoder_digest(ceiling_pipeline(model), "a") != decoder_digest(ceiling_pipeline(model), "b")
    with pytest.raises(AssertionError, match="rendered although"):
        evaluate(output=str(tmp_path / "third"), **{**options, "reference": str(synthetic_set["generated"])})
    # the interrupted row stays unfinished (no complete.json), so no later run takes it from the cache
    (other,) = [p for p in cache.iterdir() if p.name != digest]
    assert [p.name for p in other.iterdir()] == ["ceiling_vocoder.partial"]
    assert not (other / "ceiling_vocoder.partial" / "complete.json").exists()
