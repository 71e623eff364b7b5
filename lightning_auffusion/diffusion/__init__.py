"""Latent diffusion on spectrogram images: text conditioning, the ``AuffusionLDM`` training module, the
``SpectrogramVAE`` module, sampling and interop with the released Auffusion layout.

Names load from their submodule on first use (``lightning_auffusion._exports``).
"""

from lightning_auffusion._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ConditionAdapter": "conditioning",
        "TextConditioner": "conditioning",
        "EncoderSpec": "encoders",
        "AuffusionLDM": "module",
        "build_unet": "unet_factory",
        "build_vae": "unet_factory",
        "SpectrogramVAE": "vae_module",
    },
)
