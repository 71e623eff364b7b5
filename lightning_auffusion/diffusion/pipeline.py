"""``AuffusionPipeline``: the frozen parts needed to turn text into audio, outside any training loop.

A plain class (not a ``DiffusionPipeline``) holding the denoising U-Net, the VAE, the text conditioner,
the audio front end (image <-> log-mel) and an optional vocoder. It is built from a trained ``AuffusionLDM``
(:func:`as_pipeline`, or :meth:`AuffusionPipeline.from_module`), from a checkpoint or from the released
Hugging Face layout (``lightning_auffusion.diffusion.loading``), and used by the functions of
``lightning_auffusion.diffusion.sampling``.

The EMA rule, the same for every sampler of a training module: with ``use_ema`` and an EMA on the module,
the EMA weights are swapped into its U-Net for the duration of :func:`as_pipeline` (no copy of the U-Net)
and the training weights are back afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any, Literal

import torch
from torch import nn

from lightning_auffusion.diffusion.positions import check_position_channels
from lightning_auffusion.diffusion.schedulers import DEFAULT_SCHEDULER, make_scheduler
from lightning_auffusion.diffusion.unet_factory import SD15_VAE_SCALING_FACTOR

log = logging.getLogger(__name__)

DtypeName = Literal["float32", "bfloat16", "float16"]
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class AuffusionPipeline:
    """Text -> latent -> spectrogram image -> log-mel -> waveform, with the parts of an Auffusion model.

    ``train_scheduler_config`` is the noise schedule the U-Net was trained with (a diffusers scheduler
    config); every sampling scheduler is built from it (:meth:`make_scheduler`). ``sampling`` holds the
    model's own sampling settings (``scheduler``, ``num_inference_steps``, ``guidance_scale``, ...), which
    commands use for the settings they are not given. Without a ``vocoder``, or with ``waveform_decoder``
    "griffin_lim" (the Riffusion baseline), audio comes from Griffin-Lim with ``griffin_lim_iters`` iterations.
    """

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        conditioner: nn.Module,
        frontend: nn.Module,
        vocoder: nn.Module | None = None,
        vae_scaling_factor: float | None = None,
        train_scheduler_config: dict | None = None,
        sampling: dict | None = None,
        griffin_lim_iters: int = 32,
        frame_position_channels: int = 0,
        waveform_decoder: str = "vocoder",
    ) -> None:
        if waveform_decoder not in ("vocoder", "griffin_lim"):
            raise ValueError(f"waveform_decoder must be 'vocoder' or 'griffin_lim', got {waveform_decoder!r}")
        self.waveform_decoder = waveform_decoder
        self.unet = unet
        self.vae = vae
        self.conditioner = conditioner
        self.frontend = frontend
        self.vocoder = vocoder
        self.frame_position_channels = check_position_channels(frame_position_channels)  # see diffusion.positions
        self.griffin_lim_iters = int(griffin_lim_iters)  # phase-retrieval iterations when no vocoder is attached
        if vae_scaling_factor is None:
            vae_scaling_factor = (
                getattr(getattr(vae, "config", None), "scaling_factor", None) or SD15_VAE_SCALING_FACTOR
            )
        self.vae_scaling_factor = float(vae_scaling_factor)
        self.train_scheduler_config = dict(train_scheduler_config) if train_scheduler_config is not None else None
        self.sampling = dict(sampling or {})

    def make_scheduler(self, name: str | None = None):
        """A fresh sampling scheduler on the training schedule: ``name``, else the model's own, else PNDM."""
        return make_scheduler(name or self.sampling.get("scheduler") or DEFAULT_SCHEDULER, self.train_scheduler_config)

    @property
    def scheduler(self):
        """A fresh copy of the default sampling scheduler (:meth:`make_scheduler` without a name)."""
        return self.make_scheduler()

    def freeze(self) -> AuffusionPipeline:
        """Put every part in eval mode without gradients (for pipelines that own their parts)."""
        for part in self.modules().values():
            part.eval()
            part.requires_grad_(False)
        return self

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_module(cls, module: nn.Module, use_ema: bool = True) -> AuffusionPipeline:
        """The pipeline of a trained ``AuffusionLDM``.

        It shares the module's parts (no copy, no change to their training mode or ``requires_grad``).
        With ``use_ema`` and an EMA on the module, the pipeline instead gets its own copy of the U-Net
        holding the EMA weights, for a pipeline that outlives the call; samplers use :func:`as_pipeline`.
        """
        for name in ("unet", "vae", "conditioner", "frontend", "noise_scheduler"):
            if not hasattr(module, name):
                raise TypeError(f"{type(module).__name__} has no '{name}': from_module expects an AuffusionLDM")
        unet = module.unet
        ema = getattr(module, "ema", None)
        if use_ema and ema is not None:
            unet = copy.deepcopy(module.unet)
            ema.copy_to(unet.parameters())
        return cls(
            unet=unet,
            vae=module.vae,
            conditioner=module.conditioner,
            frontend=module.frontend,
            vocoder=getattr(module, "vocoder", None),
            vae_scaling_factor=getattr(module, "vae_scaling_factor", None),
            train_scheduler_config=dict(module.noise_scheduler.config),
            sampling=dict(getattr(module, "sampling", None) or {}),
            frame_position_channels=int(getattr(module, "hparams", {}).get("frame_position_channels", 0)),
            waveform_decoder=str(getattr(module, "hparams", {}).get("waveform_decoder", "vocoder")),
            griffin_lim_iters=int(getattr(module, "hparams", {}).get("griffin_lim_iters", 32)),
        )

    # ------------------------------------------------------------------ device / dtype
    def modules(self) -> dict[str, nn.Module]:
        parts = {"unet": self.unet, "vae": self.vae, "conditioner": self.conditioner, "frontend": self.frontend}
        if self.vocoder is not None:
            parts["vocoder"] = self.vocoder
        return parts

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> AuffusionPipeline:
        """Move every part to ``device``; ``dtype`` (e.g. ``torch.bfloat16``) casts U-Net, VAE and text parts.

        The front end and the vocoder stay in float32 (mel and waveform precision matters more than speed).
        """
        for name, part in self.modules().items():
            if dtype is not None and name in ("unet", "vae", "conditioner"):
                part.to(device=device, dtype=dtype)
            else:
                part.to(device=device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # ------------------------------------------------------------------ geometry
    @property
    def vae_downsample_factor(self) -> int:
        """Spatial factor between spectrogram image and latent: 2 ** (number of VAE blocks - 1)."""
        blocks = getattr(getattr(self.vae, "config", None), "block_out_channels", None)
        return 2 ** (len(blocks) - 1) if blocks else 8

    @property
    def unet_downsample_factor(self) -> int:
        """Factor the U-Net downsamples its input by; latent sides must be multiples of it."""
        blocks = getattr(getattr(self.unet, "config", None), "down_block_types", None)
        return 2 ** (len(blocks) - 1) if blocks else 8

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels) - self.frame_position_channels

    @property
    def sample_rate(self) -> int:
        return int(self.frontend.sample_rate)

    def frames_for(self, duration_seconds: float) -> int:
        """Spectrogram frames to generate for ``duration_seconds`` of audio.

        At least the front end's clip length (``n_frames``, 1024 = 10.24 s as released); longer durations
        round up to a width the VAE and U-Net can divide.
        """
        hop = self.frontend.hop_length
        needed = int(-(-round(duration_seconds * self.sample_rate) // hop))
        frames = max(needed, int(self.frontend.n_frames or 0))
        multiple = self.vae_downsample_factor * self.unet_downsample_factor
        return int(-(-frames // multiple) * multiple)

    def latent_shape(self, duration_seconds: float) -> tuple[int, int, int]:
        """(channels, n_mels / f, frames / f) of the latent for a clip of ``duration_seconds``."""
        n_mels = int(self.frontend.mel_config.n_mels)
        f = self.vae_downsample_factor
        multiple = f * self.unet_downsample_factor
        if n_mels % multiple:
            raise ValueError(
                f"n_mels ({n_mels}) must be divisible by {multiple} (VAE factor {f} x U-Net factor "
                f"{self.unet_downsample_factor}); change the mel config or the model's block count"
            )
        return (self.latent_channels, n_mels // f, self.frames_for(duration_seconds) // f)


@contextlib.contextmanager
def as_pipeline(model: AuffusionPipeline | nn.Module, use_ema: bool = True) -> Iterator[AuffusionPipeline]:
    """The pipeline of ``model``: a pipeline as it is, or an ``AuffusionLDM``'s parts with its EMA weights
    swapped into the U-Net while the context is open (with ``use_ema`` and an EMA; no copy of the U-Net)."""
    if isinstance(model, AuffusionPipeline):
        yield model
        return
    if not hasattr(model, "noise_scheduler"):
        raise TypeError(f"expected an AuffusionPipeline or AuffusionLDM, got {type(model).__name__}")
    swap = model.ema_weights() if use_ema and hasattr(model, "ema_weights") else contextlib.nullcontext()
    with swap:
        yield AuffusionPipeline.from_module(model, use_ema=False)


def frontend_settings(frontend: nn.Module) -> dict[str, Any]:
    """The settings of an ``AuffusionFrontend`` as plain JSON-able values (mel, image, n_frames, peak_normalize)."""
    return {
        "mel": asdict(frontend.mel_config),
        "image": asdict(frontend.image.config),
        "n_frames": frontend.n_frames,
        "peak_normalize": bool(frontend.peak_normalize),
    }


def frontend_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """``AuffusionFrontend`` keyword arguments from :func:`frontend_settings` output."""
    from lightning_auffusion.audio import ImageConfig, MelConfig

    return {
        "mel": MelConfig(**settings["mel"]) if settings.get("mel") else None,
        "image": ImageConfig(**settings["image"]) if settings.get("image") else None,
        "n_frames": settings.get("n_frames", 1024),
        "peak_normalize": settings.get("peak_normalize", True),
    }
