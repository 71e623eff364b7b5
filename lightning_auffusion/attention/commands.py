"""Subcommands ``style-transfer``, ``inpaint``, ``word-swap`` and ``reweight``.

Each loads a model from ``--checkpoint`` (an ``AuffusionLDM`` checkpoint from ``fit``) or ``--pretrained``
(a released Auffusion layout directory or hub id), runs the manipulation of
:mod:`lightning_auffusion.attention.manipulations`, and writes into ``output_dir``: ``<name>.wav``
(16-bit) and ``<name>.png`` for the result, ``<name>_source.wav/.png`` for the reference (the unedited
generation, or the input clip after the VAE round trip), and one line per run in ``manipulations.jsonl``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lightning_auffusion.errors import MissingInputError
from lightning_auffusion.diffusion.pipeline import DtypeName
from lightning_auffusion.diffusion.schedulers import SchedulerName

log = logging.getLogger(__name__)
MANIFEST = "manipulations.jsonl"


def _pipeline(checkpoint: str | None, pretrained: str | None, use_ema: bool, device: str, dtype: str,
              duration: bool = False, **sampling):
    """(pipeline, sampling settings): each setting left at None takes the model's own, else the released one."""
    from lightning_auffusion.diffusion.loading import ModelSource
    from lightning_auffusion.diffusion.sampling import SamplingOptions

    pipeline = ModelSource(checkpoint, pretrained, use_ema=use_ema, device=device, dtype=dtype).load()
    return pipeline, SamplingOptions(**sampling).resolve(pipeline.sampling, duration=duration)


def _check_file(path: str) -> None:
    if not Path(path).is_file():
        raise MissingInputError(f"source audio {path} not found (give a WAV/FLAC/OGG file path)")


