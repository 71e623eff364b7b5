"""Audio front end: loading, resampling, Auffusion's log-mel and the spectrogram <-> image mapping."""

from lightning_auffusion.audio.frontend import AuffusionFrontend
from lightning_auffusion.audio.image import ImageConfig, SpectrogramImage
from lightning_auffusion.audio.io import AudioLoadError, load_audio, save_wav
from lightning_auffusion.audio.mel import LogMelSpectrogram, MelConfig, mel_filterbank
from lightning_auffusion.audio.resample import resample

__all__ = [
    "AudioLoadError",
    "AuffusionFrontend",
    "ImageConfig",
    "LogMelSpectrogram",
    "MelConfig",
    "SpectrogramImage",
    "load_audio",
    "mel_filterbank",
    "resample",
    "save_wav",
]
