"""Every shipped config under ``conf/`` parses with the real CLI parser and builds at tiny size.

A config that is documented as a layer on top of another (``conf/ldm/encoders/*``, ``presets/*`` and
``strategies/*`` on ``conf/ldm/auffusion.yaml``; ``conf/predict/*``, ``conf/ldm/longer/*`` and
``conf/ldm/riffusion_quickstart.yaml`` on ``conf/ldm/quickstart.yaml``) is checked in that combination. New files are picked up by
the glob, and a file the table below does not know how to combine fails :func:`test_every_config_is_covered`.

Building: the model's heavy or remote parts are swapped for tiny random ones through command-line overrides
(the way a user overrides a config), so nothing is downloaded (``HF_HUB_OFFLINE=1``):

* U-Net and VAE become tiny diffusers configs, the mel front end 64 mels x 64 frames;
* each pretrained hub text encoder (CLIP, CLAP, Flan-T5) becomes a random 2-layer encoder *of the same kind*
  with a locally built tokenizer: the pretrained weights themselves cannot be built offline;
* the sampling vocoder (a hub id or a quickstart checkpoint) is dropped (sampling would use Griffin-Lim);
* the vocoder module is built at its configured size (HiFi-GAN V1 builds in a second on the CPU).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from lightning_auffusion.cli import AuffusionCLI, main
from tests.helpers import (  # noqa: F401 (single_torch_thread is a fixture)
    TINY_FRAMES,
    TINY_MEL,
    single_torch_thread,
    tiny_spec,
    tiny_unet_config,
    tiny_vae_config,
)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SWEEPS = CONF / "sweeps"
# folder (relative to conf/) -> (the config its files are layered on, the Lightning command they are for)
LAYERED = {
    "ldm/encoders": ("ldm/auffusion.yaml", "fit"),
    "ldm/presets": ("ldm/auffusion.yaml", "fit"),
    "ldm/strategies": ("ldm/auffusion.yaml", "fit"),
    "ldm/longer": ("ldm/quickstart.yaml", "fit"),
    "vae/longer": ("vae/quickstart.yaml", "fit"),
    "predict": ("ldm/quickstart.yaml", "predict"),
}
# single files layered on another config in their own folder
LAYERED_FILES = {"ldm/riffusion_quickstart.yaml": ("ldm/quickstart.yaml", "fit")}


def _combinations() -> list[tuple[str, list[Path]]]:
    combos = []
    for path in sorted(CONF.rglob("*.yaml")):
        if path.parent == SWEEPS:
            continue  # sweep files, not Lightning configs (tests/sweeps/test_shipped.py)
        folder = path.parent.relative_to(CONF).as_posix()
        base, command = LAYERED_FILES.get(path.relative_to(CONF).as_posix()) or LAYERED.get(folder, (None, "fit"))
        files = [CONF / base, path] if base else [path]
        combos.append((command, files))
    return combos


COMBINATIONS = _combinations()
IDS = ["+".join(f.relative_to(CONF).as_posix() for f in files) for _, files in COMBINATIONS]


def _config_args(files: list[Path]) -> list[str]:
    return [arg for f in files for arg in ("--config", str(f))]


def test_every_config_is_covered():
    folders = {p.parent.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml") if p.parent != SWEEPS}
    assert folders <= {"clap", "ldm", "vae", "vocoder", *LAYERED}, (
        f"add new config folders to LAYERED or this test: {folders}"
    )
    assert len(COMBINATIONS) >= 11  # the 4 quickstarts, 3 full-size models, 4 encoder ablations


@pytest.mark.parametrize(("command", "files"), COMBINATIONS, ids=IDS)
def test_config_parses(command, files, capsys):
    """The CLI accepts the config (types, no unknown keys) and resolves every ``${...}`` interpolation."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, *_config_args(files), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("lightning_auffusion.")
    assert "${" not in json.dumps(printed)
    logger = printed["trainer"]["logger"]
    if not files[-1].stem.endswith(
        "quickstart"
    ):  # the full-size configs interpolate their run folders: runs/<run name>
        root = printed["trainer"]["default_root_dir"]
        assert root == f"runs/{logger['init_args']['name']}"
        assert logger["init_args"]["save_dir"] == root
        # W&B decides offline from the environment (lightning_auffusion.loggers), not from the config
        assert logger["class_path"] == "lightning_auffusion.loggers.WandbLogger"
        assert logger["init_args"]["offline"] is None


