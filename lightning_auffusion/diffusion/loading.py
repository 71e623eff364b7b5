"""Where the commands' models come from: one typed option, :class:`ModelSource`, and one loader.

A model is an ``AuffusionLDM`` checkpoint written by ``fit`` or a released Auffusion layout (a local
directory or a Hugging Face hub id), optionally with another vocoder. A checkpoint is sampled with its EMA
weights when it kept an EMA and ``use_ema`` is on: the loaded module is the command's alone, so the EMA
weights are copied into its U-Net once (the rule of :func:`lightning_auffusion.diffusion.pipeline.as_pipeline`
made permanent, since nothing trains afterwards).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from lightning_auffusion.diffusion.pipeline import DTYPES, DtypeName
from lightning_auffusion.errors import UserInputError

if TYPE_CHECKING:
    from lightning_auffusion.diffusion.pipeline import AuffusionPipeline

log = logging.getLogger(__name__)

# the named choices the help shows; any torch device string (cuda:1, mps) is taken too
DeviceName = Literal["auto", "cpu", "cuda"] | str


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"device {device!r} asked for but CUDA is not available; use --device cpu or auto")
    return resolved


def check_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype named ``dtype``; float16 is refused on the CPU."""
    if dtype not in DTYPES:
        raise UserInputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if device.type == "cpu" and dtype == "float16":
        raise UserInputError("float16 is for GPUs; use --dtype float32 or bfloat16 on the CPU")
    return DTYPES[dtype]


def load_pipeline(
    checkpoint: str | None = None,
    pretrained: str | None = None,
    use_ema: bool = True,
    vocoder: str | None = None,
) -> AuffusionPipeline:
    """An ``AuffusionPipeline`` from an ``AuffusionLDM`` checkpoint or a released layout (exactly one)."""
    from lightning_auffusion.diffusion.pipeline import AuffusionPipeline

    if (checkpoint is None) == (pretrained is None):
        raise UserInputError(
            "give exactly one of --checkpoint (an AuffusionLDM .ckpt) or --pretrained (a released layout or hub id)"
        )
    if pretrained is not None:
        from lightning_auffusion.diffusion.interop import load_released

        return load_released(pretrained, vocoder=vocoder)
    from lightning_auffusion.diffusion.module import load_ldm_checkpoint

    module = load_ldm_checkpoint(checkpoint, vocoder=vocoder)
    if use_ema and module.ema is not None:
        module.ema.copy_to(module.unet.parameters())  # the module is ours alone: no second copy of the U-Net
    elif use_ema:
        log.info("%s has no EMA: sampling with the trained weights", checkpoint)
    module.ema = None
    return AuffusionPipeline.from_module(module, use_ema=False).freeze()


@dataclass
class ModelSource:
    """The model a command samples: a checkpoint or a released layout, where it runs and in what precision.

    Attributes:
        checkpoint: an AuffusionLDM Lightning checkpoint (.ckpt from `fit`).
        pretrained: a released Auffusion layout: local directory or Hugging Face hub id.
        use_ema: sample with the EMA weights of a checkpoint that kept an EMA.
        vocoder: another vocoder (a vocoder .ckpt or exported folder) instead of the model's own.
        lora: a LoRA adapter in diffusers' format (pytorch_lora_weights.safetensors or its folder, from export-lora)
            merged into the U-Net (needs peft).
        lora_scale: strength of the merged LoRA update (1.0: as trained).
        device: auto (CUDA when available), cpu, cuda or cuda:<n>.
        dtype: precision of U-Net, VAE and text encoders: float32, bfloat16 or float16 (GPU).
    """

    checkpoint: str | None = None
    pretrained: str | None = None
    use_ema: bool = True
    vocoder: str | None = None
    lora: str | None = None
    lora_scale: float = 1.0
    device: DeviceName = "auto"
    dtype: DtypeName = "float32"

    def load(self) -> AuffusionPipeline:
        """The pipeline on its device and in its precision (device and dtype are checked before loading)."""
        device = resolve_device(self.device)
        dtype = check_dtype(self.dtype, device)
        pipeline = load_pipeline(self.checkpoint, self.pretrained, use_ema=self.use_ema, vocoder=self.vocoder)
        if self.lora is not None:
            from lightning_auffusion.diffusion.lora import load_lora

            load_lora(pipeline.unet, self.lora, fuse=True, scale=self.lora_scale)
            log.info("merged LoRA %s (scale %g) into the U-Net", self.lora, self.lora_scale)
        return pipeline.to(device, dtype if dtype != pipeline.dtype else None)  # no cast when already there

    @property
    def name(self) -> str | None:
        """What the model was loaded from, for manifests."""
        name = self.checkpoint or self.pretrained
        return f"{name} + LoRA {self.lora}" if self.lora and name else name
