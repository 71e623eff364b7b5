"""Writing generated clips: ``<index>_<slug>.wav`` (16-bit), spectrogram PNGs and a ``prompts.jsonl``.

:func:`write_generation` is used by the ``generate`` command and by the ``predict`` callback
``lightning_auffusion.callbacks.audio_writer.AudioPredictionWriter``; :func:`output_stem` names every file
written beside a clip (attention figures too).
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

from lightning_auffusion.audio.io import save_wav

log = logging.getLogger(__name__)


def slugify(text: str, max_length: int = 60) -> str:
    """A file-name-safe short form of a prompt: lower-case words joined by '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "prompt"


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
        record = {
            "index": index,
            "prompt": prompt,
            "seed": seed,
            "wav": wav.name,
            "seconds": audio.shape[-1] / output.sample_rate,
        }
        if spectrograms:
            png = save_spectrogram_png(
                output.logmel[row],
                out / f"{stem}.png",
                title=prompt,
                sample_rate=output.sample_rate,
                hop_length=hop_length,
            )
            record["png"] = png.name
        record.update(extra or {})
        records.append(record)
    if manifest:
        with open(out / manifest, "a", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")
    return records