def test_encoder_ablations_rename_every_run_folder(capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "--config",
                str(CONF / "ldm/auffusion.yaml"),
                "--config",
                str(CONF / "ldm/encoders/clap.yaml"),
                "--trainer.logger.init_args.name",
                "my_run",
                "--print_config",
            ]
        )
    printed = yaml.safe_load(capsys.readouterr().out)
    dirs = [printed["trainer"]["default_root_dir"], printed["trainer"]["logger"]["init_args"]["save_dir"]]
    dirs += [
        c["init_args"].get("dirpath") or c["init_args"].get("save_dir")
        for c in printed["trainer"]["callbacks"]
        if "dirpath" in c["init_args"] or "save_dir" in c["init_args"]
    ]
    assert dirs and all(d.startswith("runs/my_run") for d in dirs)
    assert [e["kind"] for e in printed["model"]["init_args"]["encoders"]] == ["clap"]


def _tiny_overrides(files: list[Path], tmp_path: Path, capsys) -> list[str]:
    with pytest.raises(SystemExit):
        main(["fit", *_config_args(files), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    model = printed["model"]["init_args"]
    args = [
        "--trainer.accelerator",
        "cpu",
        "--trainer.precision",
        "32-true",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    if printed["model"]["class_path"].endswith("AuffusionLDM"):
        encoders = [
            asdict(tiny_spec(e["kind"], name=e["name"])) if e["kind"] != "minilm" else e for e in model["encoders"]
        ]
        positions = int(model.get("frame_position_channels") or 0)  # the U-Net input = latents + position channels
        unet = {**tiny_unet_config(), "in_channels": tiny_vae_config()["latent_channels"] + positions}
        args += [
            "--model.init_args.unet",
            json.dumps(unet),
            "--model.init_args.vae",
            json.dumps(tiny_vae_config()),
            "--model.init_args.encoders",
            json.dumps(encoders),
            "--model.init_args.mel",
            json.dumps(TINY_MEL),
            "--model.init_args.n_frames",
            str(TINY_FRAMES),
            "--model.init_args.vocoder",
            "null",
        ]
    elif printed["model"]["class_path"].endswith("SpectrogramVAE"):
        args += [
            "--model.init_args.vae",
            json.dumps(tiny_vae_config()),
            "--model.init_args.mel",
            json.dumps(TINY_MEL),
            "--model.init_args.n_frames",
            str(TINY_FRAMES),
        ]
    if printed["data"]["class_path"].endswith("PromptDataModule"):
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("a dog barks\nrain on a roof\n")
        args += ["--data.init_args.prompt_file", str(prompts)]
    return args


@pytest.mark.usefixtures("single_torch_thread")
@pytest.mark.parametrize(("command", "files"), COMBINATIONS, ids=IDS)
def test_config_builds_at_tiny_size(command, files, tmp_path, monkeypatch, capsys):
    """The Trainer, its logger and callbacks, the module and the data module are instantiated."""
    if any(f.name == "fsdp.yaml" for f in files):
        pytest.skip("Lightning refuses the FSDP strategy without a GPU; the config is parsed in test_config_parses")
    monkeypatch.chdir(tmp_path)  # configs with literal relative run folders write nothing into the repository
    cli = AuffusionCLI(args=[*_config_args(files), *_tiny_overrides(files, tmp_path, capsys)], run=False)
    assert type(cli.model).__module__.startswith("lightning_auffusion.")
    assert type(cli.datamodule).__module__.startswith("lightning_auffusion.")
    assert cli.trainer.max_steps != 0
