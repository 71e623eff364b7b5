"""The ``synth`` subcommand: deterministic, well-formed manifests and WAVs, held-out test split."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lightning_auffusion.synth import analyse, is_heldout, parse_caption, synth
from lightning_auffusion.synth.generator import espeak_available

SMALL = dict(n_train=6, n_val=2, n_test=3, duration=3.0, seed=3)


def _read(root: Path, split: str) -> list[dict]:
    with open(root / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synth(str(root), **SMALL)
    return root


def test_manifests_are_well_formed(dataset):
    for split, count in (("train", 6), ("val", 2), ("test", 3)):
        rows = _read(dataset, split)
        assert len(rows) == count
        assert len({r["id"] for r in rows}) == count
        for row in rows:
            assert {"id", "file", "captions", "attributes", "split"} <= set(row)
            assert row["split"] == split
            assert row["file"] == f"audio/{split}/{row['id']}.wav"
            info = sf.info(str(dataset / row["file"]))
            assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 48000)
            assert 1 <= len(row["attributes"]) <= 3
            assert len(set(row["captions"])) == 5
            for caption in row["captions"]:
                assert parse_caption(caption) == row["attributes"]


def test_heldout_combinations_only_in_test(dataset):
    for split in ("train", "val"):
        for row in _read(dataset, split):
            assert not any(is_heldout(e) for e in row["attributes"]), row
    for row in _read(dataset, "test"):
        assert any(is_heldout(e) for e in row["attributes"]), row


def test_written_clips_pass_the_analyser(dataset):
    for split in ("train", "test"):
        for row in _read(dataset, split):
            audio, sr = sf.read(str(dataset / row["file"]))
            verdicts = analyse(audio, sr, row["attributes"])
            assert all(verdicts.values()), (row, verdicts)


def test_deterministic_per_seed(dataset, tmp_path):
    again = tmp_path / "again"
    synth(str(again), **SMALL)
    other = tmp_path / "other"
    synth(str(other), **dict(SMALL, seed=4))
    for split in ("train", "val", "test"):
        assert (again / f"{split}.jsonl").read_text() == (dataset / f"{split}.jsonl").read_text()
        for row in _read(dataset, split):
            assert (again / row["file"]).read_bytes() == (dataset / row["file"]).read_bytes()
    assert (other / "train.jsonl").read_text() != (dataset / "train.jsonl").read_text()


def test_clip_does_not_depend_on_split_sizes(dataset, tmp_path):
    bigger = tmp_path / "bigger"
    synth(str(bigger), **dict(SMALL, n_train=7, n_val=0, n_test=0))
    assert _read(bigger, "train")[:6] == _read(dataset, "train")
    assert _read(bigger, "val") == []


@pytest.mark.parametrize("bad", [dict(n_train=-1), dict(duration=0.0), dict(max_events=0), dict(sample_rate=4000)])
def test_bad_arguments_raise(tmp_path, bad):
    with pytest.raises(ValueError):
        synth(str(tmp_path), **dict(SMALL, **bad))


def test_cli_from_signature(tmp_path):
    jsonargparse = pytest.importorskip("jsonargparse")
    out = tmp_path / "cli"
    jsonargparse.CLI(synth, args=[str(out), "--n_train", "1", "--n_val", "0", "--n_test", "1", "--duration", "1.0"])
    assert len(_read(out, "train")) == 1 and len(_read(out, "test")) == 1
    with pytest.raises(SystemExit):
        jsonargparse.CLI(synth, args=[str(out), "--no_such_option", "1"])


def test_speech_skipped_with_warning_without_espeak(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with caplog.at_level(logging.WARNING):
        synth(str(tmp_path / "s"), **dict(SMALL, n_train=1, n_val=1, n_test=0, speech=True))
    assert "espeak-ng" in caplog.text
    assert all(r["attributes"][0]["source"] != "speech" for r in _read(tmp_path / "s", "train"))


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")
def test_speech_clips(tmp_path):
    synth(str(tmp_path), **dict(SMALL, n_train=1, n_val=1, n_test=0, speech=True, n_speech=2))
    rows = [r for r in _read(tmp_path, "train") if r["attributes"][0]["source"] == "speech"]
    assert len(rows) == 2
    assert sum(r["attributes"][0]["source"] == "speech" for r in _read(tmp_path, "val")) == 2
    for row in rows:
        assert len(row["attributes"]) == 1 and row["attributes"][0]["words"]
        for caption in row["captions"]:
            assert parse_caption(caption) == row["attributes"]
        audio, sr = sf.read(str(tmp_path / row["file"]))
        assert np.abs(audio).max() > 0.05
        assert analyse(audio, sr, row["attributes"]) == {"event0.source": True}
        tone = [{"source": "sine", "pitch": "low", "pattern": "continuous", "loudness": "loud"}]
        assert analyse(audio, sr, tone)["event0.source"] is False
