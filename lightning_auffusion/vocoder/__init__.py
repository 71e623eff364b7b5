"""HiFi-GAN vocoder at Auffusion's mel settings: generator, discriminators, training module, interop.

Inference entry point for the generation code::

    from lightning_auffusion.vocoder import load_vocoder
    vocoder = load_vocoder("runs/vocoder/export")        # or a .ckpt, a HiFi-GAN file, a hub id
    vocoder.config.check_compatible(mel_config)           # raises on mismatched mel settings
    wave = vocoder(logmel)                                # (B, n_mels, frames) -> (B, 1, frames * hop)
"""

from lightning_auffusion.vocoder.checkpoint import (
    load_hifigan_discriminators,
    load_vocoder,
    save_auffusion_vocoder,
    save_hifigan_discriminators,
    save_hifigan_generator,
)
from lightning_auffusion.vocoder.config import DiscriminatorConfig, GeneratorConfig
from lightning_auffusion.vocoder.generator import HifiGanGenerator
from lightning_auffusion.vocoder.griffin_lim import GriffinLim, GriffinLimConfig, griffin_lim

__all__ = [
    "DiscriminatorConfig",
    "GeneratorConfig",
    "GriffinLim",
    "GriffinLimConfig",
    "HifiGanGenerator",
    "VocoderModule",
    "griffin_lim",
    "load_hifigan_discriminators",
    "load_vocoder",
    "save_auffusion_vocoder",
    "save_hifigan_discriminators",
    "save_hifigan_generator",
]


def __getattr__(name: str):
    if name == "VocoderModule":  # imported lazily: it pulls in Lightning
        from lightning_auffusion.vocoder.module import VocoderModule

        return VocoderModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
