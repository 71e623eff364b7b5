import numpy as np
import pytest
import scipy.signal
import torch

from lightning_auffusion.audio.resample import resample


@pytest.mark.parametrize("orig,new", [(48000, 16000), (44100, 16000), (22050, 16000), (8000, 16000), (16000, 22050)])
def test_lengths_and_passband_sine(orig, new):
    t = np.arange(orig) / orig  # one second
    x = np.sin(2 * np.pi * 440.0 * t)
    y = resample(torch.from_numpy(x), orig, new).numpy()
    assert y.shape == (int(np.ceil(orig * new / orig)),)
    expected = np.sin(2 * np.pi * 440.0 * np.arange(y.size) / new)
    middle = slice(200, -200)
    assert np.abs(y[middle] - expected[middle]).max() < 1e-3


def test_matches_scipy_polyphase_resampler():
    rng = np.random.default_rng(0)
    # noise band-limited well below the new Nyquist, where both resamplers must agree
    sos = scipy.signal.butter(10, 6000, fs=44100, output="sos")
    x = np.ascontiguousarray(scipy.signal.sosfiltfilt(sos, rng.standard_normal(44100)))
    ours = resample(torch.from_numpy(x), 44100, 16000).numpy()
    ref = scipy.signal.resample_poly(x, 160, 441)
    assert ours.shape == ref.shape
    middle = slice(500, -500)
    rel = np.abs(ours[middle] - ref[middle]).max() / np.abs(ref).max()
    assert rel < 5e-3


def test_stopband_is_attenuated():
    orig, new = 48000, 16000
    t = np.arange(orig) / orig
    alias = np.sin(2 * np.pi * 12000.0 * t)  # above the new Nyquist: must vanish, not fold to 4 kHz
    y = resample(torch.from_numpy(alias), orig, new).numpy()[200:-200]
    assert np.sqrt(np.mean(y**2)) < 1e-4


def test_batched_identity_and_dtype():
    x = torch.randn(3, 2, 4800)
    y = resample(x, 48000, 16000)
    assert y.shape == (3, 2, 1600)
    torch.testing.assert_close(y[1, 0], resample(x[1, 0], 48000, 16000))
    assert resample(x, 16000, 16000) is x
    with pytest.raises(ValueError):
        resample(x, 0, 16000)
