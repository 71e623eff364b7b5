"""Caption manifests (CSV, TSV, JSONL, JSON) -> one entry per audio file with all of its captions.

Supported layouts, all with configurable column names (``ManifestConfig``):

* AudioCaps: ``audiocap_id,youtube_id,start_time,caption``. There is no file column; the file is found
  from ``file_templates`` (``{youtube_id}_{start_time}``, ``{youtube_id}``, ``Y{youtube_id}``, ...), and
  the several rows that share a clip are merged into one entry with several captions.
* Clotho: ``file_name,caption_1,...,caption_5`` (numbered caption columns).
* JSONL: one object per line with ``file`` (or ``id`` through a template) and ``caption`` (a string) or
  ``captions`` (a list), e.g. the synthetic manifests ``{"id", "file", "captions", "attributes", "split"}``.
* JSON: a list of such objects, or ``{"data": [...]}`` (the AudioLDM/Auffusion style with ``wav``).

Every other field is kept as metadata. Captions have their whitespace normalised (runs of any Unicode
whitespace become one space, ends stripped), empty ones are dropped, exact duplicates within a clip are
dropped; non-ASCII text is kept as it is. File paths are relative to the audio folder (or absolute).
"""

from __future__ import annotations

import csv
import json
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_auffusion.audio.io import AUDIO_EXTENSIONS
from lightning_auffusion.errors import MissingInputError, UserInputError


@dataclass
class ManifestConfig:
    """How to read a caption manifest; the defaults understand AudioCaps, Clotho and JSONL manifests."""

    format: str = "auto"  # "auto" (from the extension), "csv", "tsv", "jsonl" or "json"
    file_columns: list[str] = field(
        default_factory=lambda: ["file", "file_name", "filename", "path", "audio", "audio_path", "wav", "location"]
    )
    # used when a row has no file column: Python format strings over the row's fields, tried in order;
    # the first one that names an existing file (with or without an audio extension) wins
    file_templates: list[str] = field(
        default_factory=lambda: ["{youtube_id}_{start_time}", "{youtube_id}", "Y{youtube_id}", "{audiocap_id}", "{id}"]
    )
    # caption fields; "<name>_<n>" variants (caption_1 ... caption_5) are read too when numbered_captions
    caption_columns: list[str] = field(default_factory=lambda: ["caption", "captions", "text"])
    numbered_captions: bool = True
    split_column: str = "split"
    extensions: list[str] = field(default_factory=lambda: list(AUDIO_EXTENSIONS))
    encoding: str = "utf-8-sig"  # tolerates a byte-order mark

    def __post_init__(self) -> None:
        if self.format not in ("auto", "csv", "tsv", "jsonl", "json"):
            raise UserInputError(f"manifest format must be auto, csv, tsv, jsonl or json, got {self.format!r}")
        if not self.caption_columns:
            raise UserInputError("caption_columns must name at least one column")


@dataclass
class ClipEntry:
    """One audio file of the manifest with every caption the manifest gives it."""

    source: str  # path relative to the audio folder (posix), or absolute
    captions: list[str]
    metadata: dict[str, Any]
    rows: list[int]  # manifest line numbers (1-based, header = line 1 for CSV)


@dataclass
class Manifest:
    entries: list[ClipEntry]  # clips to shard, in first-appearance order
    rejects: list[dict[str, Any]]  # {"path", "reason", "stage": "manifest"}
    referenced: set[str]  # every source the manifest names, including other splits and rejects
    filtered_out: int = 0  # rows left out by the split filter


_WHITESPACE = re.compile(r"\s+")


def normalize_caption(text: Any) -> str:
    """Collapse every run of whitespace to one space and strip the ends; non-ASCII is kept."""
    if text is None:
        return ""
    if isinstance(text, float) and text != text:  # NaN from a spreadsheet export
        return ""
    return _WHITESPACE.sub(" ", str(text)).strip()


