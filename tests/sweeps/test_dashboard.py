"""The dashboard over a real tiny sweep (two trials with W&B offline runs): the page's content, the Markdown
summary, reference lines only for comparable reports, W&B Tables through a stand-in, and a headless Chromium
rendering (no console errors, every audio element loads with a duration > 0, a non-blank screenshot)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from lightning_auffusion.sweeps.dashboard import (
    _references,
    dashboard,
    log_wandb_tables,
)
from lightning_auffusion.sweeps.runs import Run, find_run_folders, read_run, varying_params
from tests.sweeps.conftest import PROMPTS, InProcess, tiny_base_config, write_sweep


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory):
    from lightning_auffusion.sweeps import runner
    from lightning_auffusion.sweeps.command import sweep

    tmp = tmp_path_factory.mktemp("dash_sweep")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "run_command", InProcess())
        spec = write_sweep(
            tmp,
            {"model.init_args.encoders.*.dropout": {"values": [0.0, 0.5]}},
            media={"prompts": PROMPTS, "device": "cpu"},
        )
        sweep(str(spec), base=[str(tiny_base_config(tmp, logger=True))], output=str(tmp / "out"))
    torch.set_num_threads(threads)
    return tmp / "out" / "tiny"


@pytest.fixture(scope="module")
def page(sweep_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("dash_page") / "dashboard"
    return Path(dashboard([str(sweep_folder)], output=str(out), title="tiny sweep"))


@pytest.fixture(scope="module")
def compact_page(sweep_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("dash_compact") / "dashboard"
    return Path(dashboard([str(sweep_folder)], output=str(out), title="tiny sweep", compact_media=True))


def test_runs_are_read_from_trial_folders_and_their_wandb_offline_runs(sweep_folder):
    folders = find_run_folders([str(sweep_folder)])
    assert [f.name for f in folders] == ["t000_dropout=0", "t001_dropout=0.5"]
    run = read_run(folders[1])
    assert run.status == "done" and run.params == {"model.init_args.encoders.*.dropout": 0.5}
    assert [s for s, _ in run.curves["train/loss"]] == [1, 2]
    assert "alignment_accuracy" in run.final and len(run.media) == 2
    assert all(m["png"] and m["attention"] and m["wav"].is_file() for m in run.media)
    wandb_runs = sorted((folders[1] / "wandb").glob("offline-run-*"))
    assert wandb_runs
    bare = read_run(wandb_runs[0])  # a W&B offline run folder given directly: its history gives the curves
    assert bare.status == "wandb run" and bare.curves.get("train/loss")


def test_page_has_one_row_per_trial_charts_heat_map_curves_and_media(page, sweep_folder):
    text = page.read_text()
    rows = re.search(r'<table id="runs">.*?<tbody>(.*?)</tbody>', text, re.DOTALL).group(1)
    assert rows.count("<tr>") == 2 and "t000_dropout=0" in rows and "t001_dropout=0.5" in rows
    assert "dropout" in text and "Alignment acc." in text
    assert text.count("<audio") == 4 and text.count('src="data:audio/wav;base64,') == 4
    assert text.count('alt="spectrogram') == 4 and text.count('alt="attention') == 4
    assert 'id="alignment-heat-map"' in text and "hsl(" in text
    assert 'aria-label="train/loss"' in text and "<polyline" in text
    assert all(p in text for p in PROMPTS)
    assert "paper:" not in text  # alignment only: no published column to compare with
    assert "http://" not in text and "https://" not in text  # self-contained
    summary = (page.parent / "summary.md").read_text()
    assert summary.count("| t00") == 4  # runs table + breakdown table, one line per trial each
    assert "Media: 4 generated clips" in summary


def test_copy_mode_links_media_relatively(sweep_folder, tmp_path):
    out = tmp_path / "dash"
    text = Path(dashboard([str(sweep_folder / "t000_dropout=0")], output=str(out), media="copy")).read_text()
    links = re.findall(r'src="(media/[^"]+)"', text)
    assert len(links) == 6 and all((out / link).is_file() for link in links)
    with pytest.raises(SystemExit, match="not a folder"):
        dashboard([str(tmp_path / "missing")], output=str(out))


def test_compact_media_are_jpeg_and_ogg_copies_smaller_than_the_originals(sweep_folder, compact_page, tmp_path):
    import soundfile as sf
    from PIL import Image

    text = compact_page.read_text()
    assert text.count('src="data:audio/ogg;base64,') == 4 and "data:audio/wav" not in text
    assert text.count("data:image/jpeg;base64,") == 8 and "data:image/png" not in text
    out = tmp_path / "dash"
    text = Path(
        dashboard([str(sweep_folder / "t000_dropout=0")], output=str(out), media="copy", compact_media=True)
    ).read_text()
    links = re.findall(r'src="(media/[^"]+)"', text)
    assert sorted(Path(link).suffix for link in links) == [".jpg"] * 4 + [".ogg"] * 2
    samples = sweep_folder / "t000_dropout=0" / "samples"
    for link in links:
        copy = out / link
        original = samples / (copy.stem + {".jpg": ".png", ".ogg": ".wav"}[copy.suffix])
        if copy.suffix == ".jpg":
            with Image.open(copy) as a, Image.open(original) as b:
                assert a.format == "JPEG" and a.size == b.size
        else:
            audio, rate = sf.read(str(copy))
            assert (len(audio), rate) == (sf.info(str(original)).frames, sf.info(str(original)).samplerate)
    assert sum((out / link).stat().st_size for link in links) < 0.5 * sum(
        p.stat().st_size for p in samples.iterdir() if p.suffix in (".png", ".wav")
    )


def test_paper_rows_are_reference_lines_only_for_real_weights():
    real = Run("a", Path("."), rows={"generated": {"fd": 20.0, "clap_score": 0.5}}, comparable=True)
    fake = Run("b", Path("."), rows={"generated": {"fd": 30.0}, "ceiling_vocoder": {"fd": 3.0}}, comparable=False)
    refs = _references([real], "clap_score")
    assert len(refs) == 5 and refs[2] == ("paper: Auffusion-Full, CLAP", pytest.approx(0.583), "#b22222")
    assert [r[0] for r in _references([real, fake], "fd")] == ["stage ceiling ceiling_vocoder (b)"]
    assert _references([real], "alignment_accuracy") == []


def test_wandb_tables_go_to_a_summary_run(sweep_folder, monkeypatch):
    logged = {}

    class Table:
        def __init__(self, columns, data):
            self.columns, self.data = columns, data

    class FakeRun:
        def log(self, data):
            logged.update(data)

        def finish(self):
            logged["finished"] = True

    module = types.ModuleType("wandb")
    module.init = lambda **kw: logged.update(init=kw) or FakeRun()
    module.Table, module.Audio, module.Image = Table, lambda p: ("audio", p), lambda p: ("image", p)
    monkeypatch.setitem(sys.modules, "wandb", module)
    log_wandb_tables([read_run(f) for f in find_run_folders([str(sweep_folder)])], "proj", "dashboard-tiny")
    assert logged["init"]["project"] == "proj" and logged["init"]["job_type"] == "dashboard" and logged["finished"]
    runs = logged["dashboard/runs"]
    assert len(runs.data) == 2 and runs.columns[:3] == ["run", "status", "model.init_args.encoders.*.dropout"]
    assert len(logged["dashboard/media"].data) == 4 and logged["dashboard/media"].data[0][2][0] == "audio"
    assert len(logged["dashboard/alignment"].data) == 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
@pytest.mark.parametrize("which", ["page", "compact_page"])
def test_page_renders_in_headless_chromium(which, request, tmp_path):
    page = request.getfixturevalue(which)
    base = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
        "--enable-logging=stderr",
        "--v=0",
    ]
    result = subprocess.run(
        [*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    status = re.search(r'<p id="audio-status"[^>]*>', dom).group(0)
    assert 'data-total="4"' in status and 'data-loaded="4"' in status, status
    errors = json.loads(re.search(r'<body data-errors="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    assert errors == []
    assert "Uncaught" not in result.stderr and not re.search(r'CONSOLE\(\d+\)\] "(Uncaught|Error)', result.stderr)
    shot = tmp_path / "page.png"
    subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=False,
    )
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2000)
    low, high = image.getextrema()
    assert high - low > 100  # not a blank page


def test_an_evaluate_folder_names_its_model_and_lora_adapter(tmp_path):
    report = {
        "metrics": {"alignment_accuracy": 0.5},
        "inputs": {"checkpoint": "runs/ldm/last.ckpt + LoRA runs/lora/export"},
        "comparable_with_published": False,
    }
    for name in ("base", "lora"):
        (tmp_path / name).mkdir()
        shown = dict(report, inputs={"checkpoint": "runs/ldm/last.ckpt"}) if name == "base" else report
        (tmp_path / name / "metrics.json").write_text(json.dumps(shown))
    runs = [read_run(f) for f in find_run_folders([str(tmp_path)])]
    assert [r.params["model"] for r in runs] == ["runs/ldm/last.ckpt", "runs/ldm/last.ckpt + LoRA runs/lora/export"]
    assert all(r.status == "evaluated" for r in runs)
    assert varying_params(runs) == ["model"]  # a column of the page and the summary
