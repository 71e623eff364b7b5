"""The ``shard`` and ``stats`` commands through the project's CLI (jsonargparse)."""

from __future__ import annotations

import json

import pytest

from lightning_auffusion.cli import run_subcommand


def test_shard_and_stats_commands(audio_dataset, tmp_path):
    audio_dir, manifest = audio_dataset
    config = tmp_path / "shard.yaml"
    config.write_text(f"audio_dir: {audio_dir}\nmanifest: {manifest}\nname: cli\nout_root: {tmp_path}\n"
                      "workers: 0\nprogress: false\nclips_per_shard: 4\ncolumns:\n  split_column: split\n")
    index = run_subcommand("shard", ["--config", str(config), "--split", "train"])
    assert index["totals"]["clips"] == 8 and index["num_shards"] == 4
    result = run_subcommand("stats", ["--name", "cli", "--out_root", str(tmp_path), "--mel.n_mels", "16",
                                      "--progress", "false"])
    written = json.loads((tmp_path / "cli" / "stats.json").read_text())
    assert written["mel_mean"] == result["mel_mean"] and len(written["mel_mean_per_band"]) == 16


def test_unknown_keys_are_rejected_by_name(capsys):
    with pytest.raises(SystemExit):
        run_subcommand("shard", ["--audio_dir", "a", "--manifest", "m.csv", "--name", "x", "--clips_per_shrad", "3"])
    assert "clips_per_shrad" in capsys.readouterr().err
