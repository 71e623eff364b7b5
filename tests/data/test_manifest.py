"""Manifest readers: AudioCaps, Clotho and JSONL layouts, caption clean-up, merging, rejects."""

from __future__ import annotations

import json

import pytest

from lightning_auffusion.data.manifest import ManifestConfig, normalize_caption, read_manifest


def touch(folder, *names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_normalize_caption_whitespace_and_unicode():
    assert normalize_caption("  a\tdog \n barks\u00a0 loudly ") == "a dog barks loudly"
    assert normalize_caption("Ein Hund bellt – über  die Straße 犬") == "Ein Hund bellt – über die Straße 犬"
    assert normalize_caption(None) == ""
    assert normalize_caption(float("nan")) == ""
    assert normalize_caption(42) == "42"


def test_audiocaps_rows_sharing_a_clip_are_merged(tmp_path):
    audio = tmp_path / "audio"
    touch(audio, "abc_30.wav", "xyz_0.wav")
    manifest = tmp_path / "test.csv"
    manifest.write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "1,abc,30,A man speaks\n"
        "2,abc,30,  a man   is speaking \n"
        "3,xyz,0,Birds sing\n"
        "4,abc,30,A man speaks\n"  # exact duplicate caption: kept once
        "5,nope,10,Missing file\n",
        encoding="utf-8",
    )
    parsed = read_manifest(manifest, audio)
    by_source = {e.source: e for e in parsed.entries}
    assert set(by_source) == {"abc_30.wav", "xyz_0.wav", "nope_10"}
    abc = by_source["abc_30.wav"]
    assert abc.captions == ["A man speaks", "a man is speaking"]
    assert abc.metadata["audiocap_id"] == ["1", "2", "4"]  # differing fields become lists
    assert abc.metadata["youtube_id"] == "abc" and abc.metadata["start_time"] == "30"
    assert abc.rows == [2, 3, 5]
    assert by_source["xyz_0.wav"].captions == ["Birds sing"]
    assert parsed.rejects == []  # the missing file is rejected later, when its audio is read


def test_audiocaps_template_falls_back_to_plain_youtube_id(tmp_path):
    audio = tmp_path / "audio"
    touch(audio, "Yabc.flac")
    manifest = tmp_path / "m.csv"
    manifest.write_text("audiocap_id,youtube_id,start_time,caption\n7,abc,30,hello\n", encoding="utf-8")
    assert [e.source for e in read_manifest(manifest, audio).entries] == ["Yabc.flac"]


def test_clotho_numbered_caption_columns(tmp_path):
    audio = tmp_path / "audio"
    touch(audio, "clip one.wav", "clip2.wav")
    manifest = tmp_path / "clotho_captions_evaluation.csv"
    header = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5,keywords"
    manifest.write_text(
        "\ufeff" + header + "\n"
        'clip one.wav,c1,c2,c3,c4,"c5, with comma",k\n'
        "clip2.wav,,only second,,,,k2\n",
        encoding="utf-8",
    )
    entries = read_manifest(manifest, audio).entries
    assert entries[0].source == "clip one.wav"
    assert entries[0].captions == ["c1", "c2", "c3", "c4", "c5, with comma"]
    assert entries[0].metadata == {"keywords": "k"}
    assert entries[1].captions == ["only second"]


def test_numbered_captions_sort_numerically(tmp_path):
    audio = tmp_path / "audio"
    touch(audio, "a.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"file": "a.wav", "caption_10": "ten", "caption_2": "two", "caption_1": "one"}) + "\n")
    assert read_manifest(manifest, audio).entries[0].captions == ["one", "two", "ten"]


def test_jsonl_synth_style_with_split_filter_and_metadata(tmp_path):
    audio = tmp_path / "audio"
    touch(audio, "train/0001.wav", "test/0002.wav")
    rows = [
        {"id": "0001", "file": "train/0001.wav", "captions": ["a beep", "a short beep"], "attributes": {"n": 1},
         "split": "train"},
        {"id": "0002", "file": "test/0002.wav", "captions": ["a hum"], "attributes": {"n": 2}, "split": "test"},
    ]
    manifest = tmp_path / "synth.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    parsed = read_manifest(manifest, audio, split="train")
    assert [e.source for e in parsed.entries] == ["train/0001.wav"]
    assert parsed.entries[0].metadata == {"id": "0001", "attributes": {"n": 1}, "split": "train"}
    assert parsed.filtered_out == 1
    assert parsed.referenced == {"train/0001.wav", "test/0002.wav"}


def test_jsonl_id_only_rows_use_the_id_template(tmp_path):
    audio = tmp_path / "audio"
    touch(audio, "clip7.ogg")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "clip7", "caption": "water drips"}) + "\n", encoding="utf-8")
    entries = read_manifest(manifest, audio).entries
    assert entries[0].source == "clip7.ogg" and entries[0].captions == ["water drips"]


def test_json_data_list_with_wav_key(tmp_path):
    audio = tmp_path / "audio"
    touch(audio, "x.wav")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"data": [{"wav": "x.wav", "caption": "thunder"}]}), encoding="utf-8")
    assert read_manifest(manifest, audio).entries[0].captions == ["thunder"]


def test_bad_rows_are_rejects_with_reasons(tmp_path):
    audio = tmp_path / "audio"
    touch(audio, "a.wav", "b.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"file": "a.wav", "captions": ["  ", None]}) + "\n"
        + "{not json\n"
        + json.dumps(["a list"]) + "\n"
        + json.dumps({"caption": "no file here"}) + "\n"
        + json.dumps({"file": "b.wav", "captions": ["fine"]}) + "\n",
        encoding="utf-8",
    )
    parsed = read_manifest(manifest, audio)
    assert [e.source for e in parsed.entries] == ["b.wav"]
    reasons = {r["path"].rsplit(":", 1)[-1] if ":" in r["path"] else r["path"]: r["reason"] for r in parsed.rejects}
    assert "no usable caption" in reasons["a.wav"]
    assert "invalid JSON" in reasons["2"]
    assert "not a JSON object" in reasons["3"]
    assert "names no audio file" in reasons["4"]
    assert all(r["stage"] == "manifest" for r in parsed.rejects)


def test_configurable_columns(tmp_path):
    audio = tmp_path / "audio"
    touch(audio, "clips/q.wav")
    manifest = tmp_path / "m.tsv"
    manifest.write_text("wavname\tdescription\tsource\nq\tsomething creaks\tfreesound\n", encoding="utf-8")
    config = ManifestConfig(file_columns=[], file_templates=["clips/{wavname}"], caption_columns=["description"])
    entries = read_manifest(manifest, audio, config).entries
    assert entries[0].source == "clips/q.wav"
    assert entries[0].captions == ["something creaks"]
    assert entries[0].metadata == {"wavname": "q", "source": "freesound"}


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        read_manifest(tmp_path / "nope.csv", tmp_path)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ValueError, match="manifest format"):
        read_manifest(tmp_path / "m.txt", tmp_path)
    with pytest.raises(ValueError, match="format"):
        ManifestConfig(format="xml")
