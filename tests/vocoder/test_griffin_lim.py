import pytest
import torch

from lightning_auffusion.audio import LogMelSpectrogram, MelConfig
from lightning_auffusion.vocoder import GriffinLim, GriffinLimConfig
from lightning_auffusion.vocoder.griffin_lim import griffin_lim
from lightning_auffusion.vocoder.stft_loss import multi_resolution_stft_distance, stft_distance_terms

from .helpers import tone


def test_stft_istft_round_trip_with_front_end_framing():
    gl = GriffinLim(MelConfig())
    audio = torch.randn(2, 4800, generator=torch.Generator().manual_seed(0))
    spec = gl.stft(audio)
    assert spec.shape == (2, 1025, 4800 // 160)  # the same frame count as the log-mel
    assert torch.allclose(gl.istft(spec), audio, atol=1e-4)
    # the magnitude is the front end's (up to its 1e-9 under the square root)
    mag = LogMelSpectrogram(MelConfig()).magnitude(audio).float()
    assert torch.allclose(spec.abs(), mag, atol=1e-3)


def test_output_length_and_quality_improve_with_iterations():
    mel_cfg = MelConfig()
    audio = (tone(8000, 220.0) + 0.5 * tone(8000, 1250.0, harmonics=1))[None] * 0.5
    logmel = LogMelSpectrogram(mel_cfg)(audio)
    distances = []
    for n_iter in (0, 4, 32):
        out = GriffinLim(mel_cfg, GriffinLimConfig(n_iter=n_iter))(logmel)
        assert out.shape == (1, logmel.shape[-1] * mel_cfg.hop_length)
        distances.append(multi_resolution_stft_distance(out, audio).item())
    assert distances[2] < distances[1] < distances[0]
    # magnitudes close to the input's: spectral convergence well under 1 (the log term is dominated by
    # near-empty bins of this synthetic signal, so it is not asserted on)
    sc, _ = stft_distance_terms(out, audio, 1024, 120, 600)
    assert sc.item() < 0.2


def test_seeded_and_functional_form_agree():
    logmel = LogMelSpectrogram(MelConfig())(0.3 * tone(3200, 440.0)[None])
    a = GriffinLim(config=GriffinLimConfig(n_iter=3))(logmel)
    b = griffin_lim(logmel, n_iter=3)
    assert torch.equal(a, b)


def test_other_mel_settings_and_bad_input():
    cfg = MelConfig(sample_rate=22050, n_fft=1024, win_length=1024, hop_length=256, n_mels=80, f_max=8000)
    out = GriffinLim(cfg, GriffinLimConfig(n_iter=2))(torch.full((80, 10), -5.0))
    assert out.shape == (1, 2560)
    with pytest.raises(ValueError, match="log-mel"):
        GriffinLim(cfg)(torch.zeros(1, 256, 10))
    with pytest.raises(ValueError, match="init"):
        GriffinLimConfig(init="spooky")
