"""Sampling: the classifier-free-guidance denoising loop, latent <-> audio, and ``generate``.

Released Auffusion samples with PNDM (100 steps, PLMS without Runge-Kutta warm-up as Stable Diffusion),
guidance 7.5 with ``eps = eps_u + g (eps_c - eps_u)`` where the unconditional branch sees zeros after the
condition adapters, decodes the latent with the VAE, maps the image back to a log-mel spectrogram and
vocodes it with HiFi-GAN, keeping the first 10 s (160000 samples at 16 kHz).

Determinism: prompt ``i`` starts from noise drawn by its own generator seeded with ``seed + i`` (or the
i-th entry of a seed list), so a prompt's audio does not depend on the batch it was generated in.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lightning_auffusion.diffusion.pipeline import AuffusionPipeline, as_pipeline
from lightning_auffusion.diffusion.positions import with_frame_positions
from lightning_auffusion.diffusion.schedulers import (
    DEFAULT_SCHEDULER,
    SchedulerName,
    check_scheduler_name,
    fresh_scheduler,
)
from lightning_auffusion.errors import UserInputError

log = logging.getLogger(__name__)

# sampling as released; a model's own ``sampling`` settings (from its config or layout) replace these
DEFAULT_SAMPLING: dict[str, Any] = {
    "scheduler": DEFAULT_SCHEDULER,
    "num_inference_steps": 100,
    "guidance_scale": 7.5,
    "seed": 0,
    "duration_seconds": 10.0,
}


def resolve_sampling(own: dict | None, **given: Any) -> dict[str, Any]:
    """``given`` settings, each None replaced by the model's ``own`` value, else the released default."""
    own = own or {}
    return {
        key: value if value is not None else own.get(key, DEFAULT_SAMPLING.get(key)) for key, value in given.items()
    }


@dataclass
class SamplingOptions:
    """The sampling settings a command is given; each one left at None takes the model's own (the
    ``sampling`` block of its training config, or of the exported layout), else the released value.

    Attributes:
        scheduler: pndm (as released), ddim, dpmsolver++ or euler; unset: the model's own.
        num_inference_steps: denoising steps (100 as released; 25 already does well); unset: the model's own.
        guidance_scale: classifier-free guidance g in eps_u + g (eps_c - eps_u); 1 disables guidance; unset:
            the model's own.
        duration_seconds: audio length to keep (10 s as released); longer durations widen the spectrogram;
            unset: the model's own.
        seed: seed of the first prompt's noise; prompt i uses seed + i whatever the batching.
        negative_prompt: conditioning that replaces the unconditional zeros (steers away from it).
    """

    scheduler: SchedulerName | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    duration_seconds: float | None = None
    seed: int = DEFAULT_SAMPLING["seed"]
    negative_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.scheduler is not None:
            check_scheduler_name(self.scheduler)

    def resolve(self, own: dict | None, duration: bool = True) -> dict[str, Any]:
        """The four model-dependent settings made concrete (``duration_seconds`` left out when ``duration``
        is False); ``seed`` and ``negative_prompt`` do not depend on the model and stay on the options."""
        keys = ("scheduler", "num_inference_steps", "guidance_scale") + (("duration_seconds",) if duration else ())
        return resolve_sampling(own, **{key: getattr(self, key) for key in keys})


@dataclass
class GenerationOutput:
    """What ``generate`` returns; tensors on the CPU in float32, one row per prompt."""

    audio: torch.Tensor  # (B, T) waveform at ``sample_rate``, cut to the requested duration, in [-1, 1]
    logmel: torch.Tensor  # (B, n_mels, frames) natural-log mel decoded from the image
    image: torch.Tensor  # (B, 3, n_mels, frames) VAE output in [-1, 1]
    latents: torch.Tensor  # (B, C, n_mels / f, frames / f) final denoised latents (scaled, as the U-Net sees them)
    sample_rate: int
    prompts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


def _filter_kwargs(func: Callable, kwargs: dict[str, Any]) -> dict[str, Any]:
    accepted = set(inspect.signature(func).parameters)
    return {k: v for k, v in kwargs.items() if k in accepted}


