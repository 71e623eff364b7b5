"""The ``export-lora`` command: an LDM checkpoint's LoRA adapter in diffusers' format.

Kept apart from ``lora`` because it loads a whole ``AuffusionLDM`` (which itself imports ``lora``).
"""

from __future__ import annotations

from lightning_auffusion.diffusion.lora import export_lora
from lightning_auffusion.diffusion.module import load_ldm_checkpoint
from lightning_auffusion.errors import UserInputError


def export_lora_command(checkpoint: str, output_dir: str = "outputs/lora") -> str:
    """Export the LoRA adapter of an AuffusionLDM checkpoint in diffusers' format.

    Args:
        checkpoint: an AuffusionLDM .ckpt trained with model lora: {...}.
        output_dir: folder for pytorch_lora_weights.safetensors (read by a diffusers pipeline's load_lora_weights).
    """
    module = load_ldm_checkpoint(checkpoint)
    if module.hparams.get("lora") is None:
        raise UserInputError(
            f"{checkpoint} was not trained with LoRA (model lora is null): use `export` for a full U-Net"
        )
    path = export_lora(module.unet, output_dir)
    return path
