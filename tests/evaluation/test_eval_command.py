"""The evaluate subcommand end to end on synthetic folders and shards, with random-weight extractors."""

from __future__ import annotations

import io
import json
import tarfile
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_auffusion.evaluation import evaluate, read_prompts
from lightning_auffusion.metrics import UnpairedClipsError
from lightning_auffusion.metrics.extractors.weights import MissingWeightsError


def test_evaluate_folders_end_to_end(synthetic_set, tiny_clap_backend, tmp_path, capsys):
    out = tmp_path / "report"
    report = evaluate(
        generated=str(synthetic_set["generated"]),
        reference=str(synthetic_set["reference"]),
        prompts=str(synthetic_set["prompts"]),
        output=str(out),
        weights_dir=str(tmp_path / "none"),
        allow_random_weights=True,
        batch_size=3,
    )
    m = report["metrics"]
    assert m["generated"] == 5 and m["reference"] == 4
    for key in ("fd", "fad", "kl", "is_mean", "is_std", "clap_score", "alignment_accuracy"):
        assert isinstance(m[key], float) and np.isfinite(m[key]), key
    assert m["alignment_unparseable"] == 1 and m["alignment_accuracy"] >= 0.5
    assert not report["comparable_with_published"]
    assert report["random_weights"] == ["Cnn14", "VGGish", "CLAP"]
    assert report["details"]["kl_pairing"]["unpaired_generated"] == ["extra"]
    assert [s["source"].rsplit("/", 1)[-1] for s in report["skipped"]] == ["broken.wav"]
    notes = "\n".join(report["notes"])
    assert "22050 Hz -> 16000 Hz" in notes and "22050 Hz -> 48000 Hz for CLAP" in notes

    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"]["fd"] == pytest.approx(m["fd"])
    md = (out / "metrics.md").read_text()
    assert "NOT COMPARABLE WITH PUBLISHED NUMBERS" in md and "random weights" in md
    header = next(line for line in md.splitlines() if line.startswith("| run"))
    assert header.split("|")[2:8] == [" FD ", " FAD ", " KL ", " IS ", " CLAP ", " Alignment acc. "]
    clips = [json.loads(line) for line in (out / "clips.jsonl").read_text().splitlines()]
    assert {c["id"] for c in clips} == {"clip0", "clip1", "clip2", "clip3", "extra"}
    assert all("clap" in c for c in clips) and clips[0]["alignment"]
    assert "| generated |" in capsys.readouterr().out


