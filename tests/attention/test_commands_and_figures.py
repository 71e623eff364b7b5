"""The manipulation subcommands through the CLI, `generate --attention_maps`, and the figure helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_auffusion.attention.capture import TokenAttention
from lightning_auffusion.attention.figures import (
    attention_figure,
    clean_piece,
    figure_to_array,
    save_figure,
    wandb_image,
)
from lightning_auffusion.cli import main
from tests.attention.conftest import STEPS

COMMON = ["--num_inference_steps", str(STEPS), "--device", "cpu"]


def read_manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manipulations.jsonl").read_text().splitlines()]


def test_style_transfer_and_inpaint_commands(tiny_checkpoint, source_file, tmp_path):
    main(
        [
            "style-transfer",
            "--audio",
            source_file,
            "--prompt",
            "a dog barks",
            "--strength",
            "0.5",
            "--checkpoint",
            tiny_checkpoint,
            "--output_dir",
            str(tmp_path),
            *COMMON,
        ]
    )
    main(
        [
            "inpaint",
            "--audio",
            source_file,
            "--prompt",
            "a dog barks",
            "--start_s",
            "0.3",
            "--end_s",
            "0.9",
            "--checkpoint",
            tiny_checkpoint,
            "--output_dir",
            str(tmp_path),
            *COMMON,
        ]
    )
    records = read_manifest(tmp_path)
    assert [r["command"] for r in records] == ["style-transfer", "inpaint"]
    for record in records:
        for key in ("wav", "png", "wav_source", "png_source"):
            assert (tmp_path / record[key]).is_file()
    audio, rate = sf.read(tmp_path / records[0]["wav"])
    assert rate == 16000 and audio.shape == (20480,)  # the 1.28 s source
    assert records[0]["wav"] == "style_0.50_a-dog-barks.wav"


def test_word_swap_and_reweight_commands(tiny_checkpoint, tmp_path):
    main(
        [
            "word-swap",
            "--source_prompt",
            "a dog barks",
            "--target_prompt",
            "a cat barks",
            "--cross_window",
            "[0.0, 0.5]",
            "--duration_seconds",
            "1.0",
            "--checkpoint",
            tiny_checkpoint,
            "--output_dir",
            str(tmp_path),
            *COMMON,
        ]
    )
    main(
        [
            "reweight",
            "--prompt",
            "a dog barks",
            "--words",
            '{"dog": 2.0}',
            "--duration_seconds",
            "1.0",
            "--checkpoint",
            tiny_checkpoint,
            "--output_dir",
            str(tmp_path),
            *COMMON,
        ]
    )
    records = read_manifest(tmp_path)
    assert records[0]["cross_window"] == [0.0, 0.5] and records[1]["words"] == {"dog": 2.0}
    assert (tmp_path / "swap_a-cat-barks.wav").is_file() and (tmp_path / "swap_a-cat-barks_source.wav").is_file()
    assert (tmp_path / "reweight_dog2_a-dog-barks.png").is_file()


def test_commands_reject_bad_input(tiny_checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="source audio"):
        main(
            [
                "style-transfer",
                "--audio",
                str(tmp_path / "missing.wav"),
                "--prompt",
                "x",
                "--checkpoint",
                tiny_checkpoint,
            ]
        )
    with pytest.raises(ValueError, match="exactly one"):
        main(["reweight", "--prompt", "a dog", "--words", '{"dog": 2}'])
    with pytest.raises(SystemExit):  # unknown option rejected by name
        main(["word-swap", "--source_prompt", "a", "--target_prompt", "b", "--bogus", "1"])


def _generate_with_attention_maps(checkpoint: str, prompts: str, out) -> None:
    """The generate command with --attention_maps on 1 s clips of the tiny checkpoint (prompts: a JSON list)."""
    argv = ["generate", "--prompts", prompts, "--checkpoint", checkpoint, "--attention_maps", "true"]
    main([*argv, "--duration_seconds", "1.0", "--output_dir", str(out), *COMMON])


def test_generate_command_writes_attention_figures(tiny_checkpoint, tmp_path):
    _generate_with_attention_maps(tiny_checkpoint, '["a dog barks", "rain falls"]', tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"0000_a-dog-barks.wav", "0000_a-dog-barks_attention.png", "0001_rain-falls_attention.png"} <= names


def test_figure_files_and_wandb_images(tmp_path):
    maps = torch.rand(4, 16, 64).softmax(0)
    labels = ["clip:<|startoftext|>", "clip:dog</w>", "clip:<|endoftext|>", "clip:<pad>"]
    attention = TokenAttention(
        "a dog", maps, labels, [0, 1, 2, 3], frozenset({"clip:<|startoftext|>", "clip:<|endoftext|>"})
    )
    assert attention.keep() == [1]
    assert attention.keep(skip_special=False) == [0, 1, 2]
    image = torch.rand(3, 16, 64) * 2 - 1
    fig = attention_figure(attention, image)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["spectrogram", "dog"]
    path = save_figure(fig, tmp_path / "sub" / "maps.png")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    array = figure_to_array(fig)
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] == 3
    assert wandb_image(fig, caption="a dog").__class__.__name__ == "Image"
    assert clean_piece("t5:\u2581barks", with_encoder=True) == "t5: barks"
    with pytest.raises(ValueError, match="normalize"):
        attention_figure(attention, image, normalize="log")


def test_generate_command_writes_the_attention_localisation(tiny_checkpoint, tmp_path):
    prompts = '["a loud low sine tone, then quiet white noise pulsing on and off", "a dog barks"]'
    _generate_with_attention_maps(tiny_checkpoint, prompts, tmp_path)
    saved = json.loads((tmp_path / "localisation.json").read_text())
    assert saved["prompts"] == 1 and saved["skipped"] == 1 and saved["chance"] == pytest.approx(0.5)
    assert 0.0 <= saved["localisation"] <= 1.0
    first, second = saved["per_prompt"]
    assert first["id"] == 0 and first["events"] == 2 and {t["event"] for t in first["tokens"]} == {0, 1}
    assert second["score"] is None and second["events"] == 0
