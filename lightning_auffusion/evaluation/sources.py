"""Where evaluated audio comes from: folders (clips keyed by file stem), shards, prompt lists.

Clips are paired by file name: ``a/dog_01.wav`` (generated) and ``b/dog_01.flac`` (reference) share the id
``dog_01``. Unreadable files are skipped with the reason recorded, never fatal.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lightning_auffusion.audio.io import AUDIO_EXTENSIONS, AudioLoadError, load_audio
from lightning_auffusion.errors import MissingInputError, UserInputError
from lightning_auffusion.paths import safe_filename

log = logging.getLogger(__name__)

ID_FIELDS = ("id", "key", "name", "file", "file_name", "filename", "path", "audio", "wav", "audiocap_id", "youtube_id")
CAPTION_FIELDS = ("caption", "text", "prompt", "captions", "caption_1")
SHARD_SUFFIXES = (".tar", ".json")


@dataclass
class Batch:
    """Clips of one side: audio (channels, T) or (T,) float32 arrays, their rates and ids."""

    clips: list[np.ndarray] = field(default_factory=list)
    rates: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Skipped:
    source: str
    reason: str


def list_audio(folder: str | Path, skipped: list[Skipped] | None = None) -> dict[str, Path]:
    """Audio files directly in ``folder`` by stem, sorted; a stem seen twice keeps its first file."""
    root = Path(folder)
    if not root.is_dir():
        raise MissingInputError(f"audio folder not found: {root}")
    files: dict[str, Path] = {}
    for path in sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS):
        if path.stem in files:
            if skipped is not None:
                skipped.append(Skipped(str(path), f"same file name as {files[path.stem].name}; only that one is used"))
            continue
        files[path.stem] = path
    return files


def is_shard_source(spec: str) -> bool:
    """True for shard files, patterns, index files or a folder holding ``index.json``/``*.tar``."""
    path = Path(spec)
    if path.is_dir():
        return (path / "index.json").is_file() or any(path.glob("*.tar"))
    return spec.endswith(SHARD_SUFFIXES) or any(ch in spec for ch in "{*?[")


def _shard_spec(spec: str) -> str:
    path = Path(spec)
    if path.is_dir() and not (path / "index.json").is_file():
        return str(path / "*.tar")
    return spec


def iter_folder(files: dict[str, Path], batch_size: int, skipped: list[Skipped]) -> Iterator[Batch]:
    """Batches of clips loaded at their own rate with every channel kept."""
    batch = Batch()
    for clip_id, path in files.items():
        try:
            audio, sr = load_audio(path, mono=False)
        except AudioLoadError as err:
            log.warning("skipping %s", err)
            skipped.append(Skipped(str(path), str(err)))
            continue
        batch.clips.append(audio)
        batch.rates.append(sr)
        batch.ids.append(clip_id)
        if len(batch) == batch_size:
            yield batch
            batch = Batch()
    if len(batch):
        yield batch


def iter_shards(spec: str, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
    """Batches of shard clips (``lightning_auffusion.data.pipeline.iterate_shard_samples``), keyed by sample key."""
    from lightning_auffusion.data.pipeline import iterate_shard_samples

    batch = Batch()
    seen = 0
    for sample in iterate_shard_samples(_shard_spec(spec)):
        if limit is not None and seen >= limit:
            break
        seen += 1
        batch.clips.append(np.asarray(sample["audio"], dtype=np.float32))
        batch.rates.append(int(sample["sample_rate"]))
        batch.ids.append(str(sample["key"]))
        if len(batch) == batch_size:
            yield batch
            batch = Batch()
    if len(batch):
        yield batch


def _row_id(row: dict) -> str | None:
    for name in ID_FIELDS:
        value = row.get(name)
        if value not in (None, ""):
            return Path(str(value)).stem if name not in ("id", "key", "name") else str(value)
    return None


def _row_caption(row: dict) -> str | None:
    for name in CAPTION_FIELDS:
        value = row.get(name)
        if isinstance(value, list):
            value = next((v for v in value if isinstance(v, str) and v.strip()), None)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    return None


def read_prompts(path: str | Path) -> dict[str, str]:
    """Prompts by clip id, in file order.

    ``.txt``: one prompt per line, ids ``00000``, ``00001``, ... (blank lines skipped, numbering kept);
    ``.jsonl`` / ``.json`` (a list or ``{"data": [...]}``) / ``.csv`` / ``.tsv``: rows with an id (``id``,
    ``key``, ``name`` or the stem of ``file``/``path``/``wav``/...) and a caption (``caption``, ``text``,
    ``prompt`` or the first of ``captions``). The first caption of an id wins (AudioCaps repeats ids).
    """
    p = Path(path)
    if not p.is_file():
        raise MissingInputError(f"prompt file not found: {p}")
    suffix = p.suffix.lower()
    text = p.read_text(encoding="utf-8")
    if suffix == ".txt":
        lines = text.splitlines()
        return {f"{i:05d}": " ".join(line.split()) for i, line in enumerate(lines) if line.strip()}
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    elif suffix == ".json":
        data = json.loads(text)
        rows = data.get("data", []) if isinstance(data, dict) else data
    elif suffix in (".csv", ".tsv"):
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ","))
    else:
        raise UserInputError(f"prompt file {p} must be .txt, .jsonl, .json, .csv or .tsv")
    prompts: dict[str, str] = {}
    for number, row in enumerate(rows, start=1):
        clip_id, caption = (_row_id(row), _row_caption(row)) if isinstance(row, dict) else (None, None)
        if clip_id is None or caption is None:
            log.warning("%s: row %d has no id or no caption; skipped", p, number)
            continue
        safe_id = safe_filename(clip_id)
        if safe_id != clip_id:  # ids name output files: no separators, no '..', no absolute paths
            log.warning("%s: row %d: id %r is not a plain file name; using %r", p, number, clip_id, safe_id)
        prompts.setdefault(safe_id, caption)
    if not prompts:
        raise UserInputError(f"prompt file {p} holds no (id, caption) rows")
    return prompts