def detect_format(path: str | os.PathLike, config: ManifestConfig) -> str:
    if config.format != "auto":
        return config.format
    suffix = Path(path).suffix.lower()
    formats = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
    if suffix not in formats:
        raise UserInputError(
            f"{path}: cannot tell the manifest format from the extension {suffix!r}; "
            "use .csv/.tsv/.jsonl/.json or set the manifest format explicitly (csv, tsv, jsonl, json)"
        )
    return formats[suffix]


def read_rows(path: str | os.PathLike, config: ManifestConfig) -> tuple[list[tuple[int, dict[str, Any]]], list[dict]]:
    """All rows as ``(line number, fields)`` and the rows that could not be parsed (as rejects)."""
    fmt = detect_format(path, config)
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"manifest {path} not found: pass the CSV/JSONL file that lists the clips and captions")
    rows: list[tuple[int, dict[str, Any]]] = []
    bad: list[dict] = []
    with open(path, encoding=config.encoding, newline="" if fmt in ("csv", "tsv") else None) as fh:
        if fmt in ("csv", "tsv"):
            reader = csv.DictReader(fh, delimiter="\t" if fmt == "tsv" else ",")
            if reader.fieldnames is None:
                raise UserInputError(f"manifest {path} is empty: it needs a header row and one row per caption/clip")
            reader.fieldnames = [name.strip() for name in reader.fieldnames]
            for row in reader:
                extra = row.pop(None, None)  # more cells than header names
                if extra:
                    bad.append(_reject(f"{path}:{reader.line_num}", f"row has {len(extra)} more cells than the header"))
                    continue
                rows.append((reader.line_num, {k: v for k, v in row.items() if k is not None}))
        elif fmt == "jsonl":
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    bad.append(_reject(f"{path}:{number}", f"invalid JSON ({err.msg})"))
                    continue
                if not isinstance(obj, dict):
                    bad.append(_reject(f"{path}:{number}", "line is not a JSON object"))
                    continue
                rows.append((number, obj))
        else:
            data = json.load(fh)
            if isinstance(data, dict) and isinstance(data.get("data"), list):
                data = data["data"]
            if not isinstance(data, list):
                raise UserInputError(f"manifest {path}: expected a JSON list of objects or {{\"data\": [...]}}")
            for number, obj in enumerate(data, start=1):
                if isinstance(obj, dict):
                    rows.append((number, obj))
                else:
                    bad.append(_reject(f"{path}:item {number}", "item is not a JSON object"))
    return rows, bad


def _reject(path: str, reason: str) -> dict[str, Any]:
    return {"path": path, "reason": reason, "stage": "manifest"}


def caption_fields(row: dict[str, Any], config: ManifestConfig) -> list[str]:
    """Names of the row's caption fields in reading order (caption, caption_1, caption_2, ...)."""
    names: list[str] = []
    for base in config.caption_columns:
        if base in row:
            names.append(base)
        if config.numbered_captions:
            pattern = re.compile(rf"^{re.escape(base)}_(\d+)$")
            numbered = sorted((int(m.group(1)), key) for key in row if (m := pattern.match(key)))
            names.extend(key for _, key in numbered)
    return names


def row_captions(row: dict[str, Any], names: list[str]) -> list[str]:
    captions: list[str] = []
    for name in names:
        value = row.get(name)
        values = value if isinstance(value, (list, tuple)) else [value]
        captions.extend(normalize_caption(v) for v in values)
    return [c for c in captions if c]


def list_audio_files(audio_dir: str | os.PathLike) -> set[str]:
    """Every file under ``audio_dir`` as a posix path relative to it."""
    root = Path(audio_dir)
    found: set[str] = set()
    for folder, _, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        for name in files:
            found.add((rel / name).as_posix())
    return found


