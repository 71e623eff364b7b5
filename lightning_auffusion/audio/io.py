"""Reading and writing audio files (wav, flac, ogg, mp3 where libsndfile has a decoder)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from lightning_auffusion.audio.resample import resample

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".opus")


class AudioLoadError(ValueError):
    """An audio file could not be used; the message says which file and why."""


def audio_info(path: str | os.PathLike) -> sf._SoundFileInfo:
    try:
        return sf.info(str(path))
    except Exception as err:  # libsndfile raises several types for unreadable input
        raise AudioLoadError(f"{path}: not a readable audio file ({err})") from None


def load_audio(
    path: str | os.PathLike | object,
    target_sr: int | None = None,
    mono: bool = True,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, int]:
    """Load an audio file (or file-like object) as float32.

    Returns ``(audio, sample_rate)``; ``audio`` has shape (time,) when ``mono`` else (channels, time).
    Multi-channel audio is averaged to mono; ``target_sr`` resamples with the band-limited resampler;
    ``max_seconds`` reads only the start of long files. Raises ``AudioLoadError`` for missing,
    unreadable, empty or non-finite audio.
    """
    name = getattr(path, "name", path)
    if isinstance(path, (str, os.PathLike)) and not Path(path).is_file():
        raise AudioLoadError(f"{name}: file not found")
    try:
        with sf.SoundFile(path) as fh:
            sr = fh.samplerate
            frames = -1 if max_seconds is None else int(round(max_seconds * sr))
            data = fh.read(frames=frames, dtype="float32", always_2d=True)
    except AudioLoadError:
        raise
    except Exception as err:
        raise AudioLoadError(f"{name}: not a readable audio file ({type(err).__name__}: {err})") from None
    if data.shape[0] == 0:
        raise AudioLoadError(f"{name}: no audio samples (empty or truncated file)")
    audio = data.T  # (channels, time)
    if not np.isfinite(audio).all():
        raise AudioLoadError(f"{name}: contains NaN or infinite samples")
    if mono:
        audio = audio.mean(axis=0)
    if target_sr is not None and target_sr != sr:
        audio = resample(torch.from_numpy(np.ascontiguousarray(audio)), sr, target_sr).numpy()
        sr = target_sr
    return np.ascontiguousarray(audio, dtype=np.float32), sr


def save_wav(
    path: str | os.PathLike, audio: np.ndarray | torch.Tensor, sample_rate: int, subtype: str = "PCM_16"
) -> None:
    """Write mono (time,) or (channels, time) audio as a WAV file, clipping to [-1, 1]."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().float().cpu().numpy()
    audio = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    audio = np.clip(audio, -1.0, 1.0)
    if audio.ndim == 2:
        audio = audio.T
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sample_rate, subtype=subtype)
