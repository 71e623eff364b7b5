"""The local sweep backend: trial folders, resolved configs, resume from last.ckpt, failure recording,
evaluation-time sweeps of one checkpoint, and the dry run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from lightning_auffusion.sweeps.command import sweep
from tests.helpers import single_torch_thread  # noqa: F401 - fixture
from tests.sweeps.conftest import tiny_base_config, write_sweep

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_sweep_runs_fit_media_and_evaluation_per_trial_and_resumes(tmp_path, in_process, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the base config's own paths (runs/elsewhere) must not be written
    base = tiny_base_config(tmp_path)
    spec = write_sweep(
        tmp_path, {"model.init_args.encoders.*.dropout": {"values": [0.0, 0.5]}, "trainer.max_steps": {"value": 2}}
    )
    results = sweep(str(spec), base=[str(base)], output=str(tmp_path / "out"))
    assert [r["status"] for r in results] == ["done", "done"]
    root = tmp_path / "out" / "tiny"
    for name, dropout in (("t000_dropout=0", 0.0), ("t001_dropout=0.5", 0.5)):
        trial = root / name
        status = json.loads((trial / "trial.json").read_text())
        assert status["stages_done"] == ["fit", "media", "evaluate"]
        resolved = yaml.safe_load((trial / "config.yaml").read_text())  # LightningCLI's fully resolved config
        assert resolved["model"]["init_args"]["encoders"][0]["dropout"] == dropout
        assert (trial / "checkpoints" / "last.ckpt").is_file()
        report = json.loads((trial / "metrics.json").read_text())
        assert "alignment_accuracy" in report["rows"]["generated"]
        log = [json.loads(line) for line in (trial / "metrics_log.jsonl").read_text().splitlines()]
        assert [row["step"] for row in log if "train/loss" in row] == [1, 2]
        media = [json.loads(line) for line in (trial / "samples" / "prompts.jsonl").read_text().splitlines()]
        assert all((trial / "samples" / m["wav"]).is_file() and (trial / "samples" / m["png"]).is_file() for m in media)
        assert list((trial / "samples").glob("*_attention.png"))
    assert not (tmp_path / "runs").exists()  # nothing outside the output folder
    summary = json.loads((root / "sweep.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["done", "done"]

    # an interrupted second trial (as after kill -9 during its fit): the re-run skips the finished one and
    # restarts the fit from last.ckpt
    status_path = root / "t001_dropout=0.5" / "trial.json"
    status = json.loads(status_path.read_text())
    status.update(status="running", stages_done=[])
    status_path.write_text(json.dumps(status))
    in_process.calls.clear()
    sweep(str(spec), base=[str(base)], output=str(tmp_path / "out"))
    fits = [c for c in in_process.calls if c[0] == "fit"]
    assert len(fits) == 1 and "t001" in fits[0][2]
    assert fits[0][-2:] == ["--ckpt_path", str(root / "t001_dropout=0.5" / "checkpoints" / "last.ckpt")]
    assert json.loads(status_path.read_text())["attempts"] == 2


def test_a_failed_trial_is_recorded_and_the_sweep_goes_on(tmp_path, in_process):
    base = tiny_base_config(tmp_path)
    spec = write_sweep(tmp_path, {"model.init_args.learning_rate": {"values": ["not-a-rate", 0.001]}})
    results = sweep(str(spec), base=[str(base)], output=str(tmp_path / "out"))
    assert [r["status"] for r in results] == ["failed", "done"]
    failed = json.loads((tmp_path / "out" / "tiny" / results[0]["name"] / "trial.json").read_text())
    assert (
        failed["failed_stage"] == "fit"
        and "fit exited with" in failed["error"]
        and "learning_rate" in failed["log_tail"]
    )
    assert "\n" not in failed["error"]


def test_evaluation_time_sweep_of_one_checkpoint(tmp_path, in_process):
    base = tiny_base_config(tmp_path)
    train = write_sweep(tmp_path, {"trainer.max_steps": {"value": 1}}, media={})
    sweep(str(train), base=[str(base)], output=str(tmp_path / "train"))
    checkpoint = next((tmp_path / "train" / "tiny").glob("t000*/checkpoints/last.ckpt"))
    spec = write_sweep(
        tmp_path,
        {
            "evaluate": {
                "values": [
                    {"num_inference_steps": 1, "guidance_scale": 1.0},
                    {"num_inference_steps": 2, "guidance_scale": 3.0},
                ]
            },
            "evaluate.scheduler": {"values": ["ddim", "euler"]},
        },
        media={},
    )
    in_process.calls.clear()
    results = sweep(str(spec), checkpoint=str(checkpoint), output=str(tmp_path / "eval"))
    assert [r["status"] for r in results] == ["done"] * 4
    assert {c[0] for c in in_process.calls} == {"evaluate"}  # no training
    options = yaml.safe_load((tmp_path / "eval" / "tiny" / results[3]["name"] / "evaluate.yaml").read_text())
    assert (
        options["num_inference_steps"] == 2
        and options["scheduler"] == "euler"
        and options["checkpoint"] == str(checkpoint)
        and options["ceiling_cache"] == str(tmp_path / "eval" / "tiny" / "ceiling_cache")  # shared by the trials
    )
    bad = write_sweep(tmp_path, {"trainer.max_steps": {"values": [1, 2]}})
    with pytest.raises(SystemExit, match="need training"):
        sweep(str(bad), checkpoint=str(checkpoint), output=str(tmp_path / "eval"))


def test_dry_run_lists_trials_in_a_subprocess_and_bad_input_is_one_line(tmp_path):
    spec = write_sweep(
        tmp_path,
        {
            "model.init_args.encoders": {
                "values": [[{"name": "minilm", "kind": "minilm"}], [{"name": "scratch", "kind": "scratch"}]]
            }
        },
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_auffusion",
            "sweep",
            "--sweep",
            str(spec),
            "--dry_run",
            "true",
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "2 trials under" in result.stdout and "t001_encoders=scratch" in result.stdout
    assert not (tmp_path / "out").exists()
    bayes = tmp_path / "bayes.yaml"
    bayes.write_text("method: bayes\nparameters: {a: {values: [1, 2]}}\n")
    with pytest.raises(SystemExit, match="--backend wandb") as info:
        sweep(str(bayes))
    assert "\n" not in str(info.value)
    with pytest.raises(SystemExit, match="no base config"):
        sweep(str(spec), output=str(tmp_path / "out"))
