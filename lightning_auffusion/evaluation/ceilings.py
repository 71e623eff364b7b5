"""Stage ceilings: the reference clips rendered through a model's own decoders, scored like generated audio.

Generated audio cannot be better than the stages that render it. Two rows show where a result is limited:

- ``ceiling_vocoder``: reference -> the model's log-mel front end -> its vocoder (Griffin-Lim when the model
  has none);
- ``ceiling_vae_vocoder``: reference -> log-mel -> image -> VAE encode (posterior mean) and decode -> image ->
  log-mel -> vocoder.

Each clip is mixed to mono and resampled to the front end's rate (whatever it is: Auffusion's 16 kHz or a
HiFi-GAN 22.05 kHz mel), the front end pads or crops it to the model's clip length (``n_frames``), and the
rendered audio is cut back to the clip's own length (at most the model's clip length, logged when shorter).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

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

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.frontend = pipeline.frontend
        self._cropped_warned = False

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


def ceiling_pipeline(module):
    """A frozen ``AuffusionPipeline`` view of an ``AuffusionLDM`` (shares its VAE, vocoder and front end);
    a pipeline is used as it is."""
    from lightning_auffusion.diffusion.pipeline import AuffusionPipeline

    if isinstance(module, AuffusionPipeline):
        return module
    return AuffusionPipeline.from_module(module, use_ema=False)
