"""WebDataset pipeline pieces for the shards written by ``shard``: shard lists, decoding, crops, batches.

Every stage that draws random numbers takes its generator from ``worker_rng``, seeded from the base
seed, the rank, the DataLoader worker and how many times the stage has been iterated (the epoch in a
persistent worker), so runs are reproducible for a fixed seed and workers never repeat each other.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import webdataset as wds

from lightning_auffusion.errors import MissingInputError, UserInputError

log = logging.getLogger(__name__)

ShardSpec = str | Sequence[str]


def _is_remote(url: str) -> bool:
    return url.startswith("pipe:") or "://" in url


def _index_urls(path: Path) -> list[str]:
    if not path.is_file():
        hint = f" (is {path.parent.name!r} a dataset name? `python -m lightning_auffusion shard --name {path.parent.name} ...` writes it)" if path.name == "index.json" else ""
        raise MissingInputError(f"shard index {path} not found{hint}")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserInputError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); rewrite it with `shard`") from None
    if not isinstance(index, dict) or "shards" not in index:
        raise UserInputError(f"{path} is not an index.json written by `lightning_auffusion shard` (no 'shards' list)")
    return [str(path.parent / s["file"]) for s in sorted(index["shards"], key=lambda s: s["shard"]) if s["count"] > 0]


def expand_shards(spec: ShardSpec) -> list[str]:
    """Shard URLs from paths, globs, brace patterns (``a-{000..009}.tar``), ``pipe:`` URLs, ``::`` lists
    or a shard folder's ``index.json`` (its non-empty shards). Local files must exist."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    for item in specs:
        for url in wds.shardlists.expand_urls(str(item)):
            if _is_remote(url):
                urls.append(url)
            elif url.endswith(".json"):
                urls.extend(_index_urls(Path(url)))
            elif any(ch in url for ch in "*?["):
                matches = sorted(glob.glob(url))
                if not matches:
                    raise MissingInputError(
                        f"shard pattern {url!r} matches no file; write shards with `python -m lightning_auffusion shard`"
                    )
                urls.extend(matches)
            elif Path(url).is_dir() and (Path(url) / "index.json").is_file():
                urls.extend(_index_urls(Path(url) / "index.json"))
            else:
                urls.append(url)
    missing = [u for u in urls if not _is_remote(u) and not Path(u).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MissingInputError(f"shard file(s) not found: {shown} (from {spec!r})")
    if not urls:
        raise UserInputError(f"no shards in {spec!r}")
    return urls


def shard_counts(urls: Sequence[str]) -> list[int] | None:
    """Clips per shard of ``urls`` from the ``index.json`` beside each local shard; None if unknown."""
    indexes: dict[Path, dict[str, int]] = {}
    counts = []
    for url in urls:
        path = Path(url)
        if _is_remote(url) or not (path.parent / "index.json").is_file():
            return None
        if path.parent not in indexes:
            index = json.loads((path.parent / "index.json").read_text(encoding="utf-8"))
            indexes[path.parent] = {s["file"]: s["count"] for s in index.get("shards", [])}
        if path.name not in indexes[path.parent]:
            return None
        counts.append(indexes[path.parent][path.name])
    return counts


_reported: set[str] = set()


def log_and_skip(exn: Exception) -> bool:
    """WebDataset error handler: log the broken shard member (or unreadable shard) and carry on.

    The first report of a problem is a warning; repeats (a resampled shard read again) go to debug."""
    text = f"{type(exn).__name__}: " + ", ".join(map(str, exn.args))[:500]
    signature = re.sub(r" at 0x[0-9a-f]+", "", text)
    level = logging.DEBUG if signature in _reported else logging.WARNING
    if len(_reported) < 10000:
        _reported.add(signature)
    log.log(level, "skipping unreadable shard data: %s", text)
    return True


class ReadShards(wds.utils.PipelineStage):
    """``wds.tarfile_to_samples`` for an endless (resampled) shard stream, with a bound on failures in a row.

    A shard that yields no sample (unreadable, or every member broken) is logged and skipped, as before;
    ``max_consecutive_failures`` of them in a row end the stream with an error instead of looping forever
    when every shard is unreadable.
    """

    def __init__(self, max_consecutive_failures: int = 32, handler: Callable[[Exception], bool] = log_and_skip) -> None:
        if max_consecutive_failures < 1:
            raise UserInputError(f"max_consecutive_failures must be >= 1, got {max_consecutive_failures}")
        self.max_consecutive_failures, self.handler = max_consecutive_failures, handler

    def run(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        failures = 0
        for shard in src:
            produced = False
            for sample in wds.tarfile_to_samples(handler=self.handler)(iter([shard])):
                produced = True
                yield sample
            failures = 0 if produced else failures + 1
            if failures >= self.max_consecutive_failures:
                raise UserInputError(
                    f"{failures} training shards in a row gave no readable sample (the last: {shard.get('url')}); "
                    "the shards look unreadable: check them (see the warnings above) or write them again with "
                    "`python -m lightning_auffusion shard`"
                )


def set_stream_epoch(pipeline: wds.DataPipeline, epoch: int) -> None:
    """Make the next pass over ``pipeline`` use stream epoch ``epoch`` (shard draws, shuffle, crops, captions)."""
    for stage in pipeline.pipeline:
        if isinstance(stage, (wds.ResampledShards, DecodeClips, SeededShuffle, EpochShards, MixupClips)):
            stage.epoch = epoch - 1  # each stage counts one up when a pass begins


def _worker_id() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def worker_rng(seed: int | None, rank: int, epoch: int, salt: int = 0) -> random.Random:
    """A generator for this (seed, rank, DataLoader worker, epoch); fresh entropy when seed is None."""
    if seed is None:
        return random.Random(os.urandom(16))
    worker, _ = _worker_id()
    return random.Random(f"{seed}:{rank}:{worker}:{epoch}:{salt}")


def rank_worker_seed(rank: int) -> int:
    """Seed for ``ResampledShards`` that differs per rank and per DataLoader worker."""
    worker, _ = _worker_id()
    return rank * 100003 + worker


def read_window(data: bytes, segment: int | None, sample_rate: int, rng: random.Random | None) -> tuple[np.ndarray, int]:
    """Decode audio bytes to mono float32 at ``sample_rate``, ``segment`` samples long (None = whole).

    With ``rng`` the window starts at a random sample, else at 0; only that window is decoded. Short
    clips are zero-padded. Returns ``(audio, valid samples before padding)``.
    """
    with sf.SoundFile(io.BytesIO(data)) as fh:
        sr, total = fh.samplerate, fh.frames
        need = None if segment is None else int(np.ceil(segment * sr / sample_rate))
        if need is not None and total > need:
            start = rng.randint(0, total - need) if rng is not None else 0
            fh.seek(start)
        else:
            need = None
        if segment is not None and fh.channels == 1 and sr == sample_rate:
            out = np.zeros(segment, dtype=np.float32)  # the usual case: decode straight into the padded window
            valid = fh.read(out=out[: min(segment, total)]).shape[0]
            if valid == 0:
                raise ValueError("audio member decodes to zero samples")
            return out, valid
        audio = fh.read(-1 if need is None else need, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if sr != sample_rate:
        from lightning_auffusion.audio.resample import resample

        audio = resample(torch.from_numpy(np.ascontiguousarray(audio)), sr, sample_rate).numpy()
    if audio.shape[0] == 0:
        raise ValueError("audio member decodes to zero samples")
    if segment is None:
        return np.ascontiguousarray(audio, dtype=np.float32), audio.shape[0]
    valid = min(audio.shape[0], segment)
    out = np.zeros(segment, dtype=np.float32)
    out[:valid] = audio[:valid]
    return out, valid


def parse_record(sample: dict[str, Any], keep_uncaptioned: bool = False) -> dict[str, Any]:
    """The JSON record of a shard sample, with its captions checked; ``keep_uncaptioned`` lets a clip without
    captions through with an empty list (for encoders conditioned on the audio itself, kind clap_audio)."""
    if "json" not in sample or "flac" not in sample:
        raise ValueError(f"sample {sample.get('__key__')!r} in {sample.get('__url__')} lacks its .flac or .json member")
    record = json.loads(sample["json"])
    captions = record.get("captions")
    if keep_uncaptioned and (captions is None or captions == []):
        record["captions"] = []
        return record
    if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"sample {sample['__key__']!r} in {sample.get('__url__')} has no caption list")
    return record


class DecodeClips(wds.utils.PipelineStage):
    """Raw shard samples -> clip dicts ``{key, audio, num_samples, caption, captions, metadata}``.

    Training (``random=True``): a random window of ``segment`` samples and a random caption. Evaluation:
    the window at the start and the first caption. Broken members go to ``handler``. With
    ``keep_uncaptioned`` a clip without captions is kept with caption None (else it is logged and skipped).
    """

    def __init__(self, segment: int | None, sample_rate: int, random_choice: bool, seed: int | None = 0,
                 rank: int = 0, handler: Callable[[Exception], bool] = log_and_skip,
                 keep_uncaptioned: bool = False) -> None:
        self.segment, self.sample_rate, self.random_choice = segment, sample_rate, random_choice
        self.seed, self.rank, self.handler = seed, rank, handler
        self.keep_uncaptioned = keep_uncaptioned
        self.epoch = -1

    def run(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        self.epoch += 1
        rng = worker_rng(self.seed, self.rank, self.epoch, salt=1) if self.random_choice else None
        for sample in src:
            try:
                record = parse_record(sample, self.keep_uncaptioned)
                audio, valid = read_window(sample["flac"], self.segment, self.sample_rate, rng)
            except Exception as exn:
                exn.args = (*exn.args, f"key={sample.get('__key__')}", f"url={sample.get('__url__')}")
                if self.handler(exn):
                    continue
                break
            captions = record.pop("captions")
            caption = None if not captions else rng.choice(captions) if rng is not None else captions[0]
            yield {"key": sample["__key__"], "audio": audio, "num_samples": valid, "caption": caption,
                   "captions": captions, "metadata": record, "complete": self._complete(record, valid)}

    def _complete(self, record: dict[str, Any], valid: int) -> bool:
        """Whether the window holds the whole clip (a clip's caption describes all of it)."""
        if self.segment is None or valid < self.segment:
            return True  # read whole, or ended inside the window (read_window only seeks into longer clips)
        stored, rate = record.get("num_samples"), record.get("sample_rate")
        if not stored or not rate:
            return False
        return round(int(stored) * self.sample_rate / int(rate)) <= self.segment


class MixupClips(wds.utils.PipelineStage):
    """AudioLDM's mixup: with ``probability`` a clip becomes ``lam * x1 + (1 - lam) * x2`` with the previous
    clip of the stream, ``lam ~ Beta(alpha, alpha)`` (AudioLDM: alpha 5), the shorter one zero-padded.

    The mixture's caption is that of the clip with the larger weight (its ``captions`` both clips' lists): a
    text encoder learns a partial description, while an audio-conditioned encoder (clap_audio) embeds the
    mixed audio itself, as AudioLDM does. ``key`` joins both keys with ``+``; ``metadata["mixup"]`` records
    the partner and ``lam``. Seeded per rank, worker and epoch like the other stages.
    """

    def __init__(self, probability: float, alpha: float, seed: int | None = 0, rank: int = 0) -> None:
        if not 0.0 <= probability <= 1.0:
            raise UserInputError(f"mixup_probability must be in [0, 1], got {probability}")
        if alpha <= 0:
            raise UserInputError(f"mixup_alpha must be positive, got {alpha}")
        self.probability, self.alpha, self.seed, self.rank = probability, alpha, seed, rank
        self.epoch = -1

    def run(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        self.epoch += 1
        rng = worker_rng(self.seed, self.rank, self.epoch, salt=2)
        previous = None
        for clip in src:
            original = clip
            if previous is not None and rng.random() < self.probability:
                clip = mix_clips(clip, previous, rng.betavariate(self.alpha, self.alpha))
            previous = original
            yield clip


def mix_clips(first: dict[str, Any], second: dict[str, Any], lam: float) -> dict[str, Any]:
    """``lam * first + (1 - lam) * second`` as one clip dict (see ``MixupClips``)."""
    a, b = first["audio"], second["audio"]
    length = max(a.shape[0], b.shape[0])
    audio = np.zeros(length, dtype=np.float32)
    audio[: a.shape[0]] += np.float32(lam) * a
    audio[: b.shape[0]] += np.float32(1.0 - lam) * b
    main = first if lam >= 0.5 else second
    return {
        "key": f"{first['key']}+{second['key']}",
        "audio": audio,
        "num_samples": max(int(first["num_samples"]), int(second["num_samples"])),
        "caption": main["caption"],
        "captions": list(first["captions"]) + [c for c in second["captions"] if c not in first["captions"]],
        "metadata": {**first["metadata"], "mixup": {"with": second["key"], "lam": round(float(lam), 6)}},
        "complete": bool(first.get("complete")) and bool(second.get("complete")),
    }


class SeededShuffle(wds.utils.PipelineStage):
    """``wds.shuffle`` with a generator from ``worker_rng`` (a new order every epoch, per worker)."""

    def __init__(self, bufsize: int, initial: int, seed: int | None = 0, rank: int = 0) -> None:
        self.bufsize, self.initial, self.seed, self.rank = bufsize, initial, seed, rank
        self.epoch = -1

    def run(self, src: Iterable[Any]) -> Iterator[Any]:
        self.epoch += 1
        if self.bufsize <= 1:
            return iter(src)
        return wds.shuffle(self.bufsize, min(self.initial, self.bufsize), rng=worker_rng(self.seed, self.rank, self.epoch))(src)


class EpochShards(wds.utils.PipelineStage):
    """Every shard once per pass, in an order drawn from (seed, epoch) only, so every rank and DataLoader worker
    reads the same order (a ``SampleSplit`` after it then gives each rank its own clips)."""

    def __init__(self, urls: Sequence[str], seed: int | None = 0) -> None:
        self.urls, self.seed = list(urls), seed
        self.epoch = -1

    def run(self, src: Iterable[Any] = ()) -> Iterator[dict[str, str]]:
        self.epoch += 1
        order = list(self.urls)
        random.Random(f"{self.seed}:shards:{self.epoch}").shuffle(order)
        for url in order:
            yield {"url": url}


def sample_offsets(urls: Sequence[str], counts: Sequence[int] | None) -> list[int]:
    """Where each shard starts in the global clip order: cumulative clip counts when the index gives
    them (a perfectly even split), else the shard number (even within a shard)."""
    if counts is None:
        return list(range(len(urls)))
    offsets, total = [], 0
    for count in counts:
        offsets.append(total)
        total += count
    return offsets


class SampleSplit(wds.utils.PipelineStage):
    """Per-sample split over ranks and DataLoader workers: with ``P = world_size * num_workers`` parts,
    sample ``j`` of shard ``s`` goes to part ``(offset[s] + j) % P`` (part = ``rank * num_workers + worker``).

    Every worker reads every shard (undecoded bytes, cheap) and decodes only its own samples, so each
    clip is seen exactly once and in a stable order. With ``offsets`` from ``sample_offsets`` and known
    clip counts, parts differ by at most one clip overall.
    """

    def __init__(self, urls: Sequence[str], rank: int, world_size: int, offsets: Sequence[int] | None = None) -> None:
        offsets = list(range(len(urls))) if offsets is None else offsets
        self.offset = dict(zip(urls, offsets))
        self.rank, self.world_size = rank, world_size

    def run(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        worker, num_workers = _worker_id()
        parts, part = self.world_size * num_workers, self.rank * num_workers + worker
        current, j = None, 0
        for sample in src:
            url = sample.get("__url__")
            if url != current:
                current, j = url, 0
            if (self.offset.get(url, 0) + j) % parts == part:
                yield sample
            j += 1


class ShardsForRank(wds.utils.PipelineStage):
    """Per-shard split over ranks (shard ``s`` -> rank ``s % world_size``); follow it with
    ``wds.split_by_worker``. With more ranks (or workers) than shards some get no data."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def run(self, src: Iterable[Any]) -> Iterator[Any]:
        for i, item in enumerate(src):
            if i % self.world_size == self.rank:
                yield item


def eval_batches(counts: Sequence[int], rank: int, world_size: int, num_workers: int, batch_size: int, mode: str) -> int:
    """Batches one rank's evaluation loader yields for shards of ``counts`` clips (``mode``: sample|shard)."""
    num_workers = max(1, num_workers)
    per_worker = [0] * num_workers
    if mode == "sample":
        parts = world_size * num_workers
        offsets = sample_offsets(counts, counts)
        for offset, count in zip(offsets, counts):
            for w in range(num_workers):
                part = rank * num_workers + w
                first = (part - offset) % parts  # first j with (offset + j) % parts == part
                per_worker[w] += 0 if first >= count else (count - 1 - first) // parts + 1
    else:
        mine = [c for s, c in enumerate(counts) if s % world_size == rank]
        for i, count in enumerate(mine):
            per_worker[i % num_workers] += count
    return sum(-(-n // batch_size) for n in per_worker)


class WorkerShare(wds.utils.PipelineStage):
    """Stop after this DataLoader worker's share of ``total`` items, so the workers of one rank together
    yield exactly ``total`` (whatever ``num_workers`` is)."""

    def __init__(self, total: int) -> None:
        self.total = total

    def run(self, src: Iterable[Any]) -> Iterator[Any]:
        worker, num_workers = _worker_id()
        share = self.total // num_workers + (1 if worker < self.total % num_workers else 0)
        if share <= 0:
            return
        for i, item in enumerate(src, start=1):
            yield item
            if i >= share:
                return  # stop without pulling (and decoding) one more batch


def collate_clips(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Clip dicts -> the batch contract; clips of different lengths are zero-padded to the longest."""
    length = max(s["audio"].shape[0] for s in samples)
    audio = torch.zeros(len(samples), length, dtype=torch.float32)
    for i, s in enumerate(samples):
        audio[i, : s["audio"].shape[0]] = torch.from_numpy(s["audio"])
    return {
        "audio": audio,
        "num_samples": torch.tensor([s["num_samples"] for s in samples], dtype=torch.long),
        "caption": [s["caption"] for s in samples],
        "captions": [list(s["captions"]) for s in samples],
        "key": [s["key"] for s in samples],
        "complete": torch.tensor([bool(s.get("complete", False)) for s in samples], dtype=torch.bool),
    }


class SizedPipeline(wds.DataPipeline):
    """A ``DataPipeline`` that reports its number of batches (for progress bars and schedulers)."""

    def __init__(self, *stages: Any, length: int | None = None) -> None:
        super().__init__(*stages)
        self.length = length

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("this pipeline has no known length")
        return self.length


def iterate_shard_samples(pattern: ShardSpec, sample_rate: int | None = None) -> Iterator[dict[str, Any]]:
    """Every clip of the shards in order: ``{key, audio (np.float32, whole clip), sample_rate, captions,
    metadata}``. ``sample_rate`` resamples clips stored at another rate; corrupt members are logged and
    skipped."""
    urls = expand_shards(pattern)
    samples = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples(handler=log_and_skip))
    for sample in samples:
        try:
            record = parse_record(sample)
            target = sample_rate or int(record["sample_rate"])
            audio, _ = read_window(sample["flac"], None, target, None)
        except Exception as exn:
            exn.args = (*exn.args, f"key={sample.get('__key__')}", f"url={sample.get('__url__')}")
            log_and_skip(exn)
            continue
        captions = record.pop("captions")
        yield {"key": sample["__key__"], "audio": audio, "sample_rate": target, "captions": captions, "metadata": record}