class FileResolver:
    """Maps a manifest row to a source path: the file column, else the first template naming a file."""

    def __init__(self, audio_dir: str | os.PathLike, config: ManifestConfig, listing: set[str] | None = None) -> None:
        self.audio_dir = Path(audio_dir)
        self.config = config
        self.listing = list_audio_files(audio_dir) if listing is None else listing
        self.extensions = [e if e.startswith(".") else f".{e}" for e in config.extensions]

    def _exists(self, rel: str) -> bool:
        if os.path.isabs(rel):
            return os.path.isfile(rel)
        return rel in self.listing

    def _with_extension(self, stem: str) -> str | None:
        if self._exists(stem):
            return stem
        for ext in self.extensions:
            for candidate in (stem + ext, stem + ext.upper()):
                if self._exists(candidate):
                    return candidate
        return None

    @staticmethod
    def _clean(value: str) -> str:
        value = value.strip().replace("\\", "/")
        return value[2:] if value.startswith("./") else value

    def resolve(self, row: dict[str, Any]) -> str | None:
        """The source path (existing or not), or None when the row names no file at all."""
        for column in self.config.file_columns:
            value = row.get(column)
            if value is not None and str(value).strip():
                rel = self._clean(str(value))
                return self._with_extension(rel) or rel
        first: str | None = None
        values = {k: "" if v is None else str(v).strip() for k, v in row.items()}
        for template in self.config.file_templates:
            fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
            if not fields or any(not values.get(name) for name in fields):
                continue  # the template needs a field this row lacks or leaves empty
            stem = self._clean(template.format(**values))
            found = self._with_extension(stem)
            if found is not None:
                return found
            first = first or stem
        return first

    def file_fields(self, row: dict[str, Any]) -> set[str]:
        return {c for c in self.config.file_columns if c in row}


def _merge_metadata(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fields equal in every merged row that has them keep their value; fields that differ become the
    list of their values (in row order, rows without the field left out)."""
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    merged: dict[str, Any] = {}
    for key in keys:
        values = [row[key] for row in rows if key in row]
        merged[key] = values[0] if all(v == values[0] for v in values) else values
    return merged


def read_manifest(
    path: str | os.PathLike,
    audio_dir: str | os.PathLike,
    config: ManifestConfig | None = None,
    split: str | None = None,
    listing: set[str] | None = None,
    keep_uncaptioned: bool = False,
) -> Manifest:
    """Read ``path`` into clip entries (rows of the same file merged) plus manifest-level rejects.

    ``split`` keeps only rows whose ``config.split_column`` equals it (rows of other splits are not
    rejects). ``listing`` (the files under ``audio_dir``) is computed when not given. A file without any
    usable caption is rejected, or kept with no captions when ``keep_uncaptioned`` (AudioLDM-style training
    on audio alone).
    """
    config = config or ManifestConfig()
    rows, rejects = read_rows(path, config)
    resolver = FileResolver(audio_dir, config, listing)
    by_source: dict[str, tuple[list[str], list[dict[str, Any]], list[int]]] = {}
    referenced: set[str] = set()
    filtered = 0
    for number, row in rows:
        source = resolver.resolve(row)
        if source is None:
            tried = ", ".join(config.file_columns)
            reason = f"row names no audio file (no value in any of: {tried}; no file template applies)"
            rejects.append(_reject(f"{path}:{number}", reason))
            continue
        referenced.add(source)
        if split is not None and str(row.get(config.split_column, "")).strip() != split:
            filtered += 1
            continue
        names = caption_fields(row, config)
        skip = set(names) | resolver.file_fields(row)
        metadata = {k: v for k, v in row.items() if k not in skip}
        captions, metas, numbers = by_source.setdefault(source, ([], [], []))
        captions.extend(c for c in row_captions(row, names) if c not in captions)
        metas.append(metadata)
        numbers.append(number)
    entries: list[ClipEntry] = []
    for source, (captions, metas, numbers) in by_source.items():
        if not captions and not keep_uncaptioned:
            where = ", ".join(str(n) for n in numbers)
            rejects.append(_reject(source, f"no usable caption (missing or empty in manifest row(s) {where})"))
            continue
        entries.append(ClipEntry(source=source, captions=captions, metadata=_merge_metadata(metas), rows=numbers))
    return Manifest(entries=entries, rejects=rejects, referenced=referenced, filtered_out=filtered)