# ---------------------------------------------------------------------------------------- latents <-> audio
@torch.no_grad()
def encode_audio(
    pipeline: AuffusionPipeline,
    waveform: torch.Tensor,
    sample_posterior: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Waveform (B, T) at the pipeline's sample rate -> scaled VAE latents (B, C, n_mels/f, frames/f).

    The posterior mean by default (deterministic); ``sample_posterior`` draws from it as training does.
    """
    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.dim() != 2:
        raise UserInputError(f"encode_audio expects a waveform (batch, samples), got shape {tuple(waveform.shape)}")
    device = pipeline.device
    vae_dtype = next(pipeline.vae.parameters()).dtype
    image = pipeline.frontend(waveform.to(device=device, dtype=torch.float32))
    posterior = pipeline.vae.encode(image.to(vae_dtype)).latent_dist
    latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
    return latents.float() * pipeline.vae_scaling_factor


def _griffin_lim(pipeline: AuffusionPipeline, logmel: torch.Tensor) -> torch.Tensor:
    from lightning_auffusion.vocoder.griffin_lim import griffin_lim

    return griffin_lim(logmel.float(), pipeline.frontend.mel_config, n_iter=pipeline.griffin_lim_iters)


@torch.no_grad()
def decode_latents(
    pipeline: AuffusionPipeline, latents: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scaled latents -> ``(audio (B, T), logmel (B, n_mels, frames), image (B, 3, n_mels, frames))``.

    The vocoder turns the log-mel into audio; without one, or with the pipeline's ``waveform_decoder``
    "griffin_lim", Griffin-Lim does (much lower quality; logged when it is a fallback).
    Audio is float32 with NaN/inf replaced by 0 and clipped to [-1, 1].
    """
    vae_dtype = next(pipeline.vae.parameters()).dtype
    image = pipeline.vae.decode(latents.to(vae_dtype) / pipeline.vae_scaling_factor).sample
    image = image.float().clamp(-1.0, 1.0)
    logmel = pipeline.frontend.image_to_logmel(image)
    return vocode_logmel(pipeline, logmel), logmel, image


@torch.no_grad()
def vocode_logmel(pipeline: AuffusionPipeline, logmel: torch.Tensor) -> torch.Tensor:
    """Log-mel (B, n_mels, frames) -> audio (B, T) with the pipeline's vocoder, Griffin-Lim without one
    (logged once) or when its ``waveform_decoder`` is "griffin_lim"; float32, NaN/inf replaced by 0, clipped to [-1, 1]."""
    if getattr(pipeline, "waveform_decoder", "vocoder") == "griffin_lim":  # chosen (Riffusion), not a fallback
        audio = _griffin_lim(pipeline, logmel)
    elif pipeline.vocoder is not None:
        voc_param = next(pipeline.vocoder.parameters(), None)
        voc_dtype = voc_param.dtype if voc_param is not None else torch.float32
        audio = pipeline.vocoder(logmel.to(voc_dtype))
    else:
        if not getattr(pipeline, "_griffin_lim_warned", False):
            log.warning("no vocoder attached: using Griffin-Lim (low quality); pass a trained vocoder for real audio")
            pipeline._griffin_lim_warned = True
        audio = _griffin_lim(pipeline, logmel)
    if audio.dim() == 3:
        audio = audio.squeeze(1)
    return torch.nan_to_num(audio.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp(-1.0, 1.0)


# ---------------------------------------------------------------------------------------- denoising loop
@torch.no_grad()
def denoise(
    pipeline: AuffusionPipeline,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    latents: torch.Tensor,
    scheduler,
    *,
    num_inference_steps: int,
    guidance_scale: float,
    start_step: int = 0,
    step_callback: Callable[[int, Any, torch.Tensor], torch.Tensor | None] | None = None,
    cross_attention_kwargs: dict | None = None,
    step_kwargs: dict | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Run ``scheduler`` from step ``start_step`` to the end; returns the denoised latents (float32).

    ``latents`` must already sit at the noise level of ``scheduler.timesteps[start_step]`` in the
    scheduler's convention (pure noise times ``init_noise_sigma`` for a full run, ``scheduler.add_noise``
    for SDEdit). With guidance the U-Net sees ``torch.cat([uncond, cond])`` (unconditional half first) and
    ``eps = eps_u + g (eps_c - eps_u)``; ``guidance_scale == 1`` runs the conditional branch only.
    ``step_callback(step_index, timestep, latents)`` runs after every scheduler step (``step_index`` counts
    ``scheduler.timesteps`` from 0); a tensor it returns replaces the latents. ``step_kwargs`` go to
    ``scheduler.step`` when it accepts them (``eta``, ``generator``).
    """
    if num_inference_steps < 1:
        raise UserInputError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    use_guidance = float(guidance_scale) != 1.0
    if use_guidance and uncond is None:
        raise UserInputError("guidance_scale != 1 needs unconditional embeddings (uncond)")
    device = pipeline.device
    unet_dtype = pipeline.dtype
    scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    if not 0 <= start_step < len(timesteps):
        raise UserInputError(f"start_step must be in [0, {len(timesteps)}), got {start_step}")
    if start_step and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start_step)
    extra = _filter_kwargs(scheduler.step, dict(step_kwargs or {}))

    cond = cond.to(device=device, dtype=unet_dtype)
    context = torch.cat([uncond.to(device=device, dtype=unet_dtype), cond]) if use_guidance else cond
    latents = latents.to(device=device, dtype=torch.float32)
    steps = range(start_step, len(timesteps))
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="denoising", leave=False)
    for index in steps:
        t = timesteps[index]
        model_input = torch.cat([latents, latents]) if use_guidance else latents
        model_input = scheduler.scale_model_input(model_input, t)
        model_input = with_frame_positions(model_input, getattr(pipeline, "frame_position_channels", 0))
        eps = pipeline.unet(
            model_input.to(unet_dtype),
            t,
            encoder_hidden_states=context,
            cross_attention_kwargs=cross_attention_kwargs,
            return_dict=False,
        )[0].float()
        if use_guidance:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + guidance_scale * (eps_c - eps_u)
        latents = scheduler.step(eps, t, latents, return_dict=False, **extra)[0]
        if step_callback is not None:
            replaced = step_callback(index, t, latents)
            if replaced is not None:
                latents = replaced.to(device=device, dtype=torch.float32)
    return latents


# ---------------------------------------------------------------------------------------- text -> audio
def _seed_list(seed: int | Sequence[int], count: int) -> list[int]:
    if isinstance(seed, int):
        return [seed + i for i in range(count)]
    seeds = [int(s) for s in seed]
    if len(seeds) != count:
        raise UserInputError(f"got {len(seeds)} seeds for {count} prompts; pass one seed per prompt or a single int")
    return seeds


def _negative_list(negative_prompts: str | Sequence[str] | None, count: int) -> list[str] | None:
    if negative_prompts is None:
        return None
    if isinstance(negative_prompts, str):
        return [negative_prompts] * count
    negatives = list(negative_prompts)
    if len(negatives) == 1:
        return negatives * count
    if len(negatives) != count:
        raise UserInputError(f"got {len(negatives)} negative prompts for {count} prompts; pass one, or one per prompt")
    return negatives


def initial_noise(shape: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
    """Standard normal noise (len(seeds), *shape), row i drawn on the CPU by a generator seeded seeds[i]."""
    rows = [torch.randn(tuple(shape), generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
    return torch.stack(rows)


@torch.no_grad()
def generate(
    module_or_pipeline,
    prompts: str | Sequence[str],
    *,
    num_inference_steps: int = DEFAULT_SAMPLING["num_inference_steps"],
    guidance_scale: float = DEFAULT_SAMPLING["guidance_scale"],
    scheduler: str | Any = DEFAULT_SAMPLING["scheduler"],
    seed: int | Sequence[int] = DEFAULT_SAMPLING["seed"],
    negative_prompts: str | Sequence[str] | None = None,
    batch_size: int = 8,
    duration_seconds: float = DEFAULT_SAMPLING["duration_seconds"],
    latents: torch.Tensor | None = None,
    eta: float = 0.0,
    use_ema: bool = True,
    cross_attention_kwargs: dict | None = None,
    progress: bool = False,
) -> GenerationOutput:
    """Prompts -> audio with an ``AuffusionLDM`` or ``AuffusionPipeline``.

    ``scheduler`` is a name in ``SCHEDULERS`` (or a diffusers scheduler, copied). ``seed`` is the first
    prompt's seed (prompt i uses ``seed + i``) or one seed per prompt. ``negative_prompts`` (one, or one
    per prompt) replace the unconditional zeros with their conditioning. ``latents`` (B, C, h, w) sets the
    initial noise (scaled by the scheduler's ``init_noise_sigma``) instead of the seeds. ``eta`` is DDIM's.
    A LightningModule is sampled with its EMA weights when ``use_ema`` and it has an EMA (:func:`as_pipeline`).
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise UserInputError("generate needs at least one prompt")
    if batch_size < 1:
        raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
    if duration_seconds <= 0:
        raise UserInputError(f"duration_seconds must be positive, got {duration_seconds}")
    settings = dict(
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        scheduler=scheduler,
        seeds=_seed_list(seed, len(prompts)),
        negatives=_negative_list(negative_prompts, len(prompts)),
        batch_size=batch_size,
        duration_seconds=duration_seconds,
        latents=latents,
        eta=eta,
        cross_attention_kwargs=cross_attention_kwargs,
        progress=progress,
    )
    with as_pipeline(module_or_pipeline, use_ema) as pipeline:
        return _generate(pipeline, prompts, **settings)


def _generate(
    pipeline: AuffusionPipeline,
    prompts: list[str],
    *,
    num_inference_steps: int,
    guidance_scale: float,
    scheduler,
    seeds: list[int],
    negatives: list[str] | None,
    batch_size: int,
    duration_seconds: float,
    latents: torch.Tensor | None,
    eta: float,
    cross_attention_kwargs: dict | None,
    progress: bool,
) -> GenerationOutput:
    latent_shape = pipeline.latent_shape(duration_seconds)
    if latents is not None:
        if latents.dim() == 3:
            latents = latents.unsqueeze(0).expand(len(prompts), -1, -1, -1)
        if latents.shape[0] != len(prompts) or latents.shape[1] != latent_shape[0]:
            raise UserInputError(
                f"latents of shape {tuple(latents.shape)} do not fit {len(prompts)} prompts with "
                f"{latent_shape[0]} latent channels"
            )
    num_samples = round(duration_seconds * pipeline.sample_rate)
    outputs: dict[str, list[torch.Tensor]] = {"audio": [], "logmel": [], "image": [], "latents": []}
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        chunk_prompts, chunk_seeds = prompts[chunk], seeds[chunk]
        sched = fresh_scheduler(scheduler, pipeline.train_scheduler_config)
        noise = latents[chunk].float().cpu() if latents is not None else initial_noise(latent_shape, chunk_seeds)
        noise = noise * sched.init_noise_sigma
        cond = pipeline.conditioner(chunk_prompts)
        uncond = None
        if float(guidance_scale) != 1.0:
            if negatives is not None:
                uncond = pipeline.conditioner(negatives[chunk])
            else:
                uncond = pipeline.conditioner.unconditional(len(chunk_prompts))
        generators = [torch.Generator("cpu").manual_seed(s) for s in chunk_seeds]
        result = denoise(
            pipeline,
            cond,
            uncond,
            noise,
            sched,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            cross_attention_kwargs=cross_attention_kwargs,
            step_kwargs={"eta": eta, "generator": generators},
            progress=progress,
        )
        audio, logmel, image = decode_latents(pipeline, result)
        outputs["audio"].append(_fit_length(audio, num_samples).cpu())
        outputs["logmel"].append(logmel.float().cpu())
        outputs["image"].append(image.float().cpu())
        outputs["latents"].append(result.float().cpu())
        log.info("generated %d/%d prompts", min(start + batch_size, len(prompts)), len(prompts))
    return GenerationOutput(
        audio=torch.cat(outputs["audio"]),
        logmel=torch.cat(outputs["logmel"]),
        image=torch.cat(outputs["image"]),
        latents=torch.cat(outputs["latents"]),
        sample_rate=pipeline.sample_rate,
        prompts=prompts,
        seeds=seeds,
    )


def _fit_length(audio: torch.Tensor, num_samples: int) -> torch.Tensor:
    if audio.shape[-1] >= num_samples:
        return audio[..., :num_samples]
    return torch.nn.functional.pad(audio, (0, num_samples - audio.shape[-1]))
