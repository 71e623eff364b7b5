"""Audio manipulations with an ``AuffusionPipeline`` (paper appendix E): style transfer, inpainting,
word swap and attention re-weighting.

* :func:`style_transfer`: SDEdit. The source clip's latent is noised to ``strength`` of the schedule and
  denoised towards the prompt (the paper shows strengths 0.1 to 0.7; 0 returns the source latent).
* :func:`inpaint`: regenerate a time span (2.56 to 7.68 s by default, the paper's 2.5 to 7.5 s on whole
  latent columns). The span covers latent columns ``frame // f``; after every scheduler step the latents
  outside it are replaced by the source latent noised to the step's level (the source itself after the last).
* :func:`word_swap` and :func:`reweight`: prompt-to-prompt control of the cross-attention
  (:mod:`lightning_auffusion.attention.prompt_to_prompt`), generating the unedited source alongside.

Each returns a :class:`ManipulationOutput` (audio + log-mel + image + latents of the result, and ``source``:
the unedited generation, or the VAE round trip of the input clip).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lightning_auffusion.attention.prompt_to_prompt import (
    ReweightController,
    WordSwapController,
    swap_mapper,
    word_weights,
)
from lightning_auffusion.diffusion.pipeline import AuffusionPipeline, as_pipeline
from lightning_auffusion.diffusion.sampling import (
    DEFAULT_SAMPLING,
    decode_latents,
    denoise,
    encode_audio,
    initial_noise,
)

DEFAULT_INPAINT_SPAN = (2.56, 7.68)  # frames 256-768 at hop 160 / 16 kHz


@dataclass
class ManipulationOutput:
    """Result rows (B, ...) on the CPU in float32, and the unedited reference in ``source``."""

    audio: torch.Tensor  # (B, T) at sample_rate
    logmel: torch.Tensor  # (B, n_mels, frames)
    image: torch.Tensor  # (B, 3, n_mels, frames)
    latents: torch.Tensor  # (B, C, h, w), scaled as the U-Net sees them
    sample_rate: int
    prompts: list[str]
    source: ManipulationOutput | None = None


# ------------------------------------------------------------------------------------------ helpers
def _on_pipeline(func):
    """Run ``func`` on the pipeline of its first argument (a pipeline, or an ``AuffusionLDM`` with its EMA
    weights swapped in: :func:`lightning_auffusion.diffusion.pipeline.as_pipeline`)."""

    @functools.wraps(func)
    def run(model, *args, **kwargs):
        with as_pipeline(model) as pipeline:
            return func(pipeline, *args, **kwargs)

    return run


def load_source(pipeline: AuffusionPipeline, audio, sample_rate: int | None = None) -> torch.Tensor:
    """A mono waveform (1, T) at the pipeline's rate, cut to the clip the front end sees, from a file path,
    a numpy array or a tensor ((T,) or (1, T); ``sample_rate`` resamples it when it differs)."""
    from lightning_auffusion.audio import load_audio
    from lightning_auffusion.audio.resample import resample

    target = pipeline.sample_rate
    if isinstance(audio, str) or hasattr(audio, "__fspath__"):
        wave, _ = load_audio(audio, target_sr=target, mono=True)
        tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    else:
        tensor = torch.as_tensor(np.asarray(audio) if not torch.is_tensor(audio) else audio).float()
        if sample_rate is not None and sample_rate != target:
            tensor = resample(tensor, sample_rate, target)
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 2 or tensor.shape[0] != 1:
        raise ValueError(f"the source audio must be one mono clip, (T,) or (1, T); got shape {tuple(tensor.shape)}")
    if tensor.shape[-1] == 0:
        raise ValueError("the source audio is empty")
    n_frames = pipeline.frontend.n_frames
    if n_frames:
        tensor = tensor[:, : n_frames * pipeline.frontend.hop_length]
    return tensor


def _conditioning(pipeline, prompts: list[str], guidance_scale: float, negative_prompt: str | None):
    cond = pipeline.conditioner(prompts)
    if float(guidance_scale) == 1.0:
        return cond, None
    if negative_prompt is not None:
        return cond, pipeline.conditioner([negative_prompt] * len(prompts))
    return cond, pipeline.conditioner.unconditional(len(prompts))


def _output(pipeline, latents: torch.Tensor, prompts: list[str], num_samples: int | None) -> ManipulationOutput:
    audio, logmel, image = decode_latents(pipeline, latents)
    if num_samples is not None:
        audio = audio[..., :num_samples]
        if audio.shape[-1] < num_samples:
            audio = torch.nn.functional.pad(audio, (0, num_samples - audio.shape[-1]))
    return ManipulationOutput(
        audio=audio.float().cpu(),
        logmel=logmel.float().cpu(),
        image=image.float().cpu(),
        latents=latents.float().cpu(),
        sample_rate=pipeline.sample_rate,
        prompts=list(prompts),
    )


def _start_index(num_inference_steps: int, strength: float) -> int:
    """Index into ``scheduler.timesteps`` where SDEdit starts (img2img's rule): ``N - int(N * strength)``."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    return num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)


def _seeded_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    return initial_noise(tuple(shape), [seed])


# ------------------------------------------------------------------------------------------ SDEdit family
@torch.no_grad()
@_on_pipeline
def style_transfer(
    pipeline,
    audio,
    prompt: str,
    strength: float = 0.5,
    *,
    num_inference_steps: int = DEFAULT_SAMPLING["num_inference_steps"],
    guidance_scale: float = DEFAULT_SAMPLING["guidance_scale"],
    scheduler: str = DEFAULT_SAMPLING["scheduler"],
    seed: int = DEFAULT_SAMPLING["seed"],
    negative_prompt: str | None = None,
    sample_rate: int | None = None,
) -> ManipulationOutput:
    """SDEdit the source clip towards ``prompt``: noise its latent to ``strength`` (0 = keep, 1 = from
    scratch) of the schedule, then denoise with guidance. ``source`` is the VAE round trip of the clip."""
    wave = load_source(pipeline, audio, sample_rate)
    known = encode_audio(pipeline, wave)
    start = _start_index(num_inference_steps, strength)
    sched = pipeline.make_scheduler(scheduler)
    sched.set_timesteps(num_inference_steps, device=known.device)
    if start >= num_inference_steps:
        latents = known
    else:
        noise = _seeded_noise(known.shape[1:], seed).to(known.device)
        noisy = sched.add_noise(known, noise, sched.timesteps[start : start + 1])
        cond, uncond = _conditioning(pipeline, [prompt], guidance_scale, negative_prompt)
        latents = denoise(
            pipeline,
            cond,
            uncond,
            noisy,
            sched,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            start_step=start,
        )
    out = _output(pipeline, latents, [prompt], wave.shape[-1])
    out.source = _output(pipeline, known, [prompt], wave.shape[-1])
    return out


def span_columns(pipeline: AuffusionPipeline, start_s: float, end_s: float, width: int) -> tuple[int, int]:
    """Latent columns [first, last) covering the time span: frame = seconds * rate / hop, column = frame // f."""
    if not 0.0 <= start_s < end_s:
        raise ValueError(f"the inpainting span needs 0 <= start_s < end_s, got start_s={start_s}, end_s={end_s}")
    hop, f = pipeline.frontend.hop_length, pipeline.vae_downsample_factor
    first = round(start_s * pipeline.sample_rate / hop) // f
    last = -(-round(end_s * pipeline.sample_rate / hop) // f)
    last = min(last, width)
    if first >= last:
        raise ValueError(
            f"the span {start_s}-{end_s} s lies outside the {width * f * hop / pipeline.sample_rate:.2f} s clip"
        )
    return first, last


@torch.no_grad()
@_on_pipeline
def inpaint(
    pipeline,
    audio,
    prompt: str,
    start_s: float = DEFAULT_INPAINT_SPAN[0],
    end_s: float = DEFAULT_INPAINT_SPAN[1],
    *,
    strength: float = 1.0,
    num_inference_steps: int = DEFAULT_SAMPLING["num_inference_steps"],
    guidance_scale: float = DEFAULT_SAMPLING["guidance_scale"],
    scheduler: str = DEFAULT_SAMPLING["scheduler"],
    seed: int = DEFAULT_SAMPLING["seed"],
    negative_prompt: str | None = None,
    sample_rate: int | None = None,
) -> ManipulationOutput:
    """Regenerate ``[start_s, end_s)`` of the clip for ``prompt`` and keep the rest: after every step the
    latents outside the span are the source latent re-noised to that step's level (``scheduler.add_noise``)."""
    wave = load_source(pipeline, audio, sample_rate)
    known = encode_audio(pipeline, wave)
    first, last = span_columns(pipeline, start_s, end_s, known.shape[-1])
    inside = torch.zeros_like(known[:, :1, :1, :])
    inside[..., first:last] = 1.0
    start = _start_index(num_inference_steps, strength)
    if start >= num_inference_steps:
        raise ValueError("inpainting with strength 0 regenerates nothing; use a strength in (0, 1]")
    sched = pipeline.make_scheduler(scheduler)
    sched.set_timesteps(num_inference_steps, device=known.device)
    timesteps = sched.timesteps
    noise = _seeded_noise(known.shape[1:], seed).to(known.device)
    if start == 0:
        fresh = noise * sched.init_noise_sigma
    else:
        fresh = sched.add_noise(known, noise, timesteps[start : start + 1])
    latents = inside * fresh + (1 - inside) * sched.add_noise(known, noise, timesteps[start : start + 1])

    def blend(index: int, timestep, current: torch.Tensor) -> torch.Tensor:
        if index + 1 < len(timesteps):
            level = sched.add_noise(known, noise, timesteps[index + 1 : index + 2])
        else:
            level = known
        return inside * current + (1 - inside) * level

    cond, uncond = _conditioning(pipeline, [prompt], guidance_scale, negative_prompt)
    latents = denoise(
        pipeline,
        cond,
        uncond,
        latents,
        sched,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        start_step=start,
        step_callback=blend,
    )
    out = _output(pipeline, latents, [prompt], wave.shape[-1])
    out.source = _output(pipeline, known, [prompt], wave.shape[-1])
    return out


# ------------------------------------------------------------------------------------------ prompt-to-prompt
@dataclass(frozen=True)
class EditSettings:
    """Settings of a prompt-to-prompt run (:func:`word_swap`, :func:`reweight`), given as keywords.

    Attributes:
        cross_window: [start, end) fraction of the steps where the edited run's cross-attention is controlled.
        self_window: [start, end) fraction of the steps where it copies the source run's self-attention.
        self_min_downsampling: self-attention is copied only at layers downsampled at least this much.
        num_inference_steps, guidance_scale, scheduler, duration_seconds: sampling, as ``generate``'s.
        seed: seed of the noise both runs start from.
        negative_prompt: conditioning that replaces the unconditional zeros.
    """

    cross_window: Sequence[float] = (0.0, 0.8)
    self_window: Sequence[float] = (0.0, 0.4)
    self_min_downsampling: int = 2
    num_inference_steps: int = DEFAULT_SAMPLING["num_inference_steps"]
    guidance_scale: float = DEFAULT_SAMPLING["guidance_scale"]
    scheduler: str = DEFAULT_SAMPLING["scheduler"]
    seed: int = DEFAULT_SAMPLING["seed"]
    negative_prompt: str | None = None
    duration_seconds: float = DEFAULT_SAMPLING["duration_seconds"]


def _edit_run(pipeline, prompts, controller_cls, edit, run: EditSettings) -> ManipulationOutput:
    """Source + targets from one seed's noise in one batch, with ``controller_cls(..., edit, ...)`` editing
    the targets."""
    shape = pipeline.latent_shape(run.duration_seconds)
    sched = pipeline.make_scheduler(run.scheduler)
    sched.set_timesteps(run.num_inference_steps, device=pipeline.device)
    noise = _seeded_noise(shape, run.seed).expand(len(prompts), *shape) * sched.init_noise_sigma
    cond, uncond = _conditioning(pipeline, prompts, run.guidance_scale, run.negative_prompt)
    generators = [torch.Generator("cpu").manual_seed(run.seed) for _ in prompts]
    controller = controller_cls(
        pipeline.unet,
        len(sched.timesteps),
        edit,
        cross_window=run.cross_window,
        self_window=run.self_window,
        self_min_downsampling=run.self_min_downsampling,
        classifier_free=uncond is not None,
    )
    with controller:
        latents = denoise(
            pipeline,
            cond,
            uncond,
            noise.contiguous(),
            sched,
            num_inference_steps=run.num_inference_steps,
            guidance_scale=run.guidance_scale,
            step_kwargs={"eta": 0.0, "generator": generators},
        )
    num_samples = round(run.duration_seconds * pipeline.sample_rate)
    both = _output(pipeline, latents, prompts, num_samples)
    edited = ManipulationOutput(
        both.audio[1:], both.logmel[1:], both.image[1:], both.latents[1:], both.sample_rate, prompts[1:]
    )
    edited.source = ManipulationOutput(
        both.audio[:1], both.logmel[:1], both.image[:1], both.latents[:1], both.sample_rate, prompts[:1]
    )
    return edited


@torch.no_grad()
@_on_pipeline
def word_swap(pipeline, source_prompt: str, target_prompt: str, **settings) -> ManipulationOutput:
    """Generate ``target_prompt`` with the source prompt's cross-attention (re-indexed to the target's
    tokens) inside ``cross_window`` and the source's self-attention inside ``self_window``; ``settings``
    are the fields of :class:`EditSettings`."""
    run = EditSettings(**settings)
    mapper = swap_mapper(pipeline.conditioner, source_prompt, target_prompt)
    return _edit_run(pipeline, [source_prompt, target_prompt], WordSwapController, mapper, run)


@torch.no_grad()
@_on_pipeline
def reweight(pipeline, prompt: str, words: dict[str, float], **settings) -> ManipulationOutput:
    """Generate ``prompt`` with the cross-attention of ``words`` scaled by their weights (e.g.
    ``{"chopping": 2.0}``) inside ``cross_window``, on top of the unedited run's maps; ``settings`` are the
    fields of :class:`EditSettings`."""
    run = EditSettings(**settings)
    weights = word_weights(pipeline.conditioner, prompt, words)
    if not all(math.isfinite(w) and w >= 0 for w in words.values()):
        raise ValueError(f"word weights must be finite and >= 0, got {words}")
    return _edit_run(pipeline, [prompt, prompt], ReweightController, weights, run)