def write_outputs(output, output_dir: str, name: str, record: dict) -> dict:
    """Write the result row 0 and its ``source`` as WAV + PNG and append ``record`` to the manifest."""
    from lightning_auffusion.audio.io import save_wav
    from lightning_auffusion.plotting import save_spectrogram_png

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for suffix, item in (("", output), ("_source", output.source)):
        if item is None:
            continue
        wav = out / f"{name}{suffix}.wav"
        save_wav(wav, item.audio[0], item.sample_rate)
        png = save_spectrogram_png(item.logmel[0], out / f"{name}{suffix}.png", title=item.prompts[0], sample_rate=item.sample_rate)
        files[f"wav{suffix}"], files[f"png{suffix}"] = wav.name, png.name
    record = {**record, **files}
    with open(out / MANIFEST, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    log.info("wrote %s into %s", ", ".join(files.values()), output_dir)
    return record


def _slug(text: str) -> str:
    from lightning_auffusion.audio.writers import slugify

    return slugify(text, max_length=40)


def style_transfer(
    audio: str,
    prompt: str,
    strength: float = 0.5,
    checkpoint: str | None = None,
    pretrained: str | None = None,
    output_dir: str = "outputs/style_transfer",
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    scheduler: SchedulerName | None = None,
    seed: int = 0,
    negative_prompt: str | None = None,
    use_ema: bool = True,
    device: str = "auto",
    dtype: DtypeName = "float32",
) -> str:
    """SDEdit an audio file towards a prompt (paper appendix E.2).

    Args:
        audio: source audio file (resampled to the model's rate, mono, cut to one clip).
        prompt: text the result should match.
        strength: fraction of the schedule the source is noised to: 0 keeps it, 1 ignores it (paper: 0.1-0.7).
        checkpoint: an AuffusionLDM Lightning checkpoint (.ckpt from `fit`).
        pretrained: a released Auffusion layout: local directory or Hugging Face hub id.
        output_dir: folder for the WAV/PNG files and manipulations.jsonl.
        num_inference_steps: steps of the full schedule (strength x steps are run).
        guidance_scale: classifier-free guidance scale.
        scheduler: pndm (as released), ddim, dpmsolver++ or euler. Steps, guidance, scheduler (and duration)
            default to the model's own sampling settings, else as released.
        seed: seed of the noise added to the source.
        negative_prompt: conditioning that replaces the unconditional zeros.
        use_ema: sample with the EMA weights of a checkpoint that kept an EMA.
        device: auto, cpu, cuda or cuda:<n>.
        dtype: float32, bfloat16 or float16 (GPU) for U-Net, VAE and text encoders.
    """
    from lightning_auffusion.attention.manipulations import style_transfer as run

    _check_file(audio)
    pipeline, settings = _pipeline(checkpoint, pretrained, use_ema, device, dtype, num_inference_steps=num_inference_steps,
                                   guidance_scale=guidance_scale, scheduler=scheduler)
    output = run(pipeline, audio, prompt, strength, **settings, seed=seed, negative_prompt=negative_prompt)
    record = {"command": "style-transfer", "audio": audio, "prompt": prompt, "strength": strength, "seed": seed, **settings}
    write_outputs(output, output_dir, f"style_{strength:.2f}_{_slug(prompt)}", record)
    return output_dir


def inpaint(
    audio: str,
    prompt: str,
    start_s: float = 2.56,
    end_s: float = 7.68,
    strength: float = 1.0,
    checkpoint: str | None = None,
    pretrained: str | None = None,
    output_dir: str = "outputs/inpaint",
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    scheduler: SchedulerName | None = None,
    seed: int = 0,
    negative_prompt: str | None = None,
    use_ema: bool = True,
    device: str = "auto",
    dtype: DtypeName = "float32",
) -> str:
    """Regenerate a time span of an audio file, keeping the rest (paper appendix E.3).

    Args:
        audio: source audio file (resampled to the model's rate, mono, cut to one clip).
        prompt: text describing the whole clip (the paper uses the clip's own caption).
        start_s: start of the span to regenerate, seconds (2.56 = frame 256).
        end_s: end of the span, seconds (7.68 = frame 768).
        strength: 1 regenerates the span from pure noise; lower values start from the noised source.
        checkpoint: an AuffusionLDM Lightning checkpoint (.ckpt from `fit`).
        pretrained: a released Auffusion layout: local directory or Hugging Face hub id.
        output_dir: folder for the WAV/PNG files and manipulations.jsonl.
        num_inference_steps: denoising steps.
        guidance_scale: classifier-free guidance scale.
        scheduler: pndm (as released), ddim, dpmsolver++ or euler. Steps, guidance, scheduler (and duration)
            default to the model's own sampling settings, else as released.
        seed: seed of the noise.
        negative_prompt: conditioning that replaces the unconditional zeros.
        use_ema: sample with the EMA weights of a checkpoint that kept an EMA.
        device: auto, cpu, cuda or cuda:<n>.
        dtype: float32, bfloat16 or float16 (GPU) for U-Net, VAE and text encoders.
    """
    from lightning_auffusion.attention.manipulations import inpaint as run

    _check_file(audio)
    pipeline, settings = _pipeline(checkpoint, pretrained, use_ema, device, dtype, num_inference_steps=num_inference_steps,
                                   guidance_scale=guidance_scale, scheduler=scheduler)
    output = run(pipeline, audio, prompt, start_s, end_s, strength=strength, **settings, seed=seed,
                 negative_prompt=negative_prompt)
    record = {"command": "inpaint", "audio": audio, "prompt": prompt, "start_s": start_s, "end_s": end_s, "seed": seed,
              "strength": strength, **settings}
    write_outputs(output, output_dir, f"inpaint_{start_s:g}-{end_s:g}_{_slug(prompt)}", record)
    return output_dir


def word_swap(
    source_prompt: str,
    target_prompt: str,
    cross_window: tuple[float, float] = (0.0, 0.8),
    self_window: tuple[float, float] = (0.0, 0.4),
    checkpoint: str | None = None,
    pretrained: str | None = None,
    output_dir: str = "outputs/word_swap",
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    scheduler: SchedulerName | None = None,
    seed: int = 0,
    duration_seconds: float | None = None,
    negative_prompt: str | None = None,
    use_ema: bool = True,
    device: str = "auto",
    dtype: DtypeName = "float32",
) -> str:
    """Prompt-to-prompt word replacement (paper appendix E.4): the target prompt keeps the source's attention.

    Args:
        source_prompt: the original prompt, e.g. "A man is speaking in a huge room".
        target_prompt: the same prompt with words swapped one for one, e.g. "A man is speaking in a small room".
        cross_window: [start, end) fraction of the steps where the target uses the source's cross-attention.
        self_window: [start, end) fraction of the steps where it copies the source's self-attention.
        checkpoint: an AuffusionLDM Lightning checkpoint (.ckpt from `fit`).
        pretrained: a released Auffusion layout: local directory or Hugging Face hub id.
        output_dir: folder for the WAV/PNG files and manipulations.jsonl.
        num_inference_steps: denoising steps.
        guidance_scale: classifier-free guidance scale.
        scheduler: pndm (as released), ddim, dpmsolver++ or euler. Steps, guidance, scheduler (and duration)
            default to the model's own sampling settings, else as released.
        seed: seed of the shared initial noise.
        duration_seconds: audio length to keep.
        negative_prompt: conditioning that replaces the unconditional zeros.
        use_ema: sample with the EMA weights of a checkpoint that kept an EMA.
        device: auto, cpu, cuda or cuda:<n>.
        dtype: float32, bfloat16 or float16 (GPU) for U-Net, VAE and text encoders.
    """
    from lightning_auffusion.attention.manipulations import word_swap as run

    pipeline, settings = _pipeline(checkpoint, pretrained, use_ema, device, dtype, num_inference_steps=num_inference_steps,
                                   guidance_scale=guidance_scale, scheduler=scheduler, duration=True,
                                   duration_seconds=duration_seconds)
    output = run(pipeline, source_prompt, target_prompt, cross_window=cross_window, self_window=self_window, **settings,
                 seed=seed, negative_prompt=negative_prompt)
    record = {"command": "word-swap", "source_prompt": source_prompt, "target_prompt": target_prompt,
              "cross_window": list(cross_window), "self_window": list(self_window), "seed": seed, **settings}
    write_outputs(output, output_dir, f"swap_{_slug(target_prompt)}", record)
    return output_dir


def reweight(
    prompt: str,
    words: dict[str, float],
    cross_window: tuple[float, float] = (0.0, 0.8),
    self_window: tuple[float, float] = (0.0, 0.4),
    checkpoint: str | None = None,
    pretrained: str | None = None,
    output_dir: str = "outputs/reweight",
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    scheduler: SchedulerName | None = None,
    seed: int = 0,
    duration_seconds: float | None = None,
    negative_prompt: str | None = None,
    use_ema: bool = True,
    device: str = "auto",
    dtype: DtypeName = "float32",
) -> str:
    """Scale the cross-attention of chosen prompt words (paper appendix E.5).

    Args:
        prompt: the prompt, e.g. "Chopping tomatoes on a wooden table".
        words: word -> attention factor, e.g. '{"chopping": 2.0}' (>1 strengthens, <1 weakens).
        cross_window: [start, end) fraction of the steps where the re-weighting applies.
        self_window: [start, end) fraction of the steps where the edited run copies the plain run's self-attention.
        checkpoint: an AuffusionLDM Lightning checkpoint (.ckpt from `fit`).
        pretrained: a released Auffusion layout: local directory or Hugging Face hub id.
        output_dir: folder for the WAV/PNG files and manipulations.jsonl.
        num_inference_steps: denoising steps.
        guidance_scale: classifier-free guidance scale.
        scheduler: pndm (as released), ddim, dpmsolver++ or euler. Steps, guidance, scheduler (and duration)
            default to the model's own sampling settings, else as released.
        seed: seed of the shared initial noise.
        duration_seconds: audio length to keep.
        negative_prompt: conditioning that replaces the unconditional zeros.
        use_ema: sample with the EMA weights of a checkpoint that kept an EMA.
        device: auto, cpu, cuda or cuda:<n>.
        dtype: float32, bfloat16 or float16 (GPU) for U-Net, VAE and text encoders.
    """
    from lightning_auffusion.attention.manipulations import reweight as run

    pipeline, settings = _pipeline(checkpoint, pretrained, use_ema, device, dtype, num_inference_steps=num_inference_steps,
                                   guidance_scale=guidance_scale, scheduler=scheduler, duration=True,
                                   duration_seconds=duration_seconds)
    output = run(pipeline, prompt, dict(words), cross_window=cross_window, self_window=self_window, **settings,
                 seed=seed, negative_prompt=negative_prompt)
    record = {"command": "reweight", "prompt": prompt, "words": dict(words), "cross_window": list(cross_window),
              "self_window": list(self_window), "seed": seed, **settings}
    tag = "-".join(f"{_slug(w)}{v:g}" for w, v in words.items())
    write_outputs(output, output_dir, f"reweight_{tag}_{_slug(prompt)}", record)
    return output_dir
