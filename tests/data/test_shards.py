"""The ``shard`` command: bad input, shard contents, index, rejects log, resume, parallel workers."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import soundfile as sf

from lightning_auffusion.data import shards as shards_mod
from lightning_auffusion.data.pipeline import iterate_shard_samples
from lightning_auffusion.data.shards import sample_key, shard

from .conftest import INVALID, SR, VALID, tone


def read_rejects(folder):
    return [json.loads(line) for line in (folder / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]


def test_every_valid_clip_sharded_every_invalid_one_rejected_with_reason(shard_dir):
    clips = {s["metadata"]["source"]: s for s in iterate_shard_samples(str(shard_dir / "index.json"))}
    assert set(clips) == set(VALID)
    rejects = {r["path"]: r["reason"] for r in read_rejects(shard_dir)}
    assert set(rejects) == set(INVALID)
    for name, fragment in INVALID.items():
        assert fragment in rejects[name], (name, rejects[name])
    for name, caption in VALID.items():
        clip = clips[name]
        assert clip["captions"][0] == caption  # UTF-8 kept intact, first caption first
        assert clip["captions"][1] == f"second caption for {name}"  # whitespace normalised
        assert clip["sample_rate"] == SR and clip["audio"].dtype == np.float32 and clip["audio"].ndim == 1
        assert clip["metadata"]["duration"] == pytest.approx(clip["audio"].shape[0] / SR, abs=1e-6)
    # the file listed three times: captions merged, duplicate dropped
    assert clips["good_a.wav"]["captions"] == ["a dog barks twice", "second caption for good_a.wav", "a small dog yaps"]
    # conversions: stereo averaged, 48 kHz resampled, 8-bit decoded, partial truncation kept
    assert clips["stereo.wav"]["metadata"]["original_channels"] == 2
    assert clips["rate48k.wav"]["metadata"]["original_sample_rate"] == 48000
    assert clips["rate48k.wav"]["audio"].shape[0] == int(1.2 * SR)
    assert 1.4 < clips["truncated_partial.wav"]["metadata"]["duration"] < 1.6
    assert np.abs(clips["eight_bit.wav"]["audio"]).max() > 0.3


def test_stored_audio_matches_source(shard_dir, audio_dataset):
    audio_dir, _ = audio_dataset
    clips = {s["metadata"]["source"]: s["audio"] for s in iterate_shard_samples(str(shard_dir / "index.json"))}
    source, _ = sf.read(audio_dir / "good_a.wav", dtype="float32")
    np.testing.assert_allclose(clips["good_a.wav"], source, atol=1.0 / 32768 + 1e-6)  # 16-bit FLAC
    stereo, _ = sf.read(audio_dir / "stereo.wav", dtype="float32")
    np.testing.assert_allclose(clips["stereo.wav"], stereo.mean(axis=1), atol=2.0 / 32768)


def test_shard_members_and_json_record(shard_dir):
    with tarfile.open(shard_dir / "toy-000000.tar") as tar:
        names = tar.getnames()
        record = json.loads(tar.extractfile("good_a.json").read().decode("utf-8"))
    assert names == ["good_a.flac", "good_a.json", "good_b.flac", "good_b.json", "stereo.flac", "stereo.json"]
    assert record["sample_rate"] == SR and record["source"] == "good_a.wav" and record["duration"] == 2.0
    assert record["split"] == "train" and record["attributes"] == {"name": "good_a.wav"}
    info = sf.info(__import__("io").BytesIO(
        tarfile.open(shard_dir / "toy-000000.tar").extractfile("good_a.flac").read()))
    assert info.format == "FLAC" and info.channels == 1 and info.samplerate == SR


def test_index_counts_durations_and_settings(shard_dir):
    index = json.loads((shard_dir / "index.json").read_text())
    assert index["complete"] and index["num_shards"] == 5
    assert [s["file"] for s in index["shards"]] == [f"toy-{i:06d}.tar" for i in range(5)]
    assert [s["count"] for s in index["shards"]] == [3, 3, 2, 0, 0]
    assert index["totals"]["clips"] == len(VALID)
    assert index["totals"]["rejected"] == len(INVALID)
    clips = list(iterate_shard_samples(str(shard_dir / "index.json")))
    assert index["totals"]["duration_seconds"] == pytest.approx(sum(c["audio"].shape[0] for c in clips) / SR, abs=1e-3)
    assert index["settings"]["max_seconds"] == 30.0 and index["settings"]["min_seconds"] == 1.0
    assert index["settings"]["sample_rate"] == SR and index["pattern"] == "toy-{000000..000004}.tar"


def test_max_seconds_keeps_the_start(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    ramp = np.linspace(-0.9, 0.9, SR * 4, dtype=np.float32)
    sf.write(audio / "ramp.wav", ramp, SR, subtype="FLOAT")
    (tmp_path / "m.csv").write_text("file,caption\nramp.wav,a ramp\n")
    shard(str(audio), str(tmp_path / "m.csv"), "r", out_root=str(tmp_path / "out"), max_seconds=2.5, workers=0, progress=False)
    (clip,) = iterate_shard_samples(str(tmp_path / "out" / "r"))
    assert clip["audio"].shape[0] == int(2.5 * SR)
    np.testing.assert_allclose(clip["audio"], ramp[: int(2.5 * SR)], atol=1.0 / 32768 + 1e-6)


def test_resume_skips_finished_shards(audio_dataset, tmp_path, monkeypatch):
    audio_dir, manifest = audio_dataset
    out = tmp_path / "out"
    kwargs = dict(out_root=str(out), clips_per_shard=3, workers=0, progress=False)
    shard(str(audio_dir), str(manifest), "toy", **kwargs)
    folder = out / "toy"
    first_index = json.loads((folder / "index.json").read_text())
    first_rejects = read_rejects(folder)
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.tar")}

    written = []
    real = shards_mod.write_shard
    monkeypatch.setattr(shards_mod, "write_shard", lambda task: written.append(task["shard"]) or real(task))
    shard(str(audio_dir), str(manifest), "toy", **kwargs)
    assert written == []  # nothing redone
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.tar")} == mtimes

    # an interrupted run: shard 1 missing from the index, shard 3 file gone, a stray partial file
    index = json.loads((folder / "index.json").read_text())
    index["shards"] = [s for s in index["shards"] if s["shard"] != 1]
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "toy-000003.tar").unlink()
    (folder / "toy-000004.tar.partial").write_bytes(b"junk")
    shard(str(audio_dir), str(manifest), "toy", **kwargs)
    assert sorted(written) == [1, 3]
    final = json.loads((folder / "index.json").read_text())
    assert final["shards"] == first_index["shards"] and final["complete"]
    assert read_rejects(folder) == first_rejects
    assert len(list(iterate_shard_samples(str(folder)))) == len(VALID)


def test_changed_settings_need_overwrite(audio_dataset, tmp_path):
    audio_dir, manifest = audio_dataset
    kwargs = dict(out_root=str(tmp_path), workers=0, progress=False)
    shard(str(audio_dir), str(manifest), "toy", clips_per_shard=4, **kwargs)
    with pytest.raises(ValueError, match="overwrite"):
        shard(str(audio_dir), str(manifest), "toy", clips_per_shard=5, **kwargs)
    index = shard(str(audio_dir), str(manifest), "toy", clips_per_shard=5, overwrite=True, **kwargs)
    assert sorted(p.name for p in (tmp_path / "toy").glob("*.tar")) == ["toy-000000.tar", "toy-000001.tar", "toy-000002.tar"]
    assert index["totals"]["clips"] == len(VALID)


def test_parallel_workers_match_serial(audio_dataset, shard_dir, tmp_path):
    audio_dir, manifest = audio_dataset
    shard(str(audio_dir), str(manifest), "toy", out_root=str(tmp_path), clips_per_shard=3, workers=2, progress=False)
    for name in [f"toy-{i:06d}.tar" for i in range(5)]:
        assert (tmp_path / "toy" / name).read_bytes() == (shard_dir / name).read_bytes()  # reproducible tars
    assert read_rejects(tmp_path / "toy") == read_rejects(shard_dir)


def test_unlisted_files_reported_on_request(audio_dataset, tmp_path):
    audio_dir, manifest = audio_dataset
    lines = manifest.read_text(encoding="utf-8").splitlines()
    small = tmp_path / "small.jsonl"
    small.write_text(lines[0] + "\n", encoding="utf-8")
    shard(str(audio_dir), str(small), "s", out_root=str(tmp_path), workers=0, report_unlisted=True, progress=False)
    rejects = {r["path"]: r["reason"] for r in read_rejects(tmp_path / "s")}
    assert "good_a.wav" not in rejects
    assert rejects["stereo.wav"] == "not listed in the manifest (no captions)"


def test_keys_are_webdataset_safe():
    assert sample_key("sub/dir/clip.v2 final.wav") == "sub_dir_clip_v2_final"
    assert sample_key("Y-abc_123.flac") == "Y-abc_123"
    assert sample_key("ünïcode.wav") == "n_code"


def test_clear_errors_for_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="audio_dir"):
        shard(str(tmp_path / "nope"), "m.csv", "x", out_root=str(tmp_path))
    with pytest.raises(ValueError, match="plain folder name"):
        shard(str(tmp_path), "m.csv", "a/b", out_root=str(tmp_path))
    with pytest.raises(ValueError, match="min_seconds"):
        shard(str(tmp_path), "m.csv", "x", out_root=str(tmp_path), min_seconds=5, max_seconds=2)


def test_float_audio_above_full_scale_is_rescaled(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "loud.wav", tone(1.5, amp=2.0), SR, subtype="FLOAT")
    (tmp_path / "m.csv").write_text("file,caption\nloud.wav,very loud\n")
    shard(str(audio), str(tmp_path / "m.csv"), "l", out_root=str(tmp_path), workers=0, progress=False)
    (clip,) = iterate_shard_samples(str(tmp_path / "l"))
    assert clip["metadata"]["rescaled_from_peak"] > 1.9
    assert 0.99 < np.abs(clip["audio"]).max() <= 1.0
