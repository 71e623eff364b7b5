"""Stage ceilings: the reference clips rendered through a model's own decoders, scored like generated audio.

Generated audio cannot be better than the stages that render it. Two rows show where a result is limited:

- ``ceiling_vocoder``: reference -> the model's log-mel front end -> its vocoder (Griffin-Lim when the model
  has none);
- ``ceiling_vae_vocoder``: reference -> log-mel -> image -> VAE encode (posterior mean) and decode -> image ->
  log-mel -> vocoder.

Each clip is mixed to mono and resampled to the front end's rate (whatever it is: Auffusion's 16 kHz or a
HiFi-GAN 22.05 kHz mel), the front end pads or crops it to the model's clip length (``n_frames``), and the
rendered audio is cut back to the clip's own length (at most the model's clip length, logged when shorter).

The rows depend only on the decoders and the reference, not on the U-Net, so runs that share them (the trials of
an encoder sweep) can share the rendered clips: with a ``cache`` folder the rendered clips of each row are kept
under ``<cache>/<digest>/<row>/`` (float WAV), where the digest covers the VAE and front end (their latent
fingerprint), the vocoder's weights, the waveform decoder and the reference (its path and its files' sizes and times);
a later evaluation with the same digest scores those files instead of rendering again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from lightning_auffusion.audio.resample import resample

log = logging.getLogger(__name__)

GENERATED_ROW = "generated"
CEILING_ROWS: dict[str, str] = {
    "ceiling_vocoder": "reference -> log-mel -> vocoder",
    "ceiling_vae_vocoder": "reference -> log-mel -> image -> VAE -> image -> log-mel -> vocoder",
}


class StageCeilings:
    """Renders clips through the decoders of an ``AuffusionPipeline`` (see the module docstring)."""

    rows = tuple(CEILING_ROWS)

    def __init__(self, pipeline, cache: str | os.PathLike | None = None, reference_key: str = "") -> None:
        self.pipeline = pipeline
        self.frontend = pipeline.frontend
        self._cropped_warned = False
        self.cache = Path(cache) / decoder_digest(pipeline, reference_key) if cache else None

    @property
    def sample_rate(self) -> int:
        return int(self.frontend.sample_rate)

    def _batch(
        self, clips: Sequence[np.ndarray | torch.Tensor], rates: Sequence[int]
    ) -> tuple[torch.Tensor, list[int]]:
        waves = []
        for clip, sr in zip(clips, rates):
            x = torch.as_tensor(np.asarray(clip.detach().cpu() if torch.is_tensor(clip) else clip, dtype=np.float32))
            x = x.mean(dim=0) if x.dim() == 2 else x.reshape(-1)
            waves.append(resample(x, int(sr), self.sample_rate))
        lengths = [int(w.shape[-1]) for w in waves]
        batch = torch.zeros(len(waves), max(lengths))
        for i, w in enumerate(waves):
            batch[i, : w.shape[-1]] = w
        return batch.to(self.pipeline.device), lengths

    @torch.no_grad()
    def render(self, row: str, clips: Sequence[np.ndarray | torch.Tensor], rates: Sequence[int]) -> list[np.ndarray]:
        """The clips through stage ``row`` (one of ``CEILING_ROWS``), mono float32 at ``self.sample_rate``."""
        from lightning_auffusion.diffusion.sampling import decode_latents, encode_audio, vocode_logmel

        if row not in CEILING_ROWS:
            raise ValueError(f"unknown ceiling row {row!r}; choose from {list(CEILING_ROWS)}")
        waves, lengths = self._batch(clips, rates)
        if row == "ceiling_vocoder":
            audio = vocode_logmel(self.pipeline, self.frontend.waveform_to_logmel(waves.float()))
        else:
            audio, _, _ = decode_latents(self.pipeline, encode_audio(self.pipeline, waves))
        audio = audio.float().cpu()
        if not self._cropped_warned and max(lengths) > audio.shape[-1]:
            log.warning(
                "stage ceilings: reference clips longer than the model's clip (%.2f s) are cut to it",
                audio.shape[-1] / self.sample_rate,
            )
            self._cropped_warned = True
        return [audio[i, : min(n, audio.shape[-1])].numpy() for i, n in enumerate(lengths)]

    def batches(self, row: str, reference: Iterable, batch_size: int) -> Iterator:
        """Batches of the reference clips (``evaluation.sources.Batch``) rendered through ``row``: from the cache
        when it holds this row for these decoders, else rendered (and kept in the cache when there is one)."""
        from lightning_auffusion.audio.io import save_wav
        from lightning_auffusion.evaluation.sources import Batch, iter_folder, list_audio

        done = self.cache / row if self.cache is not None else None
        if done is not None and (done / COMPLETE_FILE).is_file():
            log.info("stage ceilings: the %s row's clips come from the cache %s", row, done)
            yield from iter_folder(list_audio(done), batch_size, [])
            return
        partial = done.with_name(row + ".partial") if done is not None else None
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        count = 0
        for batch in reference:
            rendered = Batch([*self.render(row, batch.clips, batch.rates)], [self.sample_rate] * len(batch), batch.ids)
            if partial is not None:
                for clip_id, audio in zip(rendered.ids, rendered.clips):
                    save_wav(partial / f"{clip_id}.wav", audio, self.sample_rate, subtype="FLOAT")
            count += len(rendered)
            yield rendered
        if partial is not None:
            (partial / COMPLETE_FILE).write_text(json.dumps({"row": row, "clips": count}) + "\n", encoding="utf-8")
            shutil.rmtree(done, ignore_errors=True)
            os.replace(partial, done)


COMPLETE_FILE = "complete.json"


def decoder_digest(pipeline, reference_key: str = "") -> str:
    """A digest of what the ceiling rows depend on: the VAE and front end (``latent_fingerprint``, as latent shards
    are tied to them), the vocoder's weights, the clip length, the waveform decoder and ``reference_key``."""
    from lightning_auffusion.diffusion.latent_fingerprint import latent_fingerprint, module_weights_digest

    vocoder = getattr(pipeline, "vocoder", None)
    settings = {
        "vae_and_frontend": latent_fingerprint(pipeline.vae, pipeline.frontend),
        "vocoder": module_weights_digest(vocoder) if vocoder is not None else None,
        "n_frames": pipeline.frontend.n_frames,
        "waveform_decoder": getattr(pipeline, "waveform_decoder", "vocoder"),
        "griffin_lim_iters": getattr(pipeline, "griffin_lim_iters", None),
        "vae_scaling_factor": getattr(pipeline, "vae_scaling_factor", None),
        "reference": reference_key,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=repr).encode()).hexdigest()[:20]


def reference_key(reference: str, files: dict[str, Path] | None) -> str:
    """The reference as the ceiling cache sees it: its resolved path and each file's name, size and time."""
    paths = list(files.values()) if files is not None else [p for p in [Path(reference)] if p.exists()]
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    return json.dumps([str(Path(reference).resolve()), stats])


def ceiling_pipeline(module):
    """A frozen ``AuffusionPipeline`` view of an ``AuffusionLDM`` (shares its VAE, vocoder and front end);
    a pipeline is used as it is."""
    from lightning_auffusion.diffusion.pipeline import AuffusionPipeline

    if isinstance(module, AuffusionPipeline):
        return module
    return AuffusionPipeline.from_module(module, use_ema=False)
