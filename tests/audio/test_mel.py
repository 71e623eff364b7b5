import numpy as np
import pytest
import torch

from lightning_auffusion.audio import AuffusionFrontend, LogMelSpectrogram, MelConfig, mel_filterbank
from lightning_auffusion.audio.mel import peak_normalize
from lightning_auffusion.audio.resample import resample

from .reference_mel import reference_filterbank, reference_log_mel
from .signals import espeak_speech, synthetic_mixture


def _ours(x, **cfg):
    module = LogMelSpectrogram(MelConfig(**cfg))
    return module(torch.from_numpy(np.asarray(x, dtype=np.float32))[None])[0].double().numpy()


def test_filterbank_matches_independent_slaney_filters():
    ours = mel_filterbank(16000, 2048, 256, 0.0, 8000.0)
    assert ours.shape == (256, 1025)
    np.testing.assert_allclose(ours, reference_filterbank(16000, 2048, 256, 0.0, 8000.0), atol=1e-12)


def test_filterbank_matches_librosa_defaults():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=2048, n_mels=256, fmin=0.0, fmax=8000.0, dtype=np.float64)
    np.testing.assert_allclose(mel_filterbank(16000, 2048, 256, 0.0, 8000.0), ref, atol=1e-10)


def test_log_mel_float64_matches_reference_on_synthetic_audio():
    x = synthetic_mixture()
    ref = reference_log_mel(x)
    ours = _ours(x, dtype="float64")
    assert ours.shape == ref.shape == (256, x.size // 160)
    assert np.abs(ours - ref).max() < 1e-4


def test_log_mel_float64_matches_reference_on_real_speech(tmp_path):
    speech = espeak_speech(tmp_path)
    if speech is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    audio, rate = speech
    x = resample(torch.from_numpy(audio), rate, 16000)
    x = peak_normalize(x, 0.95).numpy()
    ref = reference_log_mel(x)
    ours = _ours(x, dtype="float64")
    assert np.abs(ours - ref).max() < 1e-4
    # the float32 path (as the released code runs) differs only by FFT round-off in low-energy bins
    assert np.abs(_ours(x) - ref).max() < 2e-3


def test_log_mel_at_hifigan_settings_matches_reference():
    x = synthetic_mixture(sr=22050)
    cfg = dict(sample_rate=22050, n_fft=1024, win_length=1024, hop_length=256, n_mels=80)
    ref = reference_log_mel(x, sr=22050, n_fft=1024, win=1024, hop=256, n_mels=80)
    assert np.abs(_ours(x, dtype="float64", **cfg) - ref).max() < 1e-4


def test_frame_counts_and_padding():
    fe = AuffusionFrontend()
    assert fe.waveform_to_logmel(torch.zeros(1, 163840) + 0.1).shape == (1, 256, 1024)
    ten = torch.from_numpy(synthetic_mixture(seconds=10.0))[None]
    assert LogMelSpectrogram()(ten).shape == (1, 256, 1000)
    logmel = fe.waveform_to_logmel(ten)
    assert logmel.shape == (1, 256, 1024)
    assert torch.all(logmel[..., 1000:] == np.log(1e-5))
    image = fe(ten)
    assert image.shape == (1, 3, 256, 1024)
    assert torch.all(image[..., 1000:] == -1.0)  # padding is silence = the image minimum
    longer = torch.from_numpy(synthetic_mixture(seconds=12.0))[None]
    assert fe(longer).shape == (1, 3, 256, 1024)


def test_batched_equals_single_and_peak_normalisation():
    fe = AuffusionFrontend()
    a = torch.from_numpy(synthetic_mixture(seconds=2.0, seed=1))
    b = torch.from_numpy(synthetic_mixture(seconds=2.0, seed=2)) * 0.1
    batch = fe.waveform_to_logmel(torch.stack([a, b]))
    torch.testing.assert_close(batch[1], fe.waveform_to_logmel(b[None])[0])
    # peak normalisation makes a quiet copy identical to the loud one
    torch.testing.assert_close(
        fe.waveform_to_logmel((a * 0.01)[None]), fe.waveform_to_logmel(a[None]), atol=1e-4, rtol=0
    )
    silent = peak_normalize(torch.zeros(1, 100))
    assert torch.all(silent == 0)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="win_length"):
        MelConfig(n_fft=512, win_length=1024)
    with pytest.raises(ValueError, match="mel_scale"):
        MelConfig(mel_scale="bark")


def test_float32_window_is_the_released_converters():
    """The window is torch.hann_window(win) built in float32 (a float64 window rounded differs in the
    last bit). Peak normalisation's parity is tested in test_released_parity.py."""
    module = LogMelSpectrogram(MelConfig())
    assert module.window32.dtype == torch.float32
    assert torch.equal(module.window32, torch.hann_window(MelConfig().win_length))
