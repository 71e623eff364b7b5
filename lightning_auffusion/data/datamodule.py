"""``AudioShardDataModule``: streams the shards written by ``shard`` as batches of 16 kHz waveforms.

Batch contract (every split)::

    {"audio": FloatTensor (B, T), "num_samples": LongTensor (B,), "caption": list[str] (None: no caption),
     "captions": list[list[str]], "key": list[str], "complete": BoolTensor (B,)}

``complete`` is True where the window holds the whole clip (what its caption describes), e.g. for the
alignment accuracy that the vocoder and VAE modules report in validation.

Training draws shards with replacement (``wds.ResampledShards``, seeded per rank and worker), shuffles
samples in a buffer, decodes a random ``segment_seconds`` window (zero-padded when the clip is shorter)
and picks one caption at random. An epoch is exactly ``batches_per_epoch`` batches on every rank,
whatever the number of ranks, nodes or workers, so DDP never waits on a rank that ran out of data.

Validation and test read every clip exactly once in a stable order: the window at the start of the clip
and its first caption. ``eval_split="sample"`` (default) splits clips over ranks and workers by position,
so every rank gets data even with a single shard; ``"shard"`` splits whole shards (less reading, but a
rank or worker beyond the number of shards gets no data). Under DDP the ranks may then differ by a batch:
log validation metrics per epoch (torchmetrics / ``sync_dist`` at epoch end), not with per-step syncs.

Shards are given as paths, globs, brace patterns (``data/x-{000000..000031}.tar``), ``pipe:`` URLs
(``pipe:aws s3 cp s3://bucket/x-000000.tar -``), ``::``-joined lists, a shard folder or its
``index.json``. A corrupt member or unreadable shard is logged and skipped.
"""

from __future__ import annotations

import logging
import os
from functools import partial

import lightning.pytorch as pl
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from lightning_auffusion.data.pipeline import (
    DecodeClips,
    EpochShards,
    MixupClips,
    ReadShards,
    SampleSplit,
    SeededShuffle,
    ShardsForRank,
    ShardSpec,
    SizedPipeline,
    WorkerShare,
    collate_clips,
    eval_batches,
    expand_shards,
    log_and_skip,
    rank_worker_seed,
    sample_offsets,
    set_stream_epoch,
    shard_counts,
)
from lightning_auffusion.errors import UserInputError

log = logging.getLogger(__name__)


class StreamLoader(DataLoader):
    """The training DataLoader: counts the passes over its (endless, seeded) stream, starting at
    ``first_epoch``, and sets each pass's stream epoch in the pipeline before the workers copy it (so
    fresh workers, persistent ones and ``num_workers=0`` all draw the same sequence)."""

    def __init__(self, dataset: wds.DataPipeline, first_epoch: int = 0, **kwargs) -> None:
        super().__init__(dataset, **kwargs)
        self.first_epoch, self.epochs_started = int(first_epoch), 0

    @property
    def next_epoch(self) -> int:
        return self.first_epoch + self.epochs_started

    def __iter__(self):
        set_stream_epoch(self.dataset, self.next_epoch)
        self.epochs_started += 1
        return super().__iter__()


