"""Audio front end: loading, resampling, Auffusion's log-mel and the spectrogram <-> image mapping.

Names load from their submodule on first use (``lightning_auffusion._exports``).
"""

from lightning_auffusion._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "AuffusionFrontend": "frontend",
        "ImageConfig": "image",
        "SpectrogramImage": "image",
        "AudioLoadError": "io",
        "load_audio": "io",
        "save_wav": "io",
        "LogMelSpectrogram": "mel",
        "MelConfig": "mel",
        "mel_filterbank": "mel",
    },
)
