"""The generate command, prompt files, PromptDataModule, and predict through Trainer with the WAV writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_auffusion.audio.writers import output_stem, slugify
from lightning_auffusion.callbacks.audio_writer import AudioPredictionWriter
from lightning_auffusion.data.prompts import (
    PromptDataModule,
    collect_prompts,
    read_prompts,
)
from lightning_auffusion.diffusion.generate import generate as generate_command
from lightning_auffusion.diffusion.interop import export_released
from lightning_auffusion.plotting import save_spectrogram_png
from tests.diffusion.test_sampling import single_thread, tiny_vocoder  # noqa: F401 (autouse fixture)
from tests.helpers import quiet_trainer, tiny_ldm

PROMPTS = ["A dog barks loudly!", "rain falls on a tin roof", "birds chirp in the morning"]
FAST = dict(num_inference_steps=2, duration_seconds=0.5, device="cpu")


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    model = tiny_ldm()
    model.vocoder = tiny_vocoder()
    return export_released(model.eval(), tmp_path_factory.mktemp("layout"))


def test_prompt_files(tmp_path):
    (tmp_path / "p.txt").write_text("# held-out prompts\na dog barks\n\n  rain on a roof  \n")
    assert read_prompts(tmp_path / "p.txt") == ["a dog barks", "rain on a roof"]
    (tmp_path / "p.jsonl").write_text('"plain"\n{"caption": "from caption"}\n\n{"captions": ["first", "second"]}\n')
    assert read_prompts(tmp_path / "p.jsonl") == ["plain", "from caption", "first"]
    (tmp_path / "p.json").write_text(json.dumps(["x", {"prompt": "y"}]))
    assert read_prompts(tmp_path / "p.json") == ["x", "y"]
    assert collect_prompts(["inline"], str(tmp_path / "p.json")) == ["inline", "x", "y"]
    (tmp_path / "bad.jsonl").write_text('{"caption": "ok"}\n{"label": 3}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a string or an object"):
        read_prompts(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError, match="prompt file"):
        read_prompts(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="no prompts"):
        collect_prompts(None, None)


def test_prompt_datamodule_batches():
    dm = PromptDataModule(prompts=PROMPTS, batch_size=2, seed=10)
    batches = list(dm.predict_dataloader())
    assert batches[0] == {"prompt": PROMPTS[:2], "index": [0, 1], "seed": [10, 11]}
    assert batches[1] == {"prompt": PROMPTS[2:], "index": [2], "seed": [12]}


def test_slugs_and_spectrogram_png(tmp_path):
    assert slugify("A dog barks loudly!") == "a-dog-barks-loudly"
    assert output_stem(3, "Rain, on a roof") == "0003_rain-on-a-roof"
    assert slugify("!!!") == "prompt" and len(slugify("word " * 40)) <= 60
    path = save_spectrogram_png(torch.randn(64, 50), tmp_path / "s.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2-D"):
        save_spectrogram_png(np.zeros((2, 3, 4)), tmp_path / "bad.png")


def _check_outputs(folder, prompts, seconds):
    records = [json.loads(line) for line in (folder / "prompts.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in records] == prompts
    for index, (record, prompt) in enumerate(zip(records, prompts)):
        stem = output_stem(index, prompt)
        assert record["wav"] == f"{stem}.wav" and record["png"] == f"{stem}.png"
        audio, sr = sf.read(folder / record["wav"], dtype="float32")
        assert sr == 16000 and audio.shape == (int(seconds * 16000),) and np.isfinite(audio).all()
        assert sf.info(folder / record["wav"]).subtype == "PCM_16"
        assert (folder / record["png"]).stat().st_size > 0
    return records


def test_generate_command_from_released_layout(layout, tmp_path):
    from lightning_auffusion.cli import run_subcommand

    (tmp_path / "prompts.txt").write_text("rain falls on a tin roof\n")
    out = run_subcommand(
        "generate",
        [
            "--pretrained",
            str(layout),
            "--prompts",
            json.dumps(PROMPTS[:1]),
            "--prompt_file",
            str(tmp_path / "prompts.txt"),
            "--output_dir",
            str(tmp_path / "gen"),
            "--num_inference_steps",
            "2",
            "--duration_seconds",
            "0.5",
            "--scheduler",
            "ddim",
            "--seed",
            "3",
            "--device",
            "cpu",
        ],
    )
    records = _check_outputs(tmp_path / out.split("/")[-1], [PROMPTS[0], "rain falls on a tin roof"], 0.5)
    assert [r["seed"] for r in records] == [3, 4] and records[0]["scheduler"] == "ddim"
    # same arguments -> same audio; the manifest describes the latest run only
    first = sf.read(tmp_path / "gen" / records[0]["wav"])[0]
    generate_command(
        prompts=PROMPTS[:1], pretrained=str(layout), output_dir=str(tmp_path / "gen"), scheduler="ddim", seed=3, **FAST
    )
    assert np.array_equal(first, sf.read(tmp_path / "gen" / records[0]["wav"])[0])
    assert len((tmp_path / "gen" / "prompts.jsonl").read_text().splitlines()) == 1


def test_generate_command_from_checkpoint_and_attention_flag(layout, tmp_path, monkeypatch):
    from lightning_auffusion.vocoder.checkpoint import save_auffusion_vocoder

    save_auffusion_vocoder(tiny_vocoder(), tmp_path / "voc")
    own = dict(num_inference_steps=2, duration_seconds=0.5, scheduler="euler", guidance_scale=2.0)
    model = tiny_ldm(use_ema=True, vocoder=str(tmp_path / "voc"), sampling=own)
    trainer = quiet_trainer(
        max_steps=0,
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    generate_command(prompts=PROMPTS[:2], checkpoint=str(tmp_path / "m.ckpt"), output_dir=str(tmp_path / "ck"), **FAST)
    _check_outputs(tmp_path / "ck", PROMPTS[:2], 0.5)
    # without sampling flags the checkpoint's own sampling settings apply; a flag overrides its one setting
    generate_command(
        prompts=PROMPTS[:1],
        checkpoint=str(tmp_path / "m.ckpt"),
        output_dir=str(tmp_path / "own"),
        device="cpu",
        guidance_scale=1.5,
    )
    record = _check_outputs(tmp_path / "own", PROMPTS[:1], 0.5)[0]
    assert (record["scheduler"], record["num_inference_steps"], record["guidance_scale"]) == ("euler", 2, 1.5)

    calls = {}

    def fake_attention(pipeline, prompts, *, output_dir, **kwargs):
        from lightning_auffusion.diffusion.sampling import generate

        calls.update(prompts=prompts, output_dir=output_dir, kwargs=kwargs)
        return generate(pipeline, prompts, **kwargs)

    monkeypatch.setattr("lightning_auffusion.attention.recording.generate_with_attention_maps", fake_attention)
    generate_command(
        prompts=PROMPTS[:1], pretrained=str(layout), output_dir=str(tmp_path / "att"), attention_maps=True, **FAST
    )
    assert calls["prompts"] == PROMPTS[:1] and calls["output_dir"] == str(tmp_path / "att")
    assert calls["kwargs"]["num_inference_steps"] == 2
    _check_outputs(tmp_path / "att", PROMPTS[:1], 0.5)


def test_generate_command_errors(layout, tmp_path):
    with pytest.raises(ValueError, match="exactly one of --checkpoint"):
        generate_command(prompts=["x"], output_dir=str(tmp_path), **FAST)
    with pytest.raises(ValueError, match="unknown scheduler 'lms'"):
        generate_command(prompts=["x"], pretrained=str(layout), scheduler="lms", **FAST)
    with pytest.raises(FileNotFoundError, match="checkpoint .*nope.ckpt not found"):
        generate_command(prompts=["x"], checkpoint=str(tmp_path / "nope.ckpt"), **FAST)
    with pytest.raises(SystemExit):  # jsonargparse rejects unknown options by name
        from lightning_auffusion.cli import run_subcommand

        run_subcommand("generate", ["--pretrained", str(layout), "--promts", "x"])


def test_predict_with_trainer_writes_audio(tmp_path):
    model = tiny_ldm(sampling={"num_inference_steps": 2, "duration_seconds": 0.5, "scheduler": "dpmsolver++"})
    model.vocoder = tiny_vocoder()
    writer = AudioPredictionWriter(output_dir=str(tmp_path / "pred"))
    trainer = quiet_trainer(
        callbacks=[writer],
        default_root_dir=str(tmp_path),
    )
    trainer.predict(model, datamodule=PromptDataModule(prompts=PROMPTS, batch_size=2), return_predictions=False)
    records = _check_outputs(tmp_path / "pred", PROMPTS, 0.5)
    assert [r["seed"] for r in records] == [0, 1, 2]

    # prompt i is sampled with seed i whatever the batching: one batch of 3 gives the latents of 2 + 1
    def latents(batch_size):
        trainer = quiet_trainer(
            default_root_dir=str(tmp_path),
        )
        outputs = trainer.predict(model, datamodule=PromptDataModule(prompts=PROMPTS, batch_size=batch_size))
        return torch.cat([out.latents for out in outputs])

    split, whole = latents(2), latents(3)
    assert torch.allclose(split, whole, rtol=1e-4, atol=1e-3)  # batched convs round differently
    assert (split[0] - split[2]).abs().max() > 1e-2  # different seeds, different samples


def test_predict_config_layers_on_an_ldm_config(tmp_path):
    """`predict --config <ldm yaml> --config conf/predict/quickstart.yaml` swaps in the prompt data and the writer."""
    from dataclasses import asdict
    from pathlib import Path

    import yaml

    from lightning_auffusion.cli import main
    from tests.helpers import (
        TINY_FRAMES,
        TINY_MEL,
        tiny_spec,
        tiny_unet_config,
        tiny_vae_config,
    )

    ldm = {
        "trainer": {"accelerator": "cpu", "max_steps": 1, "logger": False},
        "model": {
            "class_path": "lightning_auffusion.diffusion.module.AuffusionLDM",
            "init_args": {
                "unet": tiny_unet_config(),
                "vae": tiny_vae_config(),
                "encoders": [asdict(tiny_spec("clip"))],
                "mel": dict(TINY_MEL),
                "n_frames": TINY_FRAMES,
            },
        },
        "data": {
            "class_path": "lightning_auffusion.data.datamodule.AudioShardDataModule",
            "init_args": {"train_shards": "data_shards/none/index.json", "batch_size": 2, "num_workers": 0},
        },
    }
    (tmp_path / "ldm.yaml").write_text(yaml.safe_dump(ldm))
    predict = yaml.safe_load(Path("conf/predict/quickstart.yaml").read_text())
    predict["trainer"]["callbacks"][0]["init_args"]["output_dir"] = str(tmp_path / "pred")
    predict["trainer"]["default_root_dir"] = str(tmp_path / "pred")
    predict["model"]["init_args"]["sampling"].update(num_inference_steps=2, duration_seconds=0.5)
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"captions": [p, "other"]}) + "\n" for p in PROMPTS[:2]))
    predict["data"]["init_args"]["prompt_file"] = str(tmp_path / "test.jsonl")
    (tmp_path / "predict.yaml").write_text(yaml.safe_dump(predict))
    main(["predict", "--config", str(tmp_path / "ldm.yaml"), "--config", str(tmp_path / "predict.yaml")])
    records = [json.loads(line) for line in (tmp_path / "pred" / "prompts.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in records] == PROMPTS[:2]  # Griffin-Lim audio: this tiny model has no vocoder
    audio, sr = sf.read(tmp_path / "pred" / records[1]["wav"])
    assert sr == 16000 and audio.shape == (8000,)
