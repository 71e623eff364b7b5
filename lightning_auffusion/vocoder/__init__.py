"""HiFi-GAN vocoder at Auffusion's mel settings: generator, discriminators, training module, interop.

Inference entry point for the generation code::

    from lightning_auffusion.vocoder import load_vocoder
    vocoder = load_vocoder("runs/vocoder/export")        # or a .ckpt, a HiFi-GAN file, a hub id
    vocoder.config.check_compatible(mel_config)           # raises on mismatched mel settings
    wave = vocoder(logmel)                                # (B, n_mels, frames) -> (B, 1, frames * hop)

Names load from their submodule on first use (``lightning_auffusion._exports``).
"""

from lightning_auffusion._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "load_hifigan_discriminators": "checkpoint",
        "load_vocoder": "checkpoint",
        "save_auffusion_vocoder": "checkpoint",
        "save_hifigan_discriminators": "checkpoint",
        "save_hifigan_generator": "checkpoint",
        "DiscriminatorConfig": "config",
        "GeneratorConfig": "config",
        "HifiGanGenerator": "generator",
        "GriffinLim": "griffin_lim",
        "GriffinLimConfig": "griffin_lim",
        "VocoderModule": "module",
    },
)
