"""Tiny sweeps: a tiny LDM (scratch text encoder, no downloads) fit for two steps on tone clips, sampled with two
steps; commands run in-process (a subprocess per command costs ~8 s of imports) unless a test says otherwise."""

from __future__ import annotations

import contextlib
import io
import traceback
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_frontend_kwargs, tiny_unet_config, tiny_vae_config

SCRATCH = {
    "name": "scratch",
    "kind": "scratch",
    "max_length": 8,
    "config": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "max_position_embeddings": 80},
}
PROMPTS = ["a loud high-pitched sine tone beeping", "soft brown noise playing steadily"]


def tiny_base_config(tmp_path: Path, logger: bool = False) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 2,
            "limit_val_batches": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "logger": False,
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": "runs/elsewhere/checkpoints", "save_last": True, "every_n_train_steps": 1},
                }
            ],
        },
        "model": {
            "class_path": "lightning_auffusion.diffusion.module.AuffusionLDM",
            "init_args": {
                "unet": tiny_unet_config(),
                "vae": tiny_vae_config(),
                "encoders": [SCRATCH],
                "mel": dict(asdict(tiny_frontend_kwargs()["mel"])),
                "n_frames": 64,
                "learning_rate": 1e-3,
                "sampling": {"num_inference_steps": 2, "duration_seconds": 0.5, "scheduler": "ddim"},
            },
        },
        "data": {"class_path": "tests.helpers.ToneDataModule", "init_args": {"clips": 2, "batch_size": 2}},
    }
    if logger:
        config["trainer"]["logger"] = {
            "class_path": "lightning.pytorch.loggers.WandbLogger",
            "init_args": {"project": "sweep_test", "offline": True, "save_dir": "runs/elsewhere"},
        }
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_sweep(tmp_path: Path, parameters: dict, **extra) -> Path:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    data = {
        "name": "tiny",
        "method": "grid",
        "parameters": parameters,
        "evaluate": {
            "prompts": str(prompts),
            "metrics": ["alignment"],
            "device": "cpu",
            "batch_size": 2,
            "num_inference_steps": 2,
        },
        "media": {"prompts": PROMPTS[:1], "device": "cpu"},
        **extra,
    }
    path = tmp_path / "tiny_sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _finish_wandb() -> None:
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


class InProcess:
    """Stand-in for ``runner.run_command``: the CLI in this process, its output and errors into the log."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], log_path: Path) -> int:
        from lightning_auffusion.cli import main

        self.calls.append(list(argv))
        out = io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                main(list(argv))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                if not isinstance(exit_.code, int) and exit_.code is not None:
                    out.write(f"error: {exit_.code}\n")
            except Exception as err:  # noqa: BLE001 - recorded like a crashed subprocess
                out.write(traceback.format_exc())
                out.write(f"ERROR {type(err).__name__}: {err}\n")
                code = 1
            finally:
                _finish_wandb()  # a subprocess would end its W&B run with it
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(out.getvalue())
        return code


@pytest.fixture
def in_process(monkeypatch):
    from lightning_auffusion.sweeps import runner

    stand_in = InProcess()
    monkeypatch.setattr(runner, "run_command", stand_in)
    return stand_in
