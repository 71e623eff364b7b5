"""A 2-process gloo DDP ``fit`` of the tiny LDM on CPU, launched as from the shell with
``--trainer.strategy ddp --trainer.devices 2 --trainer.accelerator cpu`` (Lightning starts the second
process), against a 1-process ``validate`` of the same checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from tests.helpers import tiny_encoder_config, tiny_tokenizer_dir, tiny_unet_config, tiny_vae_config

CLIPS, PER_SHARD = 8, 2


def write_shards(root: Path) -> Path:
    from lightning_auffusion.data.shards import shard

    audio = root / "audio"
    audio.mkdir(parents=True)
    rows = []
    for i in range(CLIPS):
        t = np.arange(12000) / 16000
        sf.write(audio / f"c{i}.wav", (0.4 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype("float32"), 16000)
        rows.append(json.dumps({"file": f"c{i}.wav", "caption": f"tone number {i}"}))
    (root / "m.jsonl").write_text("\n".join(rows) + "\n")
    shard(
        str(audio),
        str(root / "m.jsonl"),
        "tones",
        out_root=str(root),
        clips_per_shard=PER_SHARD,
        min_seconds=0.5,  # the 0.75 s tones are shorter than the default 1 s floor
        workers=0,
        progress=False,
    )
    return root / "tones"


def write_config(root: Path, shards: Path) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 2,
            "precision": "32-true",
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
            "enable_model_summary": False,
            "enable_progress_bar": False,
            "logger": False,
            "default_root_dir": str(root / "run"),
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {
                        "dirpath": str(root / "run" / "checkpoints"),
                        "filename": "epoch{epoch}",
                        "auto_insert_metric_name": False,
                        "save_top_k": -1,
                        "save_last": True,
                    },
                },
                {"class_path": "tests.ddp_record.RecordKeys", "init_args": {"out": str(root / "records")}},
            ],
        },
        "model": {
            "class_path": "lightning_auffusion.diffusion.module.AuffusionLDM",
            "init_args": {
                "unet": tiny_unet_config(),
                "vae": tiny_vae_config(),
                "n_frames": 64,
                "mel": {"n_mels": 64, "n_fft": 512, "win_length": 512, "hop_length": 160},
                "encoders": [
                    {
                        "name": "clip",
                        "kind": "clip",
                        "config": tiny_encoder_config("clip"),
                        "tokenizer": tiny_tokenizer_dir("clip"),
                    }
                ],
                "learning_rate": 1e-3,
                "save_frozen_weights": True,
            },
        },
        "data": {
            "class_path": "lightning_auffusion.data.datamodule.AudioShardDataModule",
            "init_args": {
                "train_shards": str(shards),
                "val_shards": str(shards),
                "batch_size": 2,
                "val_batch_size": 3,
                "num_workers": 0,
                "segment_seconds": 0.64,
                "val_segment_seconds": 0.64,
                "shuffle_buffer": 4,
                "train_sampling": "epoch",
            },
        },
    }
    path = root / "tiny_ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(*args: str, cwd: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": cwd, "HF_HUB_OFFLINE": "1"}
    env.pop("LOCAL_RANK", None)
    out = subprocess.run(
        [sys.executable, "-m", "lightning_auffusion", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def records(root: Path) -> list[dict]:
    rows = []
    for path in sorted((root / "records").glob("rank*.jsonl")):
        rank = int(path.stem[4:])
        rows += [{"rank": rank, **json.loads(line)} for line in path.read_text().splitlines()]
    return rows


def test_two_process_ddp_fit_splits_reduces_checkpoints_once_and_resumes(tmp_path):
    repo = str(Path(__file__).resolve().parents[1])
    config = write_config(tmp_path, write_shards(tmp_path / "data"))
    ddp = ("--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu")
    cli("fit", "--config", str(config), *ddp, cwd=repo)

    rows = records(tmp_path)
    batches = [r for r in rows if "keys" in r]
    assert {r["rank"] for r in batches} == {0, 1} and all(r["world"] == 2 for r in rows)
    for epoch in (0, 1):
        keys = {
            rank: [k for r in batches if r["epoch"] == epoch and r["rank"] == rank for k in r["keys"]]
            for rank in (0, 1)
        }
        assert len(keys[0]) == len(keys[1]) == CLIPS // 2  # each rank its half, 2 batches of 2
        assert not set(keys[0]) & set(keys[1])  # no clip on both ranks
        assert sorted(keys[0] + keys[1]) == sorted(f"c{i}" for i in range(CLIPS))  # every clip exactly once

    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["epoch0.ckpt", "epoch1.ckpt", "last.ckpt"]  # written once (rank 0), no -v1 copies

    ddp_val = [r["val"]["val/loss"] for r in rows if "val" in r and r["rank"] == 0 and r["epoch"] == 1]
    (tmp_path / "records" / "rank0.jsonl").rename(tmp_path / "ddp_rank0.jsonl")
    cli(
        "validate",
        "--config",
        str(config),
        "--trainer.devices",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--ckpt_path",
        str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
        cwd=repo,
    )
    single = [json.loads(line) for line in (tmp_path / "records" / "rank0.jsonl").read_text().splitlines()]
    assert single[-1]["world"] == 1
    assert abs(single[-1]["val"]["val/loss"] - ddp_val[-1]) < 1e-5 * max(1.0, abs(ddp_val[-1]))

    (tmp_path / "records").rename(tmp_path / "records_first")
    cli(
        "fit",
        "--config",
        str(config),
        *ddp,
        "--trainer.max_epochs",
        "3",
        "--ckpt_path",
        str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
        cwd=repo,
    )
    resumed = [r for r in records(tmp_path) if "keys" in r]
    assert {r["epoch"] for r in resumed} == {2} and min(r["step"] for r in resumed) == 4  # continues at step 4
    keys = [k for r in resumed for k in r["keys"]]
    assert sorted(keys) == sorted(f"c{i}" for i in range(CLIPS))
    assert "epoch2.ckpt" in {p.name for p in (tmp_path / "run" / "checkpoints").iterdir()}
