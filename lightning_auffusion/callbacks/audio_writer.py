"""Writing generated audio: ``<index>_<slug>.wav`` (16-bit), spectrogram PNGs and a ``prompts.jsonl``.

:func:`write_generation` is used by the ``generate`` command; :class:`AudioPredictionWriter` is the
Lightning ``predict`` callback doing the same for each predicted batch.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_auffusion.audio.io import save_wav

log = logging.getLogger(__name__)


def slugify(text: str, max_length: int = 60) -> str:
    """A file-name-safe short form of a prompt: lower-case words joined by '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (slug[:max_length].rstrip("-") or "prompt")


def output_stem(index: int, prompt: str, width: int = 4) -> str:
    return f"{index:0{width}d}_{slugify(prompt)}"


def write_generation(
    output: Any,
    output_dir: str | os.PathLike,
    indices: Sequence[int] | None = None,
    spectrograms: bool = True,
    manifest: str | None = "prompts.jsonl",
    extra: dict[str, Any] | None = None,
    hop_length: int = 160,
) -> list[dict[str, Any]]:
    """Write each row of a ``GenerationOutput`` as a WAV (and PNG); append one JSON line per row.

    ``indices`` number the files (default 0..B-1); ``extra`` is added to every manifest record (e.g. the
    sampling settings). Returns the manifest records.
    """
    from lightning_auffusion.plotting import save_spectrogram_png

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    count = output.audio.shape[0]
    indices = list(range(count)) if indices is None else [int(i) for i in indices]
    prompts = list(output.prompts) or [""] * count
    seeds = list(output.seeds) or [None] * count
    if len(indices) != count or len(prompts) != count:
        raise ValueError(f"{count} generated clips but {len(indices)} indices and {len(prompts)} prompts")
    records = []
    for row, (index, prompt, seed) in enumerate(zip(indices, prompts, seeds)):
        stem = output_stem(index, prompt)
        wav = out / f"{stem}.wav"
        audio = output.audio[row]
        if not torch.isfinite(audio).all():
            log.warning("%s: non-finite samples replaced by 0 before writing", wav.name)
        save_wav(wav, audio, output.sample_rate)
        record = {"index": index, "prompt": prompt, "seed": seed, "wav": wav.name, "seconds": audio.shape[-1] / output.sample_rate}
        if spectrograms:
            png = save_spectrogram_png(output.logmel[row], out / f"{stem}.png", title=prompt, sample_rate=output.sample_rate, hop_length=hop_length)
            record["png"] = png.name
        record.update(extra or {})
        records.append(record)
    if manifest:
        with open(out / manifest, "a", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")
    return records


class AudioPredictionWriter(BasePredictionWriter):
    """Writes the ``GenerationOutput`` of every ``predict_step`` to ``output_dir``.

    Files are named by the batch's ``index`` entries; with several processes each rank writes its own
    manifest ``prompts.rank<k>.jsonl`` (``prompts.jsonl`` with one).
    """

    def __init__(self, output_dir: str = "outputs/predict", spectrograms: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.spectrograms = spectrograms

    def _manifest_name(self, trainer) -> str:
        return "prompts.jsonl" if trainer.world_size == 1 else f"prompts.rank{trainer.global_rank}.jsonl"

    def on_predict_start(self, trainer, pl_module) -> None:
        stale = Path(self.output_dir) / self._manifest_name(trainer)
        if stale.is_file():
            stale.unlink()  # the manifest describes this run only

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        if prediction is None:
            return
        if not hasattr(prediction, "audio"):
            raise TypeError(
                f"AudioPredictionWriter expects predict_step to return a GenerationOutput, got {type(prediction).__name__}"
            )
        indices = batch.get("index") if isinstance(batch, dict) else None
        if indices is None:
            indices = list(batch_indices) if batch_indices is not None else None
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        if not prediction.prompts and isinstance(batch, dict) and "prompt" in batch:
            prediction.prompts = list(batch["prompt"])
        manifest = self._manifest_name(trainer)
        hop = getattr(getattr(pl_module, "frontend", None), "hop_length", 160)
        records = write_generation(prediction, self.output_dir, indices, self.spectrograms, manifest, hop_length=hop)
        log.info("wrote %d clips to %s", len(records), self.output_dir)
