"""The ``generate`` command: prompts -> 16 kHz WAV files (+ spectrogram PNGs) with a trained or released model.

``python -m lightning_auffusion generate --checkpoint run.ckpt --prompts '["a dog barks"]'`` or
``--pretrained <released layout dir or hub id> --prompt_file prompts.txt``. Writes
``<index>_<slug>.wav`` (16-bit PCM), ``<index>_<slug>.png`` and ``prompts.jsonl`` (prompt, seed, files and
sampling settings per clip) into ``output_dir``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from typing_extensions import Unpack

from lightning_auffusion.diffusion.options import GenerateOptions, split_options

log = logging.getLogger(__name__)


def generate(
    prompts: list[str] | None = None,
    prompt_file: str | None = None,
    output_dir: str = "outputs/generate",
    batch_size: int = 8,
    spectrograms: bool = True,
    attention_maps: bool = False,
    progress: bool = True,
    **options: Unpack[GenerateOptions],
) -> str:
    """Generate audio for text prompts and write WAV files, spectrogram PNGs and prompts.jsonl.

    Args:
        prompts: prompts given on the command line, e.g. '["a dog barks", "rain on a roof"]'.
        prompt_file: a .txt (one prompt per line), .jsonl or .json file of prompts (added after --prompts).
        output_dir: folder for <index>_<slug>.wav/.png and prompts.jsonl.
        batch_size: prompts denoised together.
        spectrograms: also write a PNG of each generated spectrogram.
        attention_maps: also write cross-attention maps per prompt token (attention tools).
        progress: show a denoising progress bar per batch (quiet when stderr is not a terminal).
        **options: the model (--checkpoint or --pretrained, ...) and sampling options (see
            ``lightning_auffusion.diffusion.options``).
    """
    from lightning_auffusion.audio.writers import write_generation
    from lightning_auffusion.data.prompts import collect_prompts
    from lightning_auffusion.diffusion.sampling import generate as sample
    from lightning_auffusion.progress import interactive

    source, sampling = split_options(options)
    all_prompts = collect_prompts(prompts, prompt_file)
    pipeline = source.load()
    settings = sampling.resolve(pipeline.sampling)
    settings.update(
        seed=sampling.seed,
        negative_prompts=sampling.negative_prompt or None,
        batch_size=batch_size,
        progress=interactive(progress),
    )
    log.info(
        "generating %d clips with %s, %d steps, guidance %.2f on %s",
        len(all_prompts),
        settings["scheduler"],
        settings["num_inference_steps"],
        settings["guidance_scale"],
        pipeline.device,
    )
    if attention_maps:
        from lightning_auffusion.attention.recording import generate_with_attention_maps

        output = generate_with_attention_maps(pipeline, all_prompts, output_dir=output_dir, **settings)
    else:
        output = sample(pipeline, all_prompts, **settings)
    manifest = Path(output_dir) / "prompts.jsonl"
    if manifest.is_file():
        manifest.unlink()  # describes this run only (files of the same names are overwritten too)
    manifest_extra = {k: v for k, v in settings.items() if k not in ("seed", "batch_size", "progress")}
    manifest_extra["source"] = source.name
    records = write_generation(
        output, output_dir, spectrograms=spectrograms, extra=manifest_extra, hop_length=pipeline.frontend.hop_length
    )
    log.info("wrote %d clips to %s", len(records), output_dir)
    return str(output_dir)
