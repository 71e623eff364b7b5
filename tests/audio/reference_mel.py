"""An independent float64 numpy/scipy implementation of Auffusion's log-mel, used only as a test oracle."""

import numpy as np
import scipy.signal


def slaney_hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    return np.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + 27.0 * np.log(f / 1000.0 + 1e-300) / np.log(6.4))


def slaney_mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * 6.4 ** ((m - 15.0) / 27.0))


def reference_filterbank(sr, n_fft, n_mels, fmin, fmax):
    bins = np.arange(n_fft // 2 + 1) * sr / n_fft
    points = slaney_mel_to_hz(np.linspace(slaney_hz_to_mel(fmin), slaney_hz_to_mel(fmax), n_mels + 2))
    fb = np.zeros((n_mels, bins.size))
    for m in range(n_mels):
        left, centre, right = points[m], points[m + 1], points[m + 2]
        up = (bins - left) / (centre - left)
        down = (right - bins) / (right - centre)
        fb[m] = np.clip(np.minimum(up, down), 0.0, None) * 2.0 / (right - left)
    return fb


def reference_log_mel(x, sr=16000, n_fft=2048, win=1024, hop=160, n_mels=256, fmin=0.0, fmax=8000.0, clip=1e-5):
    x = np.asarray(x, dtype=np.float64)
    pad = (n_fft - hop) // 2
    x = np.pad(x, (pad, pad), mode="reflect")
    window = np.zeros(n_fft)
    start = (n_fft - win) // 2
    window[start : start + win] = scipy.signal.get_window("hann", win, fftbins=True)
    n_frames = 1 + (x.size - n_fft) // hop
    frames = np.stack([x[i * hop : i * hop + n_fft] for i in range(n_frames)])
    spec = np.fft.rfft(frames * window, axis=1).T
    mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    mel = reference_filterbank(sr, n_fft, n_mels, fmin, fmax) @ mag
    return np.log(np.maximum(mel, clip))
