"""Latent diffusion on spectrogram images: text conditioning, the ``AuffusionLDM`` training module, the
``SpectrogramVAE`` module, sampling and interop with the released Auffusion layout.

Importing the package is cheap: the public names below load their module (diffusers, transformers) on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "EncoderSpec": "lightning_auffusion.diffusion.encoders",
    "TextConditioner": "lightning_auffusion.diffusion.conditioning",
    "ConditionAdapter": "lightning_auffusion.diffusion.conditioning",
    "AuffusionLDM": "lightning_auffusion.diffusion.module",
    "SpectrogramVAE": "lightning_auffusion.diffusion.vae_module",
    "build_unet": "lightning_auffusion.diffusion.unet_factory",
    "build_vae": "lightning_auffusion.diffusion.unet_factory",
}

__all__ = [
    "AuffusionLDM",
    "ConditionAdapter",
    "EncoderSpec",
    "SpectrogramVAE",
    "TextConditioner",
    "build_unet",
    "build_vae",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
