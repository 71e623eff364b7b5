"""Sample logging during ``fit``: audio, spectrograms and cross-attention figures for fixed prompts.

Every ``every_n_steps`` optimizer steps, rank 0 generates the prompt set (the paper's demo prompts by
default, prompt ``i`` always with seed ``seed + i``) with the EMA weights, and logs through every logger
that has ``log_audio`` / ``log_image`` (Lightning's ``WandbLogger``): ``samples/audio``,
``samples/spectrogram`` and ``samples/attention`` (one figure per prompt, paper Figure 2 style). With
``save_dir`` the same files are also written to ``<save_dir>/step_<N>/``.

Sampling runs in eval mode, without gradients, inside ``torch.random.fork_rng`` with Python's and NumPy's
generator states saved and restored, and draws its noise from its own seeded generators, so the training
run's random streams (dropout, timesteps, condition dropout, data order) are exactly as without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)

# From the Auffusion demo page (short samples, acoustic / material / pitch / temporal-order control).
DEMO_PROMPTS: tuple[str, ...] = (
    "A dog is barking",
    "Two gunshots followed by birds chirping",
    "People cheering in a stadium while rolling thunder and lightning strikes",
    "A man is speaking in a huge room",
    "Chopping tomatoes on a wooden table",
    "Sine wave with low pitch",
    "Wooden table tapping sound followed by water pouring sound",
)


def pad_to_common_size(images: Sequence[np.ndarray], fill: int = 255) -> list[np.ndarray]:
    """(H, W, C) images padded at the bottom and right with ``fill`` (white) to the largest H and W."""
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    padded = []
    for image in images:
        out = np.full((height, width, *image.shape[2:]), fill, dtype=image.dtype)
        out[: image.shape[0], : image.shape[1]] = image
        padded.append(out)
    return padded


@contextlib.contextmanager
def isolated_rng(device: torch.device | None = None) -> Iterator[None]:
    """Run a block without disturbing torch's (CPU and this CUDA device's), Python's or NumPy's RNG state."""
    devices = []
    if device is not None and device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class SampleLoggingCallback(Callback):
    """Log generated audio, spectrograms and attention maps for fixed prompts every N steps (rank 0).

    Args:
        every_n_steps: log every N optimizer steps (0: never during training).
        prompts: the prompts; default the paper's demo prompts (``DEMO_PROMPTS``).
        num_inference_steps: denoising steps; None = the module's ``sampling`` settings (100 as released).
        guidance_scale: classifier-free guidance; None = the module's (7.5 as released).
        scheduler: sampler name; None = the module's (PNDM as released).
        seed: seed of prompt 0 (prompt i uses seed + i); None = the module's (0).
        duration_seconds: clip length; None = the module's (10 s).
        batch_size: prompts per denoising batch.
        use_ema: sample with the EMA weights when the module keeps an EMA.
        audio: log the audio.
        spectrograms: log spectrogram images.
        attention_maps: record cross-attention and log one per-token figure per prompt.
        resolutions: downsampling factors whose cross-attention layers are recorded (2, 4, 8 = 16x64, 8x32, 4x16).
        max_tokens: tokens drawn per attention figure.
        at_train_start: also log once before the first step.
        save_dir: also write WAV/PNG files under ``<save_dir>/step_<N>/`` (None: only the loggers).
        prefix: prefix of the logged keys.
    """

    def __init__(
        self,
        every_n_steps: int = 1000,
        prompts: Sequence[str] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        scheduler: str | None = None,
        seed: int | None = None,
        duration_seconds: float | None = None,
        batch_size: int = 8,
        use_ema: bool = True,
        audio: bool = True,
        spectrograms: bool = True,
        attention_maps: bool = True,
        resolutions: Sequence[int] | None = (2, 4, 8),
        max_tokens: int = 24,
        at_train_start: bool = False,
        save_dir: str | None = None,
        prefix: str = "samples/",
    ) -> None:
        super().__init__()
        self.prompts = list(prompts) if prompts is not None else list(DEMO_PROMPTS)
        if not self.prompts or any(not isinstance(p, str) or not p.strip() for p in self.prompts):
            raise ValueError("SampleLoggingCallback needs a non-empty list of non-empty prompts")
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        self.overrides = {
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "scheduler": scheduler,
            "seed": seed,
            "duration_seconds": duration_seconds,
        }
        self.batch_size = int(batch_size)
        self.use_ema = use_ema
        self.audio = audio
        self.spectrograms = spectrograms
        self.attention_maps = attention_maps
        self.resolutions = tuple(resolutions) if resolutions is not None else None
        self.max_tokens = int(max_tokens)
        self.at_train_start = at_train_start
        self.save_dir = save_dir
        self.prefix = prefix
        self._last_step: int | None = None
        self._warned = False

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.at_train_start:
            self._maybe_log(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0:
            self._maybe_log(trainer, pl_module)

    def _maybe_log(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_step:  # gradient accumulation: several batches share one optimizer step
            return
        self._last_step = step
        if trainer.is_global_zero:
            self.log_samples(trainer, pl_module)

    # ------------------------------------------------------------------ work
    def sampling_settings(self, pl_module: LightningModule) -> dict:
        """The module's ``sampling`` settings with this callback's overrides on top."""
        import inspect

        from lightning_auffusion.diffusion.sampling import generate

        accepted = set(inspect.signature(generate).parameters) - {"module_or_pipeline", "prompts", "use_ema"}
        settings = {k: v for k, v in dict(getattr(pl_module, "sampling", None) or {}).items() if k in accepted}
        settings.update({k: v for k, v in self.overrides.items() if v is not None})
        settings["batch_size"] = self.batch_size
        return settings

    @torch.no_grad()
    def generate(self, pl_module: LightningModule):
        """(GenerationOutput, list of attention figures or None), with the RNG streams untouched."""
        from lightning_auffusion.diffusion.sampling import generate

        settings = self.sampling_settings(pl_module)
        was_training = pl_module.training
        device = next(pl_module.parameters()).device
        with isolated_rng(device):
            pl_module.eval()
            try:
                if self.attention_maps:
                    from lightning_auffusion.attention.figures import attention_figure
                    from lightning_auffusion.attention.recording import generate_recording_attention

                    output, maps = generate_recording_attention(
                        pl_module, self.prompts, resolutions=self.resolutions, use_ema=self.use_ema, **settings
                    )
                    figures = [
                        attention_figure(m, output.image[i], max_tokens=self.max_tokens) for i, m in enumerate(maps)
                    ]
                else:
                    output, figures = generate(pl_module, self.prompts, use_ema=self.use_ema, **settings), None
            finally:
                pl_module.train(was_training)
        return output, figures

    def log_samples(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        """Generate and log; returns what was logged (key -> list of arrays) for inspection."""
        from lightning_auffusion.attention.figures import figure_to_array
        from lightning_auffusion.plotting import spectrogram_figure

        step = trainer.global_step
        output, figures = self.generate(pl_module)
        hop = getattr(getattr(pl_module, "frontend", None), "hop_length", 160)
        logged: dict[str, list] = {}
        if self.audio:
            logged["audio"] = [a.numpy() for a in output.audio]
        if self.spectrograms:
            logged["spectrogram"] = [
                figure_to_array(spectrogram_figure(lm, title=p, sample_rate=output.sample_rate, hop_length=hop))
                for lm, p in zip(output.logmel, self.prompts)
            ]
        if figures is not None:
            logged["attention"] = [figure_to_array(f) for f in figures]
        for key in ("spectrogram", "attention"):  # W&B shows one image list at one size
            if key in logged:
                logged[key] = pad_to_common_size(logged[key])
        sinks = [lg for lg in trainer.loggers if hasattr(lg, "log_audio") and hasattr(lg, "log_image")]
        for logger in sinks:
            for key, items in logged.items():
                if key == "audio":
                    logger.log_audio(
                        key=self.prefix + key,
                        audios=items,
                        step=step,
                        sample_rate=[output.sample_rate] * len(items),
                        caption=list(self.prompts),
                    )
                else:
                    logger.log_image(key=self.prefix + key, images=items, step=step, caption=list(self.prompts))
        if self.save_dir is not None:
            self._save(output, figures, step, hop)
        if not sinks and self.save_dir is None and not self._warned:
            log.warning(
                "SampleLoggingCallback: no logger with log_audio/log_image (WandbLogger) and no save_dir; "
                "samples are generated but not kept"
            )
            self._warned = True
        return logged

    def _save(self, output, figures, step: int, hop: int) -> None:
        from lightning_auffusion.attention.figures import save_figure
        from lightning_auffusion.attention.recording import ATTENTION_SUFFIX
        from lightning_auffusion.audio.writers import output_stem, write_generation

        folder = os.path.join(self.save_dir, f"step_{step:07d}")
        write_generation(output, folder, spectrograms=self.spectrograms, hop_length=hop)
        for index, (prompt, fig) in enumerate(zip(self.prompts, figures or [])):
            save_figure(fig, os.path.join(folder, output_stem(index, prompt) + ATTENTION_SUFFIX))