def test_evaluate_stops_with_one_clear_error_when_weights_are_missing(synthetic_set, tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        evaluate(
            generated=str(synthetic_set["generated"]),
            reference=str(synthetic_set["reference"]),
            metrics=["fd", "fad"],
            output=str(tmp_path / "r"),
            weights_dir=str(tmp_path / "w"),
        )
    message = str(info.value)
    assert "Cnn14_16k_mAP=0.438.pth" in message and "vggish-10086976.pth" in message
    assert str(tmp_path / "w") in message


def test_evaluate_kl_refuses_unpaired_clips_when_strict(synthetic_set, tmp_path):
    with pytest.raises(UnpairedClipsError, match="extra"):
        evaluate(
            generated=str(synthetic_set["generated"]),
            reference=str(synthetic_set["reference"]),
            metrics=["kl"],
            kl_unpaired="error",
            output=str(tmp_path / "r"),
            weights_dir=str(tmp_path / "w"),
            allow_random_weights=True,
        )


def test_evaluate_against_shards_and_without_reference(synthetic_set, tmp_path):
    shard = tmp_path / "ref-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for path in sorted(synthetic_set["reference"].glob("*.wav")):
            audio, sr = sf.read(path, dtype="float32")
            flac = io.BytesIO()
            sf.write(flac, audio, sr, format="FLAC")
            for suffix, data in (
                ("flac", flac.getvalue()),
                ("json", json.dumps({"captions": ["x"], "sample_rate": sr}).encode()),
            ):
                info = tarfile.TarInfo(f"{path.stem}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    report = evaluate(
        generated=str(synthetic_set["generated"]),
        reference=str(shard),
        metrics=["kl", "alignment"],
        prompts=str(synthetic_set["prompts"]),
        output=str(tmp_path / "r"),
        weights_dir=str(tmp_path / "w"),
        allow_random_weights=True,
    )
    assert report["inputs"]["reference_kind"] == "shards"
    assert report["details"]["kl_pairing"]["pairs"] == 4
    alone = evaluate(
        generated=str(synthetic_set["reference"]),
        metrics=["alignment", "fd"],
        prompts=str(synthetic_set["prompts"]),
        output=str(tmp_path / "r2"),
    )
    assert alone["inputs"]["metrics"] == ["alignment"] and alone["comparable_with_published"]
    assert alone["metrics"]["alignment_accuracy"] >= 0.75  # the rendered audio matches its own captions


def test_evaluate_generates_from_a_checkpoint_first(synthetic_set, tmp_path, monkeypatch):
    calls = []

    class FakePipeline:
        sampling = {"scheduler": "ddim", "guidance_scale": 2.0, "num_inference_steps": 50}  # from its config

    def fake_load(source):
        calls.append(("load", source.checkpoint, source.device))
        return FakePipeline()

    def fake_generate(
        module, prompts, *, num_inference_steps, guidance_scale, scheduler, duration_seconds, seed, batch_size
    ):
        calls.append(("generate", list(prompts), list(seed), num_inference_steps, scheduler, guidance_scale))
        audio = torch.stack([torch.sin(torch.arange(32000) * 0.05 * (s + 1)) * 0.5 for s in seed])
        return types.SimpleNamespace(audio=audio, sample_rate=16000)

    from lightning_auffusion.diffusion.loading import ModelSource

    monkeypatch.setattr(ModelSource, "load", fake_load)
    import lightning_auffusion.diffusion.sampling as sampling

    monkeypatch.setattr(sampling, "generate", fake_generate)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a sine tone\n\nwhite noise\nbeeps\n")
    report = evaluate(
        checkpoint="model.ckpt",
        prompts=str(prompts),
        metrics=["alignment", "is"],
        output=str(tmp_path / "run"),
        batch_size=2,
        num_inference_steps=3,
        seed=10,
        allow_random_weights=True,
        weights_dir=str(tmp_path / "w"),
    )
    assert calls[0] == ("load", "model.ckpt", "auto")  # the model's options are generate's
    # --num_inference_steps wins; scheduler and guidance come from the checkpoint's own sampling settings
    assert calls[1] == ("generate", ["a sine tone", "white noise"], [10, 11], 3, "ddim", 2.0)
    assert calls[2] == ("generate", ["beeps"], [12], 3, "ddim", 2.0)
    assert sorted(p.name for p in (tmp_path / "run" / "generated").iterdir()) == ["00000.wav", "00002.wav", "00003.wav"]
    assert report["metrics"]["generated"] == 3 and report["inputs"]["generated"] == str(tmp_path / "run" / "generated")


def test_read_prompts_formats(tmp_path):
    (tmp_path / "a.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n7,yt1,30,A dog\n7,yt1,30,Other\n8,yt2,0,Rain\n"
    )
    assert read_prompts(tmp_path / "a.csv") == {"7": "A dog", "8": "Rain"}
    (tmp_path / "b.json").write_text(json.dumps({"data": [{"wav": "x/clip_a.wav", "caption": "  two   words "}]}))
    assert read_prompts(tmp_path / "b.json") == {"clip_a": "two words"}
    (tmp_path / "c.jsonl").write_text('{"id": "q", "captions": ["", "first"]}\n{"id": "r"}\n')
    assert read_prompts(tmp_path / "c.jsonl") == {"q": "first"}
    generate_manifest = '{"index": 3, "prompt": "a bell", "seed": 3, "wav": "00003_a-bell.wav"}\n'
    (tmp_path / "prompts.jsonl").write_text(generate_manifest)  # what the generate subcommand writes
    assert read_prompts(tmp_path / "prompts.jsonl") == {"00003_a-bell": "a bell"}
    with pytest.raises(ValueError, match="must be"):
        (tmp_path / "d.yaml").write_text("x")
        read_prompts(tmp_path / "d.yaml")
