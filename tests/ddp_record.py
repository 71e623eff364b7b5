"""A test-only callback: every rank appends the keys of its training batches and the logged validation
metrics to ``<out>/rank<global rank>.jsonl`` (read by tests/test_ddp.py)."""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import Callback


class RecordKeys(Callback):
    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def _write(self, trainer, record: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / f"rank{trainer.global_rank}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"world": trainer.world_size, **record}) + "\n")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._write(trainer, {"epoch": trainer.current_epoch, "step": trainer.global_step, "keys": list(batch["key"])})

    def on_validation_end(self, trainer, pl_module) -> None:  # after the epoch metrics are reduced and logged
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self._write(trainer, {"epoch": trainer.current_epoch, "step": trainer.global_step, "val": metrics})
