"""Text -> audio with cross-attention maps: ``generate`` under an :class:`AttentionRecorder`.

:func:`generate_with_attention_maps` is what ``generate --attention_maps true`` calls: it generates exactly
what ``generate`` would (recording does not change a bit of the output) and writes
``<index>_<slug>_attention.png`` beside ``<index>_<slug>.wav``. :class:`AttentionMapWriter` does the same
for ``predict`` runs (next to ``AudioPredictionWriter``'s files).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

from lightning.pytorch import Callback

from lightning_auffusion.attention.capture import DEFAULT_RESOLUTIONS, AttentionRecorder, TokenAttention, token_attention
from lightning_auffusion.attention.figures import attention_figure, save_figure
from lightning_auffusion.diffusion.pipeline import AuffusionPipeline, as_pipeline
from lightning_auffusion.diffusion.sampling import DEFAULT_SAMPLING, GenerationOutput, generate
from lightning_auffusion.diffusion.schedulers import fresh_scheduler

log = logging.getLogger(__name__)
ATTENTION_SUFFIX = "_attention.png"


def recorder_for_run(pipeline: AuffusionPipeline, sampling: dict, resolutions, layers) -> AttentionRecorder:
    """An ``AttentionRecorder`` on the pipeline's U-Net, sized for one ``generate`` run with ``sampling``
    (settings it leaves out take ``generate``'s defaults)."""
    steps = sampling.get("num_inference_steps", DEFAULT_SAMPLING["num_inference_steps"])
    scheduler = sampling.get("scheduler", DEFAULT_SAMPLING["scheduler"])
    guidance = float(sampling.get("guidance_scale", DEFAULT_SAMPLING["guidance_scale"]))
    return AttentionRecorder(
        pipeline.unet,
        resolutions=resolutions,
        layers=layers,
        classifier_free=guidance != 1.0,
        image_scale=pipeline.vae_downsample_factor,
        store_device=None,
        calls_per_run=calls_per_run(pipeline, scheduler, steps),
    )


def write_attention_figure(attention: TokenAttention, image, output_dir: str | os.PathLike, index: int, *,
                           dpi: int = 100, **figure_kwargs) -> str:
    """Draw one prompt's maps over its spectrogram image into ``<output_dir>/<index>_<slug>_attention.png``."""
    from lightning_auffusion.callbacks.audio_writer import output_stem

    fig = attention_figure(attention, image, **figure_kwargs)
    return save_figure(fig, os.path.join(output_dir, output_stem(index, attention.prompt) + ATTENTION_SUFFIX), dpi=dpi)


def calls_per_run(pipeline: AuffusionPipeline, scheduler, num_inference_steps: int) -> int:
    """U-Net calls of one denoising run: ``len(scheduler.timesteps)`` (PNDM repeats its first step)."""
    sched = fresh_scheduler(scheduler, pipeline.train_scheduler_config)
    sched.set_timesteps(num_inference_steps)
    return len(sched.timesteps)


def generate_recording_attention(
    model,
    prompts: Sequence[str],
    *,
    resolutions: Sequence[int] | None = DEFAULT_RESOLUTIONS,
    layers: Sequence[str] | None = None,
    use_ema: bool = True,
    **sampling_kwargs,
) -> tuple[GenerationOutput, list[TokenAttention]]:
    """``generate(model, prompts, **sampling_kwargs)`` plus each prompt's per-token maps, resized to its
    spectrogram image and labelled by the conditioner's token pieces."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    with as_pipeline(model, use_ema) as pipeline:
        recorder = recorder_for_run(pipeline, sampling_kwargs, resolutions, layers)
        with recorder:
            output = generate(pipeline, prompts, **sampling_kwargs)
        if recorder.num_rows != len(prompts):
            raise RuntimeError(f"recorded attention for {recorder.num_rows} prompts but generated {len(prompts)}")
        size = tuple(output.image.shape[-2:])
        maps = [token_attention(recorder, i, p, pipeline.conditioner, size=size) for i, p in enumerate(prompts)]
    return output, maps


def generate_with_attention_maps(
    pipeline,
    prompts: Sequence[str],
    *,
    output_dir: str | os.PathLike,
    indices: Sequence[int] | None = None,
    resolutions: Sequence[int] | None = DEFAULT_RESOLUTIONS,
    layers: Sequence[str] | None = None,
    skip_padding: bool = True,
    skip_special: bool = True,
    max_tokens: int = 24,
    dpi: int = 100,
    localisation: bool = True,
    **sampling_kwargs,
) -> GenerationOutput:
    """Generate and write ``<index>_<slug>_attention.png`` per prompt into ``output_dir``.

    ``indices`` number the files as ``generate`` numbers its WAVs (default 0..B-1); the remaining keyword
    arguments go to :func:`lightning_auffusion.diffusion.sampling.generate` unchanged, so the audio is
    bit-identical to a plain ``generate`` call with the same arguments. With ``localisation`` the attention
    localisation score of the multi-event synthetic-grammar prompts goes to ``localisation.json`` (see
    :mod:`lightning_auffusion.attention.localisation`) and the log.
    """
    output, maps = generate_recording_attention(pipeline, prompts, resolutions=resolutions, layers=layers, **sampling_kwargs)
    indices = list(range(len(maps))) if indices is None else [int(i) for i in indices]
    if len(indices) != len(maps):
        raise ValueError(f"{len(indices)} indices for {len(maps)} prompts")
    os.makedirs(output_dir, exist_ok=True)
    for row, (index, attention) in enumerate(zip(indices, maps)):
        path = write_attention_figure(attention, output.image[row], output_dir, index, dpi=dpi, skip_padding=skip_padding,
                                      skip_special=skip_special, max_tokens=max_tokens)
        log.info("wrote %s", path)
    if localisation:
        write_localisation(maps, pipeline.frontend, sampling_kwargs.get("duration_seconds", DEFAULT_SAMPLING["duration_seconds"]),
                           output_dir, indices)
    return output


def write_localisation(maps: Sequence[TokenAttention], frontend, duration_seconds: float, output_dir: str | os.PathLike,
                       indices: Sequence[int]) -> dict:
    """Score the maps (their time axis cut to what ``duration_seconds`` of audio covers), write
    ``<output_dir>/localisation.json`` and log the score."""
    from lightning_auffusion.attention.localisation import LOCALISATION_FILE, LocalisationCollector

    collector = LocalisationCollector(frontend, duration_seconds)
    collector.add(maps, [int(i) for i in indices])
    summary = collector.summary
    path = os.path.join(output_dir, LOCALISATION_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    if summary["localisation"] is None:
        log.info("attention localisation: no multi-event synthetic-grammar prompt to score (%s)", path)
    else:
        log.info("attention localisation %.1f%% (chance %.1f%%) over %d content tokens of %d multi-event prompts -> %s",
                 100 * summary["localisation"], 100 * summary["chance"], summary["tokens"], summary["prompts"], path)
    return summary


class AttentionMapWriter(Callback):
    """``predict`` callback: records each batch's cross-attention and writes ``<index>_<slug>_attention.png``.

    Sits beside ``AudioPredictionWriter`` (same ``output_dir``, same file numbering from the batch's
    ``index``), so a ``predict`` run writes the attention figure next to each WAV. The recorder is on only
    between ``on_predict_batch_start`` and ``on_predict_batch_end``; the generated audio is unchanged.

    Args:
        output_dir: folder for the figures (the prediction writer's folder).
        resolutions: downsampling factors whose cross-attention layers are recorded.
        layers: optional layer-name substrings to keep.
        skip_padding: leave padding tokens out of the figures.
        skip_special: leave start/end/separator tokens out of the figures.
        max_tokens: tokens drawn per figure.
        dpi: PNG resolution.
    """

    def __init__(
        self,
        output_dir: str = "outputs/predict",
        resolutions: Sequence[int] | None = DEFAULT_RESOLUTIONS,
        layers: Sequence[str] | None = None,
        skip_padding: bool = True,
        skip_special: bool = True,
        max_tokens: int = 24,
        dpi: int = 100,
    ) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.resolutions = tuple(resolutions) if resolutions is not None else None
        self.layers = list(layers) if layers is not None else None
        self.figure_kwargs = dict(skip_padding=skip_padding, skip_special=skip_special, max_tokens=max_tokens)
        self.dpi = dpi
        self._recorder: AttentionRecorder | None = None

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        pipeline = AuffusionPipeline.from_module(pl_module, use_ema=False)  # shares the module's U-Net
        sampling = dict(getattr(pl_module, "sampling", None) or {})
        self._recorder = recorder_for_run(pipeline, sampling, self.resolutions, self.layers).__enter__()

    def _stop(self) -> AttentionRecorder | None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.__exit__(None, None, None)
        return recorder

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        recorder = self._stop()
        if recorder is None or outputs is None or not hasattr(outputs, "image"):
            return
        prompts = list(getattr(outputs, "prompts", None) or batch["prompt"])
        indices = batch.get("index") if isinstance(batch, dict) else None
        indices = [int(i) for i in indices] if indices is not None else list(range(len(prompts)))
        os.makedirs(self.output_dir, exist_ok=True)
        size = tuple(outputs.image.shape[-2:])
        for row, (index, prompt) in enumerate(zip(indices, prompts)):
            attention = token_attention(recorder, row, prompt, pl_module.conditioner, size=size)
            write_attention_figure(attention, outputs.image[row], self.output_dir, index, dpi=self.dpi, **self.figure_kwargs)

    def on_predict_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._stop()
