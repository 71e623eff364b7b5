"""``python -m lightning_auffusion shard``: an audio folder + caption manifest -> WebDataset tar shards.

Layout of ``<out_root>/<name>/`` (see ``data_shards/README.md``):

* ``<name>-000000.tar`` ...: per clip ``<key>.flac`` (mono, ``sample_rate``, at most ``max_seconds``)
  and ``<key>.json`` (``captions``, ``duration``, ``sample_rate``, ``source`` and the manifest metadata);
* ``index.json``: the settings used, every finished shard with its clip count and duration, totals;
* ``rejects.jsonl``: one line per skipped file or manifest row, ``{"path", "reason", "stage", "shard"}``.

Clips are assigned to shards from the manifest alone (``clips_per_shard`` consecutive entries each), so a
re-run with the same manifest and settings rebuilds only the shards the index does not list as done.
Stereo, any sample rate and any bit depth are valid input (averaged to mono, resampled); missing,
unreadable, empty, NaN, silent, too short and caption-less clips are rejected with their reason
(caption-less ones are kept with ``keep_uncaptioned``, for the audio-conditioned encoder kind clap_audio).
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import dataclasses
import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from lightning_auffusion.audio.io import AUDIO_EXTENSIONS, AudioLoadError, audio_info, load_audio
from lightning_auffusion.data.rebuild import resumable_index
from lightning_auffusion.data.manifest import ClipEntry, ManifestConfig, list_audio_files, read_manifest
from lightning_auffusion.errors import MissingInputError, UserInputError

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
REJECTS_FILE = "rejects.jsonl"
FORMAT_VERSION = 1
RESERVED_FIELDS = ("captions", "duration", "sample_rate", "num_samples", "source", "original_sample_rate",
                   "original_channels", "original_duration", "rescaled_from_peak")


@dataclass(frozen=True)
class ClipSettings:
    """What every worker needs to turn one source file into a shard member."""

    audio_dir: str
    sample_rate: int
    max_seconds: float
    min_seconds: float
    silence_threshold_db: float
    flac_subtype: str


class ClipRejected(Exception):
    """A clip is not used; ``str(err)`` is the reason written to the rejects log."""


def sample_key(source: str) -> str:
    """A WebDataset-safe key from a source path: extension dropped, anything but [A-Za-z0-9_-] -> '_'."""
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", source.replace("\\", "/").lstrip("/"))
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", stem).strip("_") or "clip"


def assign_keys(entries: list[ClipEntry]) -> list[str]:
    """Unique keys in entry order (a key that repeats gets ``_2``, ``_3``, ...)."""
    used: set[str] = set()
    keys = []
    for entry in entries:
        base = key = sample_key(entry.source)
        n = 1
        while key in used:
            n += 1
            key = f"{base}_{n}"
        used.add(key)
        keys.append(key)
    return keys


def prepare_clip(entry: ClipEntry, settings: ClipSettings) -> tuple[bytes, dict[str, Any]]:
    """Load, check and encode one clip: FLAC bytes and its JSON record. Raises ``ClipRejected``."""
    path = entry.source if os.path.isabs(entry.source) else os.path.join(settings.audio_dir, entry.source)
    if os.path.isdir(path):
        raise ClipRejected("a folder, not an audio file")
    if not os.path.isfile(path):
        raise ClipRejected("file not found")

    def reason(err: Exception) -> str:
        return str(err).removeprefix(f"{path}: ")

    try:
        info = audio_info(path)
        audio, sr = load_audio(path, target_sr=settings.sample_rate, mono=True, max_seconds=settings.max_seconds)
    except AudioLoadError as err:
        raise ClipRejected(reason(err)) from None
    duration = audio.shape[0] / sr
    if duration < settings.min_seconds:
        raise ClipRejected(f"too short: {duration:.3f} s < min_seconds {settings.min_seconds} s")
    centred = audio - audio.mean()
    peak = float(np.abs(centred).max())
    peak_db = 20.0 * np.log10(peak) if peak > 0 else float("-inf")
    if peak_db < settings.silence_threshold_db:
        raise ClipRejected(f"silent: peak {peak_db:.1f} dBFS is below silence_threshold_db {settings.silence_threshold_db} dB")
    record: dict[str, Any] = {}
    for name, value in entry.metadata.items():
        record[f"metadata_{name}" if name in RESERVED_FIELDS else name] = value
    top = float(np.abs(audio).max())
    if top > 1.0:  # float sources can exceed full scale; scale down instead of clipping
        audio = audio / top
        record["rescaled_from_peak"] = top
    buffer = io.BytesIO()
    sf.write(buffer, audio, sr, format="FLAC", subtype=settings.flac_subtype)
    record.update(
        captions=list(entry.captions),
        duration=round(duration, 6),
        sample_rate=sr,
        num_samples=int(audio.shape[0]),
        source=entry.source,
        original_sample_rate=int(info.samplerate),
        original_channels=int(info.channels),
        original_duration=round(float(info.duration), 6),
    )
    return buffer.getvalue(), record


def write_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Write one shard (worker side): every clip of ``task`` that passes the checks, rejects listed."""
    import webdataset as wds

    settings: ClipSettings = task["settings"]
    final = Path(task["path"])
    partial = final.with_name(final.name + ".partial")
    count, duration, captions, rejects = 0, 0.0, 0, []
    with open(partial, "wb") as fh, wds.TarWriter(fh, encoder=False, format="PAX_FORMAT", mtime=0.0) as sink:
        for entry, key in zip(task["entries"], task["keys"]):
            try:
                flac, record = prepare_clip(entry, settings)
            except ClipRejected as err:
                rejects.append({"path": entry.source, "reason": str(err), "stage": "audio", "shard": task["shard"]})
                continue
            except Exception as err:  # an unexpected failure on one file must not lose the shard
                reason = f"could not be processed ({type(err).__name__}: {err})"
                rejects.append({"path": entry.source, "reason": reason, "stage": "audio", "shard": task["shard"]})
                continue
            sink.write({"__key__": key, "flac": flac, "json": json.dumps(record, ensure_ascii=False).encode("utf-8")})
            count += 1
            duration += record["duration"]
            captions += len(record["captions"])
    os.replace(partial, final)
    return {
        "shard": task["shard"],
        "file": final.name,
        "count": count,
        "duration": round(duration, 6),
        "captions": captions,
        "rejects": len(rejects),
        "bytes": final.stat().st_size,
        "reject_records": rejects,
    }


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` does (kill -9 included): Linux's parent-death signal,
    and an exit right away if the parent is already gone. Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError) as err:  # no libc prctl: workers may outlive a killed parent
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable: %s", err)
    if os.getppid() != parent_pid:
        os._exit(1)


def _worker_init(parent_pid: int) -> None:
    import torch

    die_with_parent(parent_pid)
    torch.set_num_threads(1)  # one process per core already


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by an interrupted run
    return records


def _write_rejects(path: Path, manifest_rejects: list[dict], audio_rejects: list[dict]) -> None:
    audio_rejects = sorted(audio_rejects, key=lambda r: (r["shard"], r["path"]))
    with open(path.with_name(path.name + ".tmp"), "w", encoding="utf-8") as fh:
        for record in [*manifest_rejects, *audio_rejects]:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(path.with_name(path.name + ".tmp"), path)


def _plan_digest(entries: list[ClipEntry], keys: list[str], settings: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for entry, key in zip(entries, keys):
        item = [key, entry.source, entry.captions, entry.metadata]
        digest.update(json.dumps(item, sort_keys=True, ensure_ascii=False, default=str).encode())
    return digest.hexdigest()


def _summarise(index: dict[str, Any]) -> None:
    shards = index["shards"]
    clips = sum(s["count"] for s in shards)
    seconds = sum(s["duration"] for s in shards)
    index["totals"] = {
        "shards": len(shards),
        "clips": clips,
        "captions": sum(s["captions"] for s in shards),
        "duration_seconds": round(seconds, 3),
        "duration_hours": round(seconds / 3600.0, 4),
        "rejected": index["manifest_rejects"] + sum(s["rejects"] for s in shards),
    }
    last = index["num_shards"] - 1
    index["pattern"] = f"{index['name']}-{{{0:06d}..{last:06d}}}.tar" if last > 0 else f"{index['name']}-000000.tar"


def shard(
    audio_dir: str,
    manifest: str,
    name: str,
    out_root: str = "data_shards",
    max_seconds: float = 30.0,
    min_seconds: float = 1.0,
    sample_rate: int = 16000,
    clips_per_shard: int = 1000,
    workers: int | None = None,
    silence_threshold_db: float = -60.0,
    flac_subtype: str = "PCM_16",
    split: str | None = None,
    columns: ManifestConfig | None = None,
    report_unlisted: bool = False,
    keep_uncaptioned: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write WebDataset shards of captioned 16 kHz mono FLAC clips to ``<out_root>/<name>/``.

    Args:
        audio_dir: folder holding the audio files; manifest paths are relative to it.
        manifest: caption manifest (CSV/TSV/JSONL/JSON: AudioCaps, Clotho or JSONL layouts).
        name: dataset name; the output folder is ``<out_root>/<name>`` and shards are ``<name>-NNNNNN.tar``.
        out_root: root folder of all shard folders.
        max_seconds: keep only the first ``max_seconds`` of every file (Auffusion: 30 s).
        min_seconds: reject files shorter than this (Auffusion: 1 s).
        sample_rate: output sample rate; other rates are resampled (band-limited).
        clips_per_shard: manifest entries per shard (rejected clips make a shard smaller).
        workers: parallel processes; None = one per CPU core, 0 = in this process.
        silence_threshold_db: reject clips whose DC-free peak is below this level in dBFS.
        flac_subtype: FLAC sample format (PCM_16 or PCM_24).
        split: keep only manifest rows whose ``split`` column equals this (None = all rows).
        columns: manifest column names and file-name templates (defaults: AudioCaps, Clotho, JSONL).
        report_unlisted: also log audio files in ``audio_dir`` that the manifest does not list as rejects.
        keep_uncaptioned: keep manifest files whose captions are missing or empty (an empty ``captions`` list)
            instead of rejecting them; only the encoder kind clap_audio trains on such clips (read them with
            the data module's ``keep_uncaptioned``).
        overwrite: rebuild from scratch when the folder holds shards made with another manifest or settings.
        progress: show a progress bar.

    Returns:
        The index (also written to ``<out_root>/<name>/index.json``).
    """
    if not name or re.search(r"[/\\]", name) or name in (".", ".."):
        raise UserInputError(f"name must be a plain folder name (no slashes), got {name!r}")
    if not Path(audio_dir).is_dir():
        raise MissingInputError(f"audio_dir {audio_dir} is not a folder: pass the folder holding the audio files")
    if clips_per_shard < 1 or sample_rate <= 0 or max_seconds <= 0 or min_seconds < 0 or min_seconds > max_seconds:
        raise UserInputError(
            "need clips_per_shard >= 1, sample_rate > 0 and 0 <= min_seconds <= max_seconds, got "
            f"clips_per_shard={clips_per_shard}, sample_rate={sample_rate}, min_seconds={min_seconds}, max_seconds={max_seconds}"
        )
    if flac_subtype not in ("PCM_16", "PCM_24"):
        raise UserInputError(f"flac_subtype must be PCM_16 or PCM_24, got {flac_subtype!r}")
    columns = columns or ManifestConfig()
    out_dir = Path(out_root) / name
    out_dir.mkdir(parents=True, exist_ok=True)

    listing = list_audio_files(audio_dir)
    parsed = read_manifest(manifest, audio_dir, columns, split=split, listing=listing, keep_uncaptioned=keep_uncaptioned)
    manifest_rejects = list(parsed.rejects)
    if report_unlisted:
        extensions = tuple(e.lower() for e in AUDIO_EXTENSIONS)
        for rel in sorted(listing - parsed.referenced):
            if rel.lower().endswith(extensions):
                manifest_rejects.append({"path": rel, "reason": "not listed in the manifest (no captions)", "stage": "manifest"})
    entries = parsed.entries
    keys = assign_keys(entries)
    settings = {
        "audio_dir": str(Path(audio_dir).resolve()),
        "manifest": str(Path(manifest).resolve()),
        "max_seconds": max_seconds,
        "min_seconds": min_seconds,
        "sample_rate": sample_rate,
        "clips_per_shard": clips_per_shard,
        "silence_threshold_db": silence_threshold_db,
        "flac_subtype": flac_subtype,
        "split": split,
        "columns": dataclasses.asdict(columns),
    }
    if keep_uncaptioned:  # only when set, so shards written before the option keep their plan digest
        settings["keep_uncaptioned"] = True
    digest = _plan_digest(entries, keys, settings)
    num_shards = max(1, -(-len(entries) // clips_per_shard))
    index_path, rejects_path = out_dir / INDEX_FILE, out_dir / REJECTS_FILE

    done: dict[int, dict[str, Any]] = {}
    old = resumable_index(
        index_path,
        "plan_digest",
        digest,
        overwrite,
        "shards made from another manifest or other settings",
        lambda: [*out_dir.glob(f"{name}-*.tar*"), rejects_path],
    )
    for record in (old or {}).get("shards", []):
        path = out_dir / record["file"]
        if path.is_file() and path.stat().st_size == record["bytes"]:
            done[record["shard"]] = record
    audio_rejects = [r for r in _read_jsonl(rejects_path) if r.get("stage") == "audio" and r.get("shard") in done]

    clip_settings = ClipSettings(str(Path(audio_dir)), sample_rate, max_seconds, min_seconds, silence_threshold_db, flac_subtype)
    tasks = []
    for i in range(num_shards):
        if i in done:
            continue
        lo, hi = i * clips_per_shard, (i + 1) * clips_per_shard
        path = out_dir / f"{name}-{i:06d}.tar"
        tasks.append({"shard": i, "path": str(path), "entries": entries[lo:hi], "keys": keys[lo:hi], "settings": clip_settings})

    index: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "settings": settings,
        "plan_digest": digest,
        "num_shards": num_shards,
        "num_entries": len(entries),
        "manifest_rejects": len(manifest_rejects),
        "filtered_out_by_split": parsed.filtered_out,
        "complete": False,
        "shards": sorted(done.values(), key=lambda s: s["shard"]),
    }
    _summarise(index)
    _write_json(index_path, index)
    _write_rejects(rejects_path, manifest_rejects, audio_rejects)
    if done:
        log.info("%s: resuming, %d of %d shards already written", out_dir, len(done), num_shards)

    failures: list[str] = []
    bar = tqdm(total=sum(len(t["entries"]) for t in tasks), unit="clip", desc=f"shard {name}", disable=not progress)

    def finish(result: dict[str, Any]) -> None:
        audio_rejects.extend(result.pop("reject_records"))
        done[result["shard"]] = result
        index["shards"] = sorted(done.values(), key=lambda s: s["shard"])
        _summarise(index)
        _write_rejects(rejects_path, manifest_rejects, audio_rejects)
        _write_json(index_path, index)

    n_workers = (os.cpu_count() or 1) if workers is None else workers
    if n_workers <= 0 or len(tasks) <= 1:
        for task in tasks:
            finish(write_shard(task))
            bar.update(len(task["entries"]))
    else:
        context = multiprocessing.get_context("spawn")  # torch is not fork-safe once initialised
        with cf.ProcessPoolExecutor(min(n_workers, len(tasks)), mp_context=context, initializer=_worker_init,
                                    initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(write_shard, task): task for task in tasks}
            for future in cf.as_completed(futures):
                task = futures[future]
                try:
                    finish(future.result())
                except Exception as err:  # keep every other shard; this one is redone on the next run
                    failures.append(f"shard {task['shard']}: {type(err).__name__}: {err}")
                    log.error("shard %s failed (%s); re-run the command to retry it", task["path"], err)
                bar.update(len(task["entries"]))
    bar.close()
    index["complete"] = len(done) == num_shards
    _write_json(index_path, index)
    totals = index["totals"]
    log.info("%s: %d clips (%.2f h) in %d shards, %d rejected (see %s)", out_dir, totals["clips"],
             totals["duration_hours"], totals["shards"], totals["rejected"], rejects_path)
    if failures:
        raise RuntimeError(f"{len(failures)} shard(s) failed and were not recorded; re-run to retry them: " + "; ".join(failures))
    return index
