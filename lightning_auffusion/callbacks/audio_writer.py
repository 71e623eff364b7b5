"""``AudioPredictionWriter``: the ``predict`` callback writing each predicted batch as the ``generate``
command does (:func:`lightning_auffusion.audio.writers.write_generation`)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_auffusion.audio.writers import write_generation

log = logging.getLogger(__name__)


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

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
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
