"""``MetricsLogCallback``: every scalar the trainer knows, appended to a JSON-lines file as it changes.

The sweep runner adds it to every trial so the dashboard can draw loss and metric curves from disk without
parsing logger files: one line per write, ``{"step": 120, "epoch": 3, "train/loss": 0.41, "eval/fd": ...}``
holding only the scalars of ``trainer.callback_metrics`` that changed since the previous line. A resumed run
appends; readers keep the last value per (key, step).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def _scalar(value) -> float | None:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
        return float(value)
    return None


class MetricsLogCallback(Callback):
    """Append changed scalars of ``trainer.callback_metrics`` to ``path`` (rank 0 only).

    Args:
        path: The JSON-lines file (its folder is created).
        every_n_steps: Write after every N-th training step (default: the trainer's ``log_every_n_steps``);
            also written at the end of each validation epoch (not the sanity check) and of training.
    """

    def __init__(self, path: str, every_n_steps: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._last: dict[str, float] = {}

    def _write(self, trainer: Trainer) -> None:
        if not trainer.is_global_zero:
            return
        changed = {}
        for key, value in trainer.callback_metrics.items():
            number = _scalar(value)
            if number is not None and self._last.get(key) != number:
                changed[key] = number
        if not changed:
            return
        self._last.update(changed)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(
                json.dumps({"step": int(trainer.global_step), "epoch": int(trainer.current_epoch), **changed}) + "\n"
            )

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        every = self.every_n_steps or trainer.log_every_n_steps or 1
        if trainer.global_step % every == 0:
            self._write(trainer)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer)


def read_metrics_log(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{key: [(step, value), ...]}`` sorted by step, the last value kept per step; unreadable lines skipped."""
    curves: dict[str, dict[int, float]] = {}
    path = Path(path)
    if not path.is_file():
        return {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
            step = int(row.pop("step"))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        row.pop("epoch", None)
        for key, value in row.items():
            if isinstance(value, (int, float)):
                curves.setdefault(key, {})[step] = float(value)
    return {k: sorted(v.items()) for k, v in curves.items()}
