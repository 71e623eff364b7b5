"""The ``synth`` subcommand: write a synthetic captioned data set (WAVs + JSONL manifests)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..progress import progress_bar
from .attributes import SPEAKERS, SPEECH, SPEECH_PHRASES, render_captions, sample_events
from .generator import espeak_available, render_clip, render_speech

logger = logging.getLogger(__name__)

SPLITS = {"train": 0, "val": 1, "test": 2}  # split -> code mixed into every clip's seed
_SPEECH_CODE = 3


def _clip_rng(seed: int, code: int, index: int) -> np.random.Generator:
    """One generator per clip: a clip depends only on (seed, split, index), not on counts."""
    return np.random.default_rng([seed, code, index])


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sample_rate, subtype="PCM_16")


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, path)


def synth(
    out_dir: str,
    n_train: int = 64,
    n_val: int = 8,
    n_test: int = 8,
    sample_rate: int = 16000,
    duration: float = 10.0,
    max_events: int = 3,
    seed: int = 0,
    speech: bool = False,
    captions_per_clip: int = 5,
    n_speech: int = 4,
    progress: bool = True,
) -> None:
    """Write synthetic captioned sounds whose captions can be checked by the analyser.

    Each clip holds 1..max_events events (tones or coloured noises, beeping or continuous,
    loud or quiet) in equal consecutive segments. Writes ``out_dir/audio/<split>/<id>.wav``
    (16-bit PCM) and ``out_dir/<split>.jsonl`` with one object per clip: ``id``, ``file``
    (relative to the manifest), ``captions``, ``attributes`` (one dict per event), ``split``
    and ``params`` (the drawn frequencies, levels and beep rates). The ``test`` split holds
    only clips with held-out attribute combinations, which never occur in ``train``/``val``.
    The output is the same for the same arguments.

    Args:
        out_dir: Output folder (created if missing; existing manifests are replaced).
        n_train: Number of training clips.
        n_val: Number of validation clips (same distribution as train).
        n_test: Number of test clips (each with at least one held-out combination).
        sample_rate: Sample rate of the written WAVs in Hz (16000 matches Auffusion).
        duration: Clip length in seconds.
        max_events: Largest number of consecutive events in a clip (at least 1).
        seed: Random seed; every clip depends only on (seed, split, index).
        speech: Also write spoken-word clips to train and val (needs the espeak-ng program;
            skipped with a warning when it is missing).
        captions_per_clip: Number of different captions written per clip.
        n_speech: Number of speech clips added to train when speech is on; val gets the same
            proportion of its size (rounded up).
        progress: show a progress bar (quiet when stderr is not a terminal).
    """
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("n_speech", n_speech)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000 Hz, got {sample_rate}")
    if sample_rate < 16000:
        logger.warning("sample_rate %d Hz < 16000: upper harmonics of high tones are lost", sample_rate)
    if duration <= 0:
        raise ValueError(f"duration must be > 0 s, got {duration}")
    if max_events < 1:
        raise ValueError(f"max_events must be >= 1, got {max_events}")
    if captions_per_clip < 1:
        raise ValueError(f"captions_per_clip must be >= 1, got {captions_per_clip}")

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    with_speech = speech and n_speech > 0
    if with_speech and not espeak_available():
        logger.warning("speech=True but espeak-ng is not on PATH: skipping speech clips")
        with_speech = False

    for split, code in SPLITS.items():
        count = {"train": n_train, "val": n_val, "test": n_test}[split]
        rows = []
        for i in progress_bar(range(count), enabled=progress, unit="clip", desc=f"synth {split}"):
            rng = _clip_rng(seed, code, i)
            events = sample_events(rng, max_events, heldout=split == "test")
            audio, params = render_clip(events, sample_rate, duration, rng)
            clip_id = f"{split}_{i:05d}"
            rows.append(_row(root, split, clip_id, audio, sample_rate, events, params, rng, captions_per_clip))
        if with_speech and split != "test":
            # val gets the same proportion of speech as train (rounded up)
            count_speech = n_speech if split == "train" else int(np.ceil(n_speech * n_val / max(n_train, 1)))
            for i in range(count_speech):
                rng = _clip_rng(seed, _SPEECH_CODE, 1000 * code + i)
                event = {
                    "source": SPEECH,
                    "speaker": SPEAKERS[int(rng.integers(len(SPEAKERS)))],
                    "words": SPEECH_PHRASES[int(rng.integers(len(SPEECH_PHRASES)))],
                }
                rendered = render_speech(event, sample_rate, duration, rng)
                if rendered is None:
                    continue
                audio, params = rendered
                clip_id = f"{split}_speech_{i:03d}"
                rows.append(_row(root, split, clip_id, audio, sample_rate, [event], params, rng, captions_per_clip))
        _write_manifest(root / f"{split}.jsonl", rows)
        logger.info("synth: wrote %d %s clips to %s", len(rows), split, root)


def _row(
    root: Path,
    split: str,
    clip_id: str,
    audio: np.ndarray,
    sample_rate: int,
    events: list[dict],
    params: list[dict],
    rng: np.random.Generator,
    captions_per_clip: int,
) -> dict[str, Any]:
    rel = f"audio/{split}/{clip_id}.wav"
    _write_wav(root / rel, audio, sample_rate)
    return {
        "id": clip_id,
        "file": rel,
        "captions": render_captions(events, rng, captions_per_clip),
        "attributes": events,
        "split": split,
        "params": params,
    }
