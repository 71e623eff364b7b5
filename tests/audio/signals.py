"""Test signals: synthetic mixtures and, where espeak-ng is installed, real speech."""

import shutil
import subprocess

import numpy as np
import soundfile as sf


def synthetic_mixture(seconds=3.0, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sign(np.sin(2 * np.pi * 97 * t))
    brown = np.cumsum(rng.standard_normal(t.size))
    brown = brown / np.abs(brown).max() * 0.2
    gate = (np.sin(2 * np.pi * 3 * t) > 0).astype(float)
    x = tone * gate + brown + 0.01 * rng.standard_normal(t.size)
    return (x / np.abs(x).max() * 0.95).astype(np.float32)


def espeak_speech(tmp_path, text="The quick brown fox jumps over the lazy dog near the river bank.", sr=None):
    """Real speech synthesised by espeak-ng (22.05 kHz), or None when espeak-ng is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    path = tmp_path / "speech.wav"
    subprocess.run([exe, "-w", str(path), text], check=True, capture_output=True)
    audio, rate = sf.read(str(path), dtype="float32")
    return audio, rate