class AudioShardDataModule(pl.LightningDataModule):
    def __init__(
        self,
        train_shards: ShardSpec | None = None,
        val_shards: ShardSpec | None = None,
        test_shards: ShardSpec | None = None,
        batch_size: int = 20,
        val_batch_size: int | None = None,
        num_workers: int = 4,
        segment_seconds: float | None = 10.24,
        val_segment_seconds: float | None = 10.24,
        sample_rate: int = 16000,
        shuffle_buffer: int = 1000,
        shuffle_initial: int = 100,
        batches_per_epoch: int | None = None,
        seed: int | None = 0,
        eval_split: str = "sample",
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        rank: int | None = None,
        world_size: int | None = None,
        max_consecutive_shard_failures: int = 32,
        train_sampling: str = "resample",
        keep_uncaptioned: bool = False,
        mixup_probability: float = 0.0,
        mixup_alpha: float = 5.0,
    ) -> None:
        """
        Args:
            train_shards: training shards (path, glob, brace pattern, pipe: URL, list, folder or index.json).
            val_shards: validation shards; None = no validation loader.
            test_shards: test shards; None = no test loader.
            batch_size: clips per training batch (per rank). Auffusion: 20.
            val_batch_size: clips per validation/test batch; None = batch_size.
            num_workers: DataLoader worker processes per rank.
            segment_seconds: training window (random start, zero-padded when short); None = whole clips,
                padded to the longest in the batch. Auffusion: 10.24 s = 1024 frames at hop 160.
            val_segment_seconds: validation/test window taken from the start of each clip; None = whole clips.
            sample_rate: waveform rate of the batches; shards stored at another rate are resampled.
            shuffle_buffer: training samples held for shuffling per worker (memory: about this many
                compressed clips per worker); 0 or 1 disables it.
            shuffle_initial: samples buffered before the first one is released.
            batches_per_epoch: training batches per epoch on every rank; None = clips / (batch_size *
                world_size) when the shards' index.json gives the clip count.
            seed: base seed of shard sampling, shuffling, crops and caption choice (per rank, worker and
                epoch); None = fresh entropy every run.
            eval_split: how validation/test clips are split over ranks and workers: "sample" or "shard".
            pin_memory: pin batches in page-locked memory when CUDA is available.
            persistent_workers: keep workers between epochs (their epoch counters then vary the crops).
            prefetch_factor: batches prefetched per worker.
            rank: this process's global rank; None = from the trainer, RANK or torch.distributed.
            world_size: number of ranks; None = from the trainer, WORLD_SIZE or torch.distributed.
            max_consecutive_shard_failures: training shards in a row that may give no readable sample before
                training stops with an error (bad shards among good ones are logged and skipped).
            train_sampling: "resample": shards drawn with replacement per rank and worker (endless stream);
                "epoch": every shard once per epoch in a seeded order, its clips split over ranks and workers
                (each clip at most once per epoch; for multi-GPU runs where an epoch should mean one pass).
            keep_uncaptioned: pass clips without captions (caption None) instead of skipping them; only the
                audio-conditioned encoder kind clap_audio trains on them, text encoders refuse such batches.
                Shards keep such clips when written with ``shard --keep_uncaptioned true``.
            mixup_probability: training only: chance that a clip is mixed with the previous one (AudioLDM's
                mixup, ``pipeline.MixupClips``); 0 = off.
            mixup_alpha: the mixing weight's Beta(alpha, alpha) parameter (AudioLDM: 5).
        """
        super().__init__()
        if train_sampling not in ("resample", "epoch"):
            raise UserInputError(f"train_sampling must be 'resample' or 'epoch', got {train_sampling!r}")
        self.train_sampling = train_sampling
        if eval_split not in ("sample", "shard"):
            raise UserInputError(f"eval_split must be 'sample' or 'shard', got {eval_split!r}")
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1):
            raise UserInputError("batch_size and val_batch_size must be positive")
        for label, value in (("segment_seconds", segment_seconds), ("val_segment_seconds", val_segment_seconds)):
            if value is not None and value <= 0:
                raise UserInputError(f"{label} must be positive or None (whole clips), got {value}")
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise UserInputError(f"batches_per_epoch must be positive, got {batches_per_epoch}")
        self.save_hyperparameters()
        self.train_shards, self.val_shards, self.test_shards = train_shards, val_shards, test_shards
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.segment_seconds, self.val_segment_seconds = segment_seconds, val_segment_seconds
        self.sample_rate = sample_rate
        self.shuffle_buffer, self.shuffle_initial = shuffle_buffer, shuffle_initial
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.eval_split = eval_split
        self.pin_memory, self.persistent_workers, self.prefetch_factor = pin_memory, persistent_workers, prefetch_factor
        self.rank, self.world_size = rank, world_size
        if max_consecutive_shard_failures < 1:
            raise UserInputError(f"max_consecutive_shard_failures must be >= 1, got {max_consecutive_shard_failures}")
        self.max_consecutive_shard_failures = max_consecutive_shard_failures
        self.keep_uncaptioned = keep_uncaptioned
        self.mixup = MixupClips(mixup_probability, mixup_alpha, seed)  # checks the two options
        self.first_stream_epoch = 0  # restored from a checkpoint: a resumed run continues the stream
        self._train_loader: StreamLoader | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def rank_and_world(self) -> tuple[int, int]:
        """(global rank, world size): explicit arguments, else the trainer, else the environment."""
        if self.rank is not None or self.world_size is not None:
            world = self.world_size or 1
            rank = self.rank or 0
        elif self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world = 0, 1
        if not 0 <= rank < world:
            raise UserInputError(f"rank must be in [0, world_size), got rank={rank}, world_size={world}")
        return rank, world

    def _samples(self, seconds: float | None) -> int | None:
        return None if seconds is None else int(round(seconds * self.sample_rate))

    def _urls(self, split: str) -> list[str]:
        spec = getattr(self, f"{split}_shards")
        if spec is None:
            raise UserInputError(
                f"{split}_shards is not set: point it at shards written by `python -m lightning_auffusion shard` "
                "(e.g. data_shards/<name>/index.json or data_shards/<name>/<name>-{000000..000009}.tar)"
            )
        return expand_shards(spec)

    def _loader_kwargs(self) -> dict:
        workers = self.num_workers
        return {
            "batch_size": None,
            "num_workers": workers,
            "pin_memory": self.pin_memory and torch.cuda.is_available(),
            "persistent_workers": self.persistent_workers and workers > 0,
            "prefetch_factor": self.prefetch_factor if workers > 0 else None,
        }

    def _loader(self, dataset: wds.DataPipeline) -> DataLoader:
        return DataLoader(dataset, **self._loader_kwargs())

    def train_batches(self, urls: list[str], world_size: int) -> int:
        counts = shard_counts(urls)
        if counts is not None and sum(counts) == 0:
            raise UserInputError(f"the training shards hold no clips ({len(urls)} empty shard(s)); see their rejects.jsonl")
        if self.batches_per_epoch is not None:
            return self.batches_per_epoch
        if counts is None:
            raise UserInputError(
                "batches_per_epoch is not set and the clip count of the training shards is unknown (no index.json "
                "beside them): set data.init_args.batches_per_epoch"
            )
        return max(1, sum(counts) // (self.batch_size * world_size))

    # -- pipelines -------------------------------------------------------------------------------
    def decode_stage(self, seconds: float | None, random_choice: bool, rank: int) -> wds.utils.PipelineStage:
        """Raw shard samples -> clip dicts: a ``seconds`` window (random start and caption when ``random_choice``)."""
        return DecodeClips(
            self._samples(seconds), self.sample_rate, random_choice, self.seed, rank, keep_uncaptioned=self.keep_uncaptioned
        )

    @staticmethod
    def collate(samples: list[dict]) -> dict:
        return collate_clips(samples)

    def _mixup_stages(self, rank: int) -> list[MixupClips]:
        if self.mixup.probability <= 0:
            return []
        return [MixupClips(self.mixup.probability, self.mixup.alpha, self.seed, rank)]

    def train_pipeline(self) -> SizedPipeline:
        urls = self._urls("train")
        rank, world = self.rank_and_world()
        batches = self.train_batches(urls, world)
        if self.train_sampling == "epoch":
            counts = shard_counts(urls)
            if counts is not None and sum(counts) < batches * self.batch_size * world:
                raise UserInputError(
                    f"train_sampling 'epoch': {sum(counts)} clips cannot fill {batches} batches of {self.batch_size} on "
                    f"{world} rank(s); lower batches_per_epoch or leave it unset"
                )
            return SizedPipeline(
                EpochShards(urls, self.seed),
                wds.tarfile_to_samples(handler=log_and_skip),
                SampleSplit(urls, rank, world, sample_offsets(urls, counts)),
                SeededShuffle(self.shuffle_buffer, self.shuffle_initial, self.seed, rank),
                self.decode_stage(self.segment_seconds, True, rank),
                wds.batched(self.batch_size, collation_fn=self.collate, partial=False),
                WorkerShare(batches),
                length=batches,
            )
        return SizedPipeline(
            wds.ResampledShards(
                urls,
                seed=self.seed or 0,
                worker_seed=partial(rank_worker_seed, rank),
                deterministic=self.seed is not None,
            ),
            ReadShards(self.max_consecutive_shard_failures),
            SeededShuffle(self.shuffle_buffer, self.shuffle_initial, self.seed, rank),
            self.decode_stage(self.segment_seconds, True, rank),
            *self._mixup_stages(rank),
            wds.batched(self.batch_size, collation_fn=self.collate, partial=False),
            WorkerShare(batches),
            length=batches,
        )

    def eval_pipeline(self, split: str) -> SizedPipeline:
        urls = self._urls(split)
        rank, world = self.rank_and_world()
        stages: list = [wds.SimpleShardList(urls)]
        if self.eval_split == "shard":
            stages += [ShardsForRank(rank, world), wds.split_by_worker]
        stages.append(wds.tarfile_to_samples(handler=log_and_skip))
        counts = shard_counts(urls)
        if self.eval_split == "sample":
            stages.append(SampleSplit(urls, rank, world, sample_offsets(urls, counts)))
        stages += [
            self.decode_stage(self.val_segment_seconds, False, rank),
            wds.batched(self.val_batch_size, collation_fn=self.collate, partial=True),
        ]
        length = None
        if counts is not None:
            length = eval_batches(counts, rank, world, self.num_workers, self.val_batch_size, self.eval_split)
        return SizedPipeline(*stages, length=length)

    # -- LightningDataModule ---------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Check early that the shards of the splits this stage needs exist."""
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", ("train", "val", "test"))
        for split in needed:
            if getattr(self, f"{split}_shards") is not None:
                self._urls(split)
        if stage == "fit" and self.train_shards is None:
            self._urls("train")  # raises with the fix

    def train_dataloader(self) -> DataLoader:
        self._train_loader = StreamLoader(self.train_pipeline(), self.first_stream_epoch, **self._loader_kwargs())
        return self._train_loader

    def state_dict(self) -> dict[str, int]:
        """The training stream's position: the next unused stream epoch (saved in Lightning checkpoints)."""
        loader = self._train_loader
        return {"stream_epoch": loader.next_epoch if loader is not None else self.first_stream_epoch}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume the stream after the epochs the checkpointed run had begun, not from epoch 0 again."""
        self.first_stream_epoch = int(state_dict.get("stream_epoch", 0))

    def val_dataloader(self) -> DataLoader | list:
        return [] if self.val_shards is None else self._loader(self.eval_pipeline("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_pipeline("test"))
