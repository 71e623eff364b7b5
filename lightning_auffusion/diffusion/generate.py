"""The ``generate`` command: prompts -> 16 kHz WAV files (+ spectrogram PNGs) with a trained or released model.

``python -m lightning_auffusion generate --checkpoint run.ckpt --prompts '["a dog barks"]'`` or
``--pretrained <released layout dir or hub id> --prompt_file prompts.txt``. Writes
``<index>_<slug>.wav`` (16-bit PCM), ``<index>_<slug>.png`` and ``prompts.jsonl`` (prompt, seed, files and
sampling settings per clip) into ``output_dir``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lightning_auffusion.diffusion.loading import ModelSource
from lightning_auffusion.diffusion.pipeline import DtypeName
from lightning_auffusion.diffusion.schedulers import SchedulerName


log = logging.getLogger(__name__)


def generate(
    prompts: list[str] | None = None,
    prompt_file: str | None = None,
    checkpoint: str | None = None,
    pretrained: str | None = None,
    output_dir: str = "outputs/generate",
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    scheduler: SchedulerName | None = None,
    seed: int = 0,
    negative_prompt: str | None = None,
    batch_size: int = 8,
    duration_seconds: float | None = None,
    use_ema: bool = True,
    spectrograms: bool = True,
    attention_maps: bool = False,
    device: str = "auto",
    dtype: DtypeName = "float32",
    vocoder: str | None = None,
) -> str:
    """Generate audio for text prompts and write WAV files, spectrogram PNGs and prompts.jsonl.

    Args:
        prompts: prompts given on the command line, e.g. '["a dog barks", "rain on a roof"]'.
        prompt_file: a .txt (one prompt per line), .jsonl or .json file of prompts (added after --prompts).
        checkpoint: an AuffusionLDM Lightning checkpoint (.ckpt from `fit`).
        pretrained: a released Auffusion layout: local directory or Hugging Face hub id.
        output_dir: folder for <index>_<slug>.wav/.png and prompts.jsonl.
        num_inference_steps: denoising steps (100 as released; 25 already does well).
        guidance_scale: classifier-free guidance g in eps_u + g (eps_c - eps_u); 1 disables guidance.
        scheduler: sampling scheduler: pndm (as released), ddim, dpmsolver++ or euler.
            These three and ``duration_seconds`` default to the model's own sampling settings (the
            ``sampling`` block of its training config, or of the exported layout), else as released.
        seed: seed of the first prompt; prompt i uses seed + i whatever the batching.
        negative_prompt: conditioning that replaces the unconditional zeros (steers away from it).
        batch_size: prompts denoised together.
        duration_seconds: audio length to keep (10 s as released); longer durations widen the spectrogram.
        use_ema: sample with the EMA weights of a checkpoint that kept an EMA.
        spectrograms: also write a PNG of each generated spectrogram.
        attention_maps: also write cross-attention maps per prompt token (attention tools).
        device: auto, cpu, cuda or cuda:<n>.
        dtype: precision of U-Net, VAE and text encoders: float32, bfloat16 or float16 (GPU).
        vocoder: another vocoder (a vocoder .ckpt or exported folder) instead of the model's own.
    """
    from lightning_auffusion.audio.writers import write_generation
    from lightning_auffusion.data.prompts import collect_prompts
    from lightning_auffusion.diffusion.sampling import SamplingOptions
    from lightning_auffusion.diffusion.sampling import generate as sample

    options = SamplingOptions(scheduler, num_inference_steps, guidance_scale, duration_seconds)
    source = ModelSource(checkpoint, pretrained, use_ema=use_ema, vocoder=vocoder, device=device, dtype=dtype)
    all_prompts = collect_prompts(prompts, prompt_file)
    pipeline = source.load()
    settings = options.resolve(pipeline.sampling)
    settings.update(seed=seed, negative_prompts=negative_prompt or None, batch_size=batch_size)
    log.info("generating %d clips with %s, %d steps, guidance %.2f on %s", len(all_prompts), settings["scheduler"],
             settings["num_inference_steps"], settings["guidance_scale"], pipeline.device)
    if attention_maps:
        from lightning_auffusion.attention.recording import generate_with_attention_maps

        output = generate_with_attention_maps(pipeline, all_prompts, output_dir=output_dir, **settings)
    else:
        output = sample(pipeline, all_prompts, **settings)
    manifest = Path(output_dir) / "prompts.jsonl"
    if manifest.is_file():
        manifest.unlink()  # describes this run only (files of the same names are overwritten too)
    manifest_extra = {k: v for k, v in settings.items() if k not in ("seed", "batch_size")}
    manifest_extra["source"] = source.name
    records = write_generation(
        output, output_dir, spectrograms=spectrograms, extra=manifest_extra, hop_length=pipeline.frontend.hop_length
    )
    log.info("wrote %d clips to %s", len(records), output_dir)
    return str(output_dir)
