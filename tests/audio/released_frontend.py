"""Test oracle: the released Auffusion wav -> spectrogram-image path, step by step, with the same
libraries and dtypes the released ``converter.py`` and notebooks use (scipy, librosa, float32 torch).

Only the tests import this; it is written from the released steps, not from our front end:

1. ``scipy.io.wavfile.read`` gives int16 samples; dividing by 32768.0 makes them float64.
2. ``librosa.util.normalize`` (peak to 1, in float64), times 0.95, then ``torch.FloatTensor``.
3. Reflect-pad (n_fft - hop) / 2, ``torch.stft`` (center=False) with ``torch.hann_window(win)``.
4. ``sqrt(re^2 + im^2 + 1e-9)`` via ``view_as_real``, ``librosa.filters.mel`` cast to float32, a plain
   ``torch.matmul``, ``log(clamp(., 1e-5))``.
5. Image: ``(logmel - ln 1e-5) / (ln 200 - ln 1e-5)``, three channels, mel axis flipped, padded with 0
   to the clip length, then ``2x - 1`` for the VAE.
"""

import numpy as np
import scipy.io.wavfile
import torch

N_FFT, WIN, HOP, N_MELS, SR, F_MAX = 2048, 1024, 160, 256, 16000, 8000


def read_int16(path):
    rate, samples = scipy.io.wavfile.read(str(path))
    assert samples.dtype == np.int16 and rate == SR, (samples.dtype, rate)
    return samples


def released_waveform(samples):
    """int16 samples -> the float32 (1, time) tensor the released converter feeds to its STFT."""
    import librosa.util

    scaled = samples / 32768.0  # float64
    peaked = librosa.util.normalize(scaled) * 0.95
    return torch.FloatTensor(peaked)[None]


def released_log_mel(waveform):
    import librosa.filters

    basis = torch.from_numpy(librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS, fmin=0, fmax=F_MAX)).float()
    side = (N_FFT - HOP) // 2
    padded = torch.nn.functional.pad(waveform[:, None], (side, side), mode="reflect")[:, 0]
    stft = torch.stft(
        padded,
        N_FFT,
        hop_length=HOP,
        win_length=WIN,
        window=torch.hann_window(WIN),
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    magnitude = torch.sqrt(torch.view_as_real(stft).pow(2).sum(-1) + 1e-9)
    return torch.log(torch.clamp(torch.matmul(basis, magnitude), min=1e-5))


def released_unit_image(log_mel, n_frames=None):
    """(1, mels, frames) log-mel -> (3, mels, n_frames) image in [0, 1], as ``normalize_spectrogram``
    and ``pad_spec`` (pad value 0) produce it."""
    lo, hi = np.log(1e-5), np.log(200.0)
    unit = torch.flip(((log_mel - lo) / (hi - lo)).repeat(3, 1, 1), [1])
    if n_frames is not None and unit.shape[-1] < n_frames:
        unit = torch.nn.functional.pad(unit, (0, n_frames - unit.shape[-1]), value=0)
    return unit[..., :n_frames] if n_frames is not None else unit
