"""Log vocoder validation samples: the real clip, its resynthesis and the Griffin-Lim reference.

Collects the first ``num_clips`` clips that ``VocoderModule.validation_step`` returns, then (rank 0 only,
not during the sanity check) logs through every logger that has ``log_audio`` / ``log_image`` (Lightning's
``WandbLogger``): ``<prefix>/audio`` (real, vocoder and Griffin-Lim per clip) and ``<prefix>/spectrogram``
(their log-mels). With ``save_dir`` the same WAVs and PNGs are written to ``<save_dir>/step_<N>/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lightning_auffusion.audio.io import save_wav
from lightning_auffusion.paths import file_in

log = logging.getLogger(__name__)

VERSIONS = (("audio", "real"), ("generated", "vocoder"), ("griffin_lim", "griffin-lim"))


def _figure_array(logmel: torch.Tensor, title: str, sample_rate: int, hop: int) -> np.ndarray:
    from lightning_auffusion.plotting import spectrogram_figure

    fig = spectrogram_figure(logmel, title=title, sample_rate=sample_rate, hop_length=hop, height_inches=3.0)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


class VocoderSamplesCallback(Callback):
    """Audio and spectrograms of validation clips after each validation run (rank 0).

    Args:
        num_clips: clips logged per validation run (taken from the first validation batches).
        every_n_validations: log at every N-th validation run.
        spectrograms: also log log-mel images.
        save_dir: also write WAV/PNG files under ``<save_dir>/step_<N>/`` (None: loggers only).
        prefix: prefix of the logged keys.
    """

    def __init__(
        self,
        num_clips: int = 4,
        every_n_validations: int = 1,
        spectrograms: bool = True,
        save_dir: str | None = None,
        prefix: str = "vocoder",
    ) -> None:
        super().__init__()
        if num_clips < 0 or every_n_validations < 1:
            raise ValueError("num_clips must be >= 0 and every_n_validations >= 1")
        self.num_clips, self.every_n_validations = num_clips, every_n_validations
        self.spectrograms, self.save_dir, self.prefix = spectrograms, save_dir, prefix
        self._clips: list[dict[str, Any]] = []
        self._validations = 0

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._clips = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or not isinstance(outputs, dict)
            or "generated" not in outputs
        ):
            return
        for i in range(len(outputs["generated"])):
            if len(self._clips) >= self.num_clips:
                return
            n = int(outputs["num_samples"][i])
            clip = {name: outputs[name][i, :n].detach().float().cpu() for name, _ in VERSIONS if name in outputs}
            clip["key"] = outputs["key"][i] if "key" in outputs else str(len(self._clips))
            self._clips.append(clip)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        self._validations += 1
        if not self._clips or (self._validations - 1) % self.every_n_validations:
            return
        try:
            self.log_clips(trainer, pl_module, self._clips)
        except Exception as err:  # logging media must never stop training
            log.warning("vocoder sample logging failed: %s: %s", type(err).__name__, err)
        self._clips = []

    def log_clips(self, trainer: Trainer, pl_module: LightningModule, clips: list[dict[str, Any]]) -> None:
        sr = pl_module.mel_config.sample_rate
        hop = pl_module.mel_config.hop_length
        step = trainer.global_step
        audios, captions, images, image_captions = [], [], [], []
        for clip in clips:
            for name, label in VERSIONS:
                if name not in clip:
                    continue
                wave = clip[name]
                audios.append(wave.numpy())
                captions.append(f"{clip['key']} {label}")
                if self.spectrograms:
                    logmel = pl_module.compute_logmel(wave[None].to(pl_module.device))[0].cpu()
                    images.append(_figure_array(logmel, f"{clip['key']} {label}", sr, hop))
                    image_captions.append(f"{clip['key']} {label}")
        for logger in trainer.loggers:
            if hasattr(logger, "log_audio"):
                logger.log_audio(
                    f"{self.prefix}/audio", audios, step=step, caption=captions, sample_rate=[sr] * len(audios)
                )
            if images and hasattr(logger, "log_image"):
                logger.log_image(f"{self.prefix}/spectrogram", images, step=step, caption=image_captions)
        if self.save_dir is not None:
            out = Path(self.save_dir) / f"step_{step:08d}"
            for wave, caption in zip(audios, captions):
                save_wav(file_in(out, caption, ".wav"), wave, sr)
            if images:
                from PIL import Image

                for image, caption in zip(images, image_captions):
                    Image.fromarray(image).save(file_in(out, caption, ".png"))
