"""Text -> audio with cross-attention maps: ``generate`` under an :class:`AttentionRecorder`.

:func:`generate_with_attention_maps` is what ``generate --attention_maps true`` calls: it generates exactly
what ``generate`` would (recording does not change a bit of the output) and writes
``<index>_<slug>_attention.png`` beside ``<index>_<slug>.wav``.
``lightning_auffusion.callbacks.attention_maps.AttentionMapWriter`` does the same for ``predict`` runs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

from lightning_auffusion.attention.capture import (
    DEFAULT_RESOLUTIONS,
    AttentionRecorder,
    TokenAttention,
    token_attention,
)
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


def write_attention_figure(
    attention: TokenAttention, image, output_dir: str | os.PathLike, index: int, *, dpi: int = 100, **figure_kwargs
) -> str:
    """Draw one prompt's maps over its spectrogram image into ``<output_dir>/<index>_<slug>_attention.png``."""
    from lightning_auffusion.audio.writers import output_stem

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
    output, maps = generate_recording_attention(
        pipeline, prompts, resolutions=resolutions, layers=layers, **sampling_kwargs
    )
    indices = list(range(len(maps))) if indices is None else [int(i) for i in indices]
    if len(indices) != len(maps):
        raise ValueError(f"{len(indices)} indices for {len(maps)} prompts")
    os.makedirs(output_dir, exist_ok=True)
    for row, (index, attention) in enumerate(zip(indices, maps)):
        path = write_attention_figure(
            attention,
            output.image[row],
            output_dir,
            index,
            dpi=dpi,
            skip_padding=skip_padding,
            skip_special=skip_special,
            max_tokens=max_tokens,
        )
        log.info("wrote %s", path)
    if localisation:
        write_localisation(
            maps,
            pipeline.frontend,
            sampling_kwargs.get("duration_seconds", DEFAULT_SAMPLING["duration_seconds"]),
            output_dir,
            indices,
        )
    return output


def write_localisation(
    maps: Sequence[TokenAttention],
    frontend,
    duration_seconds: float,
    output_dir: str | os.PathLike,
    indices: Sequence[int],
) -> dict:
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
        log.info(
            "attention localisation %.1f%% (chance %.1f%%) over %d content tokens of %d multi-event prompts -> %s",
            100 * summary["localisation"],
            100 * summary["chance"],
            summary["tokens"],
            summary["prompts"],
            path,
        )
    return summary
