"""Cnn14, VGGish and CLAP extractors: front ends against numpy, checkpoint layouts, batching."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import scipy.signal
import torch
from torch import nn

from lightning_auffusion.metrics.extractors import weights as W
from lightning_auffusion.metrics.extractors.cnn14 import (
    Cnn14,
    Cnn14Config,
    Cnn14Extractor,
    Cnn14LogMel,
    load_cnn14,
    prepare_cnn14_audio,
)
from lightning_auffusion.metrics.extractors.vggish import (
    VGGishConfig,
    VGGishFrontEnd,
    load_vggish,
    prepare_vggish_audio,
)


def compact(state: dict) -> dict:
    """Each tensor as a stride-0 view of its first element: real shapes, a file of a few kB."""
    return {k: v.reshape(-1)[:1].clone().expand(v.shape) if v.dim() else v.clone() for k, v in state.items()}


def pin_checksum(monkeypatch, key: str, path) -> None:
    """Publish the md5 of a locally made file, so loading runs through checksum verification."""
    digest = hashlib.md5(open(path, "rb").read()).hexdigest()
    monkeypatch.setitem(W.WEIGHT_FILES, key, dataclasses.replace(W.WEIGHT_FILES[key], md5=digest, sha256=None))


# ------------------------------------------------------------------------------------------ Cnn14
def numpy_panns_logmel(x: np.ndarray) -> np.ndarray:
    """PANNs' front end in numpy: centred reflect-padded frames, periodic Hann, power, librosa mel, dB."""
    librosa = pytest.importorskip("librosa")
    n_fft, hop = 512, 160
    padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[i * hop : i * hop + n_fft] for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames * scipy.signal.get_window("hann", n_fft, fftbins=True))) ** 2
    mel = power @ librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=64, fmin=50, fmax=8000).T
    return 10 * np.log10(np.maximum(mel, 1e-10))


def test_cnn14_front_end_matches_numpy():
    x = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    ours = Cnn14LogMel(Cnn14Config())(torch.from_numpy(x)[None])[0, 0].double().numpy()
    ref = numpy_panns_logmel(x)
    assert ours.shape == ref.shape == (101, 64)
    assert np.abs(ours - ref).max() < 1e-3  # dB, float32 STFT


class _PannsConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)


class _PannsReferenceShape(nn.Module):
    """Parameter layout of PANNs' Cnn14 checkpoint, torchlibrosa front-end matrices included."""

    def __init__(self) -> None:
        super().__init__()
        self.spectrogram_extractor = nn.Module()
        self.spectrogram_extractor.stft = nn.Module()
        self.spectrogram_extractor.stft.conv_real = nn.Conv1d(1, 257, 512, bias=False)
        self.spectrogram_extractor.stft.conv_imag = nn.Conv1d(1, 257, 512, bias=False)
        self.logmel_extractor = nn.Module()
        self.logmel_extractor.melW = nn.Parameter(torch.zeros(257, 64))
        self.bn0 = nn.BatchNorm2d(64)
        for i, (cin, cout) in enumerate([(1, 64), (64, 128), (128, 256), (256, 512), (512, 1024), (1024, 2048)], 1):
            setattr(self, f"conv_block{i}", _PannsConvBlock(cin, cout))
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, 527)


def test_cnn14_loads_a_panns_checkpoint_strictly(tmp_path, monkeypatch):
    """Strict load of PANNs' names; only the documented front-end matrices are dropped."""
    torch.manual_seed(0)
    reference = _PannsReferenceShape()
    with torch.no_grad():
        reference.bn0.running_mean.normal_()
    state = reference.state_dict()
    assert {k for k in state if k.startswith(("spectrogram_extractor.", "logmel_extractor."))} == {
        "spectrogram_extractor.stft.conv_real.weight",
        "spectrogram_extractor.stft.conv_imag.weight",
        "logmel_extractor.melW",
    }
    model = Cnn14()
    model.load_panns_state_dict(state)
    assert torch.equal(model.conv_block6.conv2.weight, reference.conv_block6.conv2.weight)
    assert torch.equal(model.bn0.running_mean, reference.bn0.running_mean)
    bad = {k: v for k, v in state.items() if not k.startswith("fc_audioset")}
    with pytest.raises(RuntimeError, match="fc_audioset"):
        Cnn14().load_panns_state_dict(bad)
    path = tmp_path / "Cnn14_16k_mAP=0.438.pth"  # the file route: {"model": state_dict}, checksum verified
    torch.save({"iteration": 0, "model": compact(state)}, path)
    pin_checksum(monkeypatch, "cnn14_16k", path)
    loaded, status = load_cnn14(weights_dir=tmp_path)
    assert status.pretrained and status.path == str(path) and not loaded.training
    assert torch.equal(loaded.fc1.weight, compact(state)["fc1.weight"])


