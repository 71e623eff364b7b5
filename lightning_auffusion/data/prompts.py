"""Prompts for sampling: reading prompt files and the ``PromptDataModule`` that feeds ``predict``.

Prompt files:

* ``.txt`` (or any other extension): one prompt per line; blank lines and lines starting with ``#`` skipped.
* ``.jsonl``: one JSON value per line, either a string or an object with a ``prompt``, ``caption`` or
  ``text`` field (or ``captions``, whose first entry is used).
* ``.json``: a list of such values.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lightning_auffusion.errors import MissingInputError, UserInputError

log = logging.getLogger(__name__)

PROMPT_FIELDS = ("prompt", "caption", "text")


def _prompt_from_value(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in PROMPT_FIELDS:
            if isinstance(value.get(key), str):
                return value[key]
        captions = value.get("captions")
        if isinstance(captions, list) and captions and isinstance(captions[0], str):
            return captions[0]
    raise UserInputError(
        f"{where}: expected a string or an object with one of {list(PROMPT_FIELDS)} (or 'captions'), got {value!r}"
    )


def read_prompts(path: str | Path) -> list[str]:
    """The prompts of a ``.txt``, ``.jsonl`` or ``.json`` file, in file order (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"prompt file {path} not found")
    text = path.read_text(encoding="utf-8")
    prompts: list[str] = []
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserInputError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            prompts.append(_prompt_from_value(value, f"{path}:{number}"))
    elif path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserInputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(values, list):
            raise UserInputError(f"{path}: a .json prompt file must hold a list of prompts")
        prompts = [_prompt_from_value(v, f"{path}[{i}]") for i, v in enumerate(values)]
    else:
        prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    prompts = [p.strip() for p in prompts]
    empty = [i for i, p in enumerate(prompts) if not p]
    if empty:
        raise UserInputError(f"{path}: empty prompt(s) at entries {empty[:10]}")
    if not prompts:
        raise UserInputError(f"{path}: no prompts in the file")
    return prompts


def collect_prompts(prompts: list[str] | None = None, prompt_file: str | None = None) -> list[str]:
    """Prompts given inline, then those of ``prompt_file``; at least one is required."""
    collected = [p.strip() for p in (prompts or [])]
    if any(not p for p in collected):
        raise UserInputError("prompts must not be empty strings")
    if prompt_file:
        collected += read_prompts(prompt_file)
    if not collected:
        raise UserInputError("no prompts: pass --prompts '[\"a dog barks\"]' or --prompt_file prompts.txt")
    return collected


class PromptDataset(Dataset):
    def __init__(self, prompts: list[str], seed: int = 0) -> None:
        self.prompts = prompts
        self.seed = seed

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"prompt": self.prompts[index], "index": index, "seed": self.seed + index}


def collate_prompts(items: list[dict[str, Any]]) -> dict[str, list]:
    return {key: [item[key] for item in items] for key in ("prompt", "index", "seed")}


class PromptDataModule(LightningDataModule):
    """Prompts (inline or from a file) as ``predict`` batches ``{"prompt", "index", "seed"}`` (lists).

    ``index`` is the prompt's position (used for output file names), ``seed`` is ``seed + index``: pass
    it to ``generate(seed=batch["seed"])`` so each prompt's audio is independent of batching.
    """

    def __init__(
        self,
        prompts: list[str] | None = None,
        prompt_file: str | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.prompts = collect_prompts(prompts, prompt_file)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(
            PromptDataset(self.prompts, self.hparams.seed),
            batch_size=self.hparams.batch_size,
            shuffle=False,
            num_workers=self.hparams.num_workers,
            collate_fn=collate_prompts,
        )
