"""A small audio folder with valid and deliberately broken files, plus manifests describing it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000


def tone(seconds: float, sr: int = SR, freq: float = 440.0, amp: float = 0.5, seed: int = 0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    noise = np.random.default_rng(seed).standard_normal(t.shape[0]) * 0.01
    return (amp * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


# name -> (expected to be kept, expected reason fragment when rejected)
VALID = {
    "good_a.wav": "a dog barks twice",
    "good_b.flac": "rain falls on a tin roof",
    "stereo.wav": "a car passes from left to right",
    "rate48k.wav": "birds chirp in the morning",
    "eight_bit.wav": "an old radio plays music",
    "long.wav": "an engine idles for a long time",
    "truncated_partial.wav": "wind blows through trees",
    "sub/nested.wav": "people talk in a café – très calme",
}
INVALID = {
    "zero_length.wav": "no audio samples",
    "header_only.wav": "no audio samples",
    "garbage.wav": "not a readable audio file",
    "nan.wav": "NaN",
    "silent.wav": "silent",
    "short.wav": "too short",
    "missing.wav": "file not found",
    "no_caption.wav": "no usable caption",
    "blank_caption.wav": "no usable caption",
}


def write_audio_folder(root: Path) -> Path:
    audio = root / "audio"
    (audio / "sub").mkdir(parents=True, exist_ok=True)
    sf.write(audio / "good_a.wav", tone(2.0, freq=300), SR)
    sf.write(audio / "good_b.flac", tone(1.5, freq=600, seed=1), SR)
    sf.write(audio / "stereo.wav", np.stack([tone(2.0, freq=500), tone(2.0, freq=700, seed=2)], axis=1), SR)
    sf.write(audio / "rate48k.wav", tone(1.2, sr=48000, freq=1000, seed=3), 48000)
    sf.write(audio / "eight_bit.wav", tone(1.5, freq=250, seed=4), SR, subtype="PCM_U8")
    sf.write(audio / "long.wav", tone(3.5, freq=350, seed=5), SR)
    sf.write(audio / "sub" / "nested.wav", tone(1.1, freq=800, seed=6), SR)
    sf.write(audio / "no_caption.wav", tone(1.5, seed=7), SR)
    sf.write(audio / "blank_caption.wav", tone(1.5, seed=8), SR)
    # truncated in the middle of the data: libsndfile reads what is there (3 s -> about 1.5 s)
    sf.write(audio / "full.wav", tone(3.0, freq=900, seed=9), SR)
    data = (audio / "full.wav").read_bytes()
    (audio / "full.wav").unlink()
    (audio / "truncated_partial.wav").write_bytes(data[: len(data) // 2])
    (audio / "header_only.wav").write_bytes(data[:44])
    sf.write(audio / "zero_length.wav", np.zeros(0, dtype=np.float32), SR)
    (audio / "garbage.wav").write_text("this is not audio at all\n" * 20)
    nan = tone(1.5, seed=10)
    nan[100:200] = np.nan
    sf.write(audio / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(audio / "silent.wav", np.zeros(SR * 2, dtype=np.float32), SR)
    sf.write(audio / "short.wav", tone(0.5, seed=11), SR)
    return audio


def write_jsonl_manifest(root: Path) -> Path:
    rows = []
    for name, caption in VALID.items():
        rows.append({"file": name, "captions": [caption, "  second   caption\tfor " + name + " "], "split": "train",
                     "attributes": {"name": name}})
    for name in INVALID:
        if name == "no_caption.wav":
            rows.append({"file": name, "split": "train"})
        elif name == "blank_caption.wav":
            rows.append({"file": name, "captions": ["   ", ""], "split": "train"})
        else:
            rows.append({"file": name, "captions": [f"caption of {name}"], "split": "train"})
    # the same file listed again: its captions are merged
    rows.append({"file": "good_a.wav", "caption": "a dog barks twice", "split": "train"})
    rows.append({"file": "good_a.wav", "caption": "a   small dog\u00a0yaps", "split": "train"})
    path = root / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def audio_dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("audio_dataset")
    return write_audio_folder(root), write_jsonl_manifest(root)


@pytest.fixture(scope="session")
def shard_dir(audio_dataset, tmp_path_factory) -> Path:
    """The dataset sharded once (3 clips per shard, in-process) for the readers' tests."""
    from lightning_auffusion.data.shards import shard

    audio_dir, manifest = audio_dataset
    out_root = tmp_path_factory.mktemp("shards")
    shard(str(audio_dir), str(manifest), "toy", out_root=str(out_root), clips_per_shard=3, workers=0, progress=False)
    return out_root / "toy"