def test_cnn14_outputs_and_batched_extraction_equal_per_clip():
    torch.manual_seed(0)
    model = Cnn14().eval()
    rng = np.random.default_rng(1)
    clips = [prepare_cnn14_audio(rng.normal(0, 0.1, n).astype(np.float32), 16000) for n in (16000, 40000, 40000)]
    assert clips[0].shape == (32000,)  # padded to 2 s
    out = Cnn14Extractor(model, batch_size=2)(clips)
    assert out["embedding"].shape == (3, 2048) and out["logits"].shape == (3, 527)
    assert float(out["embedding"].min()) >= 0.0  # post-ReLU
    with torch.no_grad():
        single = model(clips[2][None])
        assert torch.allclose(out["logits"][2], single["logits"][0], atol=1e-4)
        assert torch.allclose(model.fc_audioset(single["embedding"]), single["logits"], atol=1e-5)


def test_cnn14_audio_preparation_takes_channel_zero_and_removes_the_mean():
    stereo = np.stack([np.full(48000, 0.5), np.full(48000, -0.25)]).astype(np.float32)
    stereo[0, :100] = 1.0
    x = prepare_cnn14_audio(stereo, 16000)
    assert x.shape == (48000,) and abs(float(x.mean())) < 1e-6
    assert float(x[0]) == pytest.approx(1.0 - float(stereo[0].mean()), abs=1e-6)
    assert prepare_cnn14_audio(np.zeros(44100, np.float32), 44100).shape == (32000,)


# ------------------------------------------------------------------------------------------ VGGish
def numpy_vggish_examples(x: np.ndarray) -> np.ndarray:
    """The reference pipeline (mel_features.py) written out in numpy."""
    win, hop, nfft = 400, 160, 512
    n_frames = 1 + (len(x) - win) // hop
    frames = np.stack([x[i * hop : i * hop + win] for i in range(n_frames)]).astype(np.float64)
    window = 0.5 - 0.5 * np.cos(2 * np.pi / win * np.arange(win))
    spec = np.abs(np.fft.rfft(frames * window, nfft))
    to_mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    bins = to_mel(np.linspace(0, 8000, nfft // 2 + 1))
    edges = np.linspace(to_mel(125.0), to_mel(7500.0), 66)
    matrix = np.empty((nfft // 2 + 1, 64))
    for i in range(64):
        lo, mid, hi = edges[i : i + 3]
        matrix[:, i] = np.maximum(0.0, np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)))
    matrix[0, :] = 0.0
    log_mel = np.log(spec @ matrix + 0.01)
    n_ex = 1 + (len(log_mel) - 96) // 96
    return np.stack([log_mel[i * 96 : (i + 1) * 96] for i in range(n_ex)])


def test_vggish_front_end_matches_numpy_and_counts_examples():
    x = np.random.default_rng(2).normal(0, 0.2, 16000 * 3).astype(np.float32)
    ours = VGGishFrontEnd(VGGishConfig())(torch.from_numpy(x)[None])[0].numpy()
    ref = numpy_vggish_examples(x)
    assert ours.shape == ref.shape == (3, 96, 64)
    assert np.abs(ours - ref).max() < 1e-9
    front = VGGishFrontEnd(VGGishConfig())
    assert front.num_examples(160000) == 10 and front.num_examples(15000) == 0


def test_vggish_loads_torchvggish_names_strictly(tmp_path, monkeypatch):
    layers = [
        nn.Conv2d(1, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(128, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(256, 512, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(512, 512, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
    ]
    reference = nn.Module()
    reference.features = nn.Sequential(*layers)
    reference.embeddings = nn.Sequential(
        nn.Linear(12288, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 128), nn.ReLU()
    )
    path = tmp_path / "vggish-10086976.pth"
    torch.save(compact(reference.state_dict()), path)
    pin_checksum(monkeypatch, "vggish", path)
    model, status = load_vggish(weights_dir=tmp_path)
    assert status.pretrained
    assert torch.equal(model.embeddings[4].weight, compact(reference.state_dict())["embeddings.4.weight"])
    model.load_state_dict(reference.state_dict(), strict=True)
    examples = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        out = model(examples)
    assert out.shape == (2, 128) and float(out.min()) < 0  # no final ReLU
    mono = prepare_vggish_audio(np.stack([np.ones(100), -np.ones(100)]).astype(np.float32), 16000)
    assert float(mono.abs().max()) == 0.0  # channels averaged


# ------------------------------------------------------------------------------------------ CLAP
def test_clap_loads_a_saved_model_folder(tmp_path, tiny_clap):
    from lightning_auffusion.metrics.extractors.clap import load_clap, prepare_clap_audio

    folder = tmp_path / "clap-htsat-unfused"
    tiny_clap.model.save_pretrained(folder)
    tiny_clap.tokenizer.save_pretrained(folder)
    tiny_clap.feature_extractor.save_pretrained(folder)
    embedder, status = load_clap(weights_dir=tmp_path)
    assert status.pretrained and status.path == str(folder)
    clip = [prepare_clap_audio(torch.randn(24000) * 0.1, 48000)]
    assert torch.allclose(embedder.audio_embeddings(clip), tiny_clap.audio_embeddings(clip), atol=1e-5)
    assert torch.allclose(embedder.text_embeddings(["a bell"]), tiny_clap.text_embeddings(["a bell"]), atol=1e-5)
