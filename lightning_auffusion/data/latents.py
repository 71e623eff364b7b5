"""``LatentShardDataModule``: trains the LDM from the latent shards written by ``encode`` (no VAE, no audio).

Batch contract (every split)::

    {"posterior": HalfTensor (B, 2C, h, w), "latent_frames": LongTensor (B,), "caption": list[str],
     "captions": list[list[str]], "key": list[str], "complete": BoolTensor (B,), "fingerprint": list[str],
     "text": {encoder name: HalfTensor (B, max_length, d)} (only when the shards hold text outputs),
     "text_fingerprints": {encoder name: str}}

It streams, splits, shuffles and resumes exactly as ``AudioShardDataModule`` (which it extends): the
same shard sampling, seeds, batches per epoch and rank splits; only the decoding differs. The crop keeps
the audio path's semantics in latent frames: ``segment_seconds`` (10.24 s) is ``seconds * sample_rate /
hop_length / downsampling`` latent frames (1024 mel frames / 8 = 128 for SD-1.5's VAE, the factor read
from the shards' index.json, where ``encode`` derived it from the VAE), at a random start for training and at
the start for validation/test; a clip that fits the window was padded at encoding as the audio path pads it.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_auffusion.data.datamodule import AudioShardDataModule
from lightning_auffusion.data.pipeline import DecodeClips, worker_rng
from lightning_auffusion.errors import UserInputError

log = logging.getLogger(__name__)


def _load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


class DecodeLatents(DecodeClips):
    """Raw latent-shard samples -> ``{key, posterior, latent_frames, caption, captions, text, ...}`` with a crop
    of ``segment`` latent frames (None = whole clips)."""

    def run(self, src: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        self.epoch += 1
        rng = worker_rng(self.seed, self.rank, self.epoch, salt=1) if self.random_choice else None
        for sample in src:
            try:
                yield self.decode(sample, rng)
            except Exception as exn:
                exn.args = (*exn.args, f"key={sample.get('__key__')}", f"url={sample.get('__url__')}")
                if not self.handler(exn):
                    break

    def decode(self, sample: dict[str, Any], rng) -> dict[str, Any]:
        if "json" not in sample or "posterior.npy" not in sample:
            raise ValueError(f"sample {sample.get('__key__')!r} lacks its .json or .posterior.npy member (not a latent shard?)")
        record = json.loads(sample["json"])
        posterior = _load_npy(sample["posterior.npy"])
        width = posterior.shape[-1]
        complete = self.segment is None or width <= self.segment
        if self.segment is not None:
            if width < self.segment:
                raise ValueError(f"{width} latent frames, shorter than the window of {self.segment}: encode with n_frames "
                                 "at least the training window")
            start = rng.randint(0, width - self.segment) if rng is not None else 0
            posterior = posterior[..., start:start + self.segment]
        captions = record["captions"]
        choice = rng.randrange(len(captions)) if rng is not None else 0
        text = {k[len("text_"):-len(".npy")]: _load_npy(v)[choice] for k, v in sample.items() if k.startswith("text_")}
        return {"key": sample["__key__"], "posterior": np.ascontiguousarray(posterior), "latent_frames": width,
                "caption": captions[choice], "captions": captions, "complete": complete, "text": text,
                "fingerprint": record.get("latent_fingerprint", ""), "text_fingerprints": record.get("text_fingerprints", {})}


def collate_latents(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Latent clip dicts -> the batch contract; whole clips of different widths repeat their last frame."""
    width = max(s["posterior"].shape[-1] for s in samples)
    rows = []
    for s in samples:
        p = torch.from_numpy(s["posterior"])
        if p.shape[-1] < width:
            p = torch.cat([p, p[..., -1:].expand(*p.shape[:-1], width - p.shape[-1])], dim=-1)
        rows.append(p)
    batch = {
        "posterior": torch.stack(rows),
        "latent_frames": torch.tensor([s["latent_frames"] for s in samples], dtype=torch.long),
        "caption": [s["caption"] for s in samples],
        "captions": [list(s["captions"]) for s in samples],
        "key": [s["key"] for s in samples],
        "complete": torch.tensor([bool(s["complete"]) for s in samples], dtype=torch.bool),
        "fingerprint": [s["fingerprint"] for s in samples],
        "text_fingerprints": samples[0]["text_fingerprints"],
    }
    names = set.intersection(*(set(s["text"]) for s in samples))
    if names:
        batch["text"] = {n: torch.stack([torch.from_numpy(s["text"][n]) for s in samples]) for n in sorted(names)}
    return batch


class LatentShardDataModule(AudioShardDataModule):
    """``AudioShardDataModule`` over latent shards (``encode``'s output); takes the same arguments.

    ``sample_rate`` is unused: the crop in latent frames comes from the shards' own index.json
    (sample rate, hop length and VAE downsampling of the encoding).
    """

    def _geometry(self) -> tuple[int, int, int]:
        for split in ("train", "val", "test"):
            spec = getattr(self, f"{split}_shards")
            if spec is None:
                continue
            for url in self._urls(split):
                index = Path(url).parent / "index.json"
                if index.is_file():
                    data = json.loads(index.read_text(encoding="utf-8"))
                    if data.get("format", "").startswith("latent-shards"):
                        return int(data["sample_rate"]), int(data["hop_length"]), int(data["latent_downsampling"])
                    raise UserInputError(f"{index} is not a latent shard index: write latent shards with "
                                         "`python -m lightning_auffusion encode --shards <audio shards> --name <name>`")
        raise UserInputError("the latent shards have no index.json beside them (written by `encode`): the crop in latent "
                             "frames needs its sample_rate, hop_length and latent_downsampling")

    def latent_frames(self, seconds: float | None) -> int | None:
        """The window ``seconds`` in latent frames: seconds * sample_rate / hop_length / downsampling."""
        if seconds is None:
            return None
        rate, hop, factor = self._geometry()
        frames = int(round(seconds * rate / hop))
        if frames % factor:
            raise UserInputError(f"a {seconds} s window is {frames} mel frames, not a multiple of the VAE's downsampling "
                                 f"{factor}: choose a window of a multiple of {factor * hop / rate} s")
        return frames // factor

    def decode_stage(self, seconds: float | None, random_choice: bool, rank: int) -> DecodeLatents:
        return DecodeLatents(self.latent_frames(seconds), self.sample_rate, random_choice, self.seed, rank)

    @staticmethod
    def collate(samples: list[dict]) -> dict:
        return collate_latents(samples)
