"""Bad input ends in one line naming the input (exit 2); failures in one line (exit 1); tracebacks on request."""

import json
import logging
from pathlib import Path

import pytest

from lightning_auffusion.errors import UserInputError
from tests.helpers import run_command_line, tiny_conditioner, tiny_unet_config

CONF = Path(__file__).resolve().parents[1] / "conf"


def _expect(monkeypatch, capsys, argv, code, *fragments):
    got, err = run_command_line(monkeypatch, capsys, argv)
    assert got == code, (argv, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_bad_input_is_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    missing = str(tmp_path / "missing")
    cases = [
        (["generate", "--checkpoint", f"{missing}.ckpt", "--prompts", '["a dog"]'], f"{missing}.ckpt"),
        (["generate", "--checkpoint", "x.ckpt", "--prompt_file", str(empty)], str(empty)),
        (["generate", "--checkpoint", "x.ckpt", "--prompts", '[""]'], "empty"),
        (["generate", "--checkpoint", "x.ckpt", "--prompts", '["a"]', "--scheduler", "lms"], "lms"),
        (["shard", "--audio_dir", missing, "--manifest", f"{missing}.csv", "--name", "x"], missing),
        (
            [
                "shard",
                "--audio_dir",
                str(tmp_path),
                "--manifest",
                f"{missing}.csv",
                "--name",
                "x",
                "--out_root",
                str(tmp_path / "o"),
            ],
            f"{missing}.csv",
        ),
        (["export", "--checkpoint", f"{missing}.ckpt", "--output_dir", str(tmp_path / "e")], f"{missing}.ckpt"),
        (["export-vocoder", "--checkpoint", f"{missing}.ckpt", "--out_dir", str(tmp_path / "v")], f"{missing}.ckpt"),
        (["export-vae", "--checkpoint", f"{missing}.ckpt", "--output_dir", str(tmp_path / "v")], f"{missing}.ckpt"),
        (["stats", "--name", "nope", "--out_root", str(tmp_path)], "nope"),
        (
            [
                "evaluate",
                "--checkpoint",
                f"{missing}.ckpt",
                "--prompts",
                str(_prompts(tmp_path)),
                "--output",
                str(tmp_path / "r"),
            ],
            f"{missing}.ckpt",
        ),
        (["generate", "--checkpoint", "x.ckpt", "--promts", '["a"]'], "--promts"),
    ]
    for argv, named in cases:
        _expect(monkeypatch, capsys, argv, 2, named)


def _prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"id": "a", "caption": "a dog barks"}) + "\n")
    return path


def test_abbreviated_options_are_refused(tmp_path, monkeypatch, capsys):
    config = tmp_path / "boring.yaml"
    config.write_text(
        "model:\n  class_path: lightning.pytorch.demos.boring_classes.BoringModel\n"
        "data:\n  class_path: lightning.pytorch.demos.boring_classes.BoringDataModule\n"
    )
    _expect(monkeypatch, capsys, ["fit", "--config", str(config), "--trainer.max_step", "1"], 2, "--trainer.max_step")
    _expect(monkeypatch, capsys, ["stats", "--nam", "x"], 2, "--nam")


def test_missing_vae_in_an_ldm_config_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the quickstart config's runs/ paths do not exist here
    _expect(
        monkeypatch,
        capsys,
        ["fit", "--config", str(CONF / "ldm" / "quickstart.yaml")],
        2,
        "runs/vae_quickstart/checkpoints/last.ckpt",
    )


def test_missing_index_json_of_the_data_module(tmp_path):
    from lightning_auffusion.data.pipeline import expand_shards

    with pytest.raises(UserInputError, match="shard index .*nope.*index.json not found"):
        expand_shards(str(tmp_path / "nope" / "index.json"))


def test_failures_exit_1_with_a_hint_and_debug_shows_the_traceback(monkeypatch, capsys):
    import lightning_auffusion.data.stats as stats_module

    def broken(name: str = "x") -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(stats_module, "stats", broken)
    _expect(monkeypatch, capsys, ["stats"], 1, "RuntimeError: disk on fire", "--debug")
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_command_line(monkeypatch, capsys, ["stats", "--debug"])
    monkeypatch.setenv("LIGHTNING_AUFFUSION_DEBUG", "1")
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_command_line(monkeypatch, capsys, ["stats"])


def test_mistyped_model_dict_keys_are_rejected_by_name():
    from lightning_auffusion.diffusion.unet_factory import build_unet, build_vae

    config = tiny_unet_config()
    config["layer_per_block"] = config.pop("layers_per_block")
    with pytest.raises(UserInputError, match="'layer_per_block' \\(did you mean 'layers_per_block'\\?\\)"):
        build_unet(config)
    with pytest.raises(UserInputError, match="latent_chanels"):
        build_vae({"latent_chanels": 4})


def test_long_prompts_warn_once_with_the_counts(caplog):
    cond = tiny_conditioner(("clip",), cross_attention_dim=32, max_length=8)
    long_prompt = " ".join(["dog"] * 40)
    with caplog.at_level(logging.WARNING, logger="lightning_auffusion.diffusion.conditioning"):
        cond.encode_hidden(0, [long_prompt, "a cat"])
        cond.encode_hidden(0, [long_prompt])
    warnings = [r.getMessage() for r in caplog.records if "longer than max_length" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 2 prompts" in warnings[0] and "max_length 8" in warnings[0], warnings
