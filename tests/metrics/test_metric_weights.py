"""Weight files: the missing-weights error, checksums, offline switch, random fallback, backend choice."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import types

import pytest
import torch

from lightning_auffusion.metrics.extractors import weights as W


def test_missing_file_error_names_the_file_where_it_goes_and_where_to_get_it(tmp_path):
    with pytest.raises(W.MissingWeightsError) as info:
        W.locate_weights("cnn14_16k", weights_dir=tmp_path)
    message = str(info.value)
    assert "Cnn14_16k_mAP=0.438.pth" in message
    assert str(tmp_path / "Cnn14_16k_mAP=0.438.pth") in message
    assert "https://zenodo.org/record/3987831" in message
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("key", ["vggish", "clap_htsat_unfused", "laion_clap_630k_audioset"])
def test_every_registered_file_has_a_clear_missing_error(tmp_path, key):
    entry = W.WEIGHT_FILES[key]
    with pytest.raises(W.MissingWeightsError, match=entry.filename):
        W.locate_weights(key, weights_dir=tmp_path)


def test_weights_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(tmp_path))
    assert W.default_weights_dir() == tmp_path
    assert W.default_weights_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv(W.ENV_WEIGHTS_DIR)
    assert W.default_weights_dir().parts[-3:] == (".cache", "lightning_auffusion", "weights")


def test_checksum_is_verified(tmp_path, monkeypatch):
    path = tmp_path / "vggish-10086976.pth"
    path.write_bytes(b"not the published file")
    with pytest.raises(W.ChecksumError, match="sha256 .* does not start with the published 10086976"):
        W.locate_weights("vggish", weights_dir=tmp_path)
    assert W.locate_weights("vggish", weights_dir=tmp_path, verify=False) == path
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(W.WEIGHT_FILES, "vggish", dataclasses.replace(W.WEIGHT_FILES["vggish"], sha256=good[:8]))
    assert W.locate_weights("vggish", weights_dir=tmp_path) == path
    md5_path = tmp_path / "Cnn14_16k_mAP=0.438.pth"
    md5_path.write_bytes(b"x")
    with pytest.raises(W.ChecksumError, match="md5"):
        W.locate_weights("cnn14_16k", weights_dir=tmp_path)


def test_offline_switch_forbids_downloads(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(W.urllib.request, "urlopen", no_network)
    monkeypatch.setenv(W.ENV_OFFLINE, "1")
    assert W.is_offline()
    with pytest.raises(W.MissingWeightsError, match="offline"):
        W.locate_weights("cnn14_16k", weights_dir=tmp_path, download=True)


def test_download_writes_verified_file(tmp_path, monkeypatch):
    """The online path, with the network replaced by bytes in memory."""
    import io

    payload = b"weights!"
    entry = dataclasses.replace(W.WEIGHT_FILES["vggish"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(W.WEIGHT_FILES, "vggish", entry)
    monkeypatch.setenv(W.ENV_OFFLINE, "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(W.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    path = W.locate_weights("vggish", weights_dir=tmp_path, download=True)
    assert path.read_bytes() == payload
    bad = dataclasses.replace(entry, filename="other.pth", sha256="0" * 64)
    monkeypatch.setitem(W.WEIGHT_FILES, "vggish", bad)
    with pytest.raises(W.ChecksumError):
        W.locate_weights("vggish", weights_dir=tmp_path, download=True)
    assert not (tmp_path / "other.pth").exists()


def test_loaders_refuse_or_fall_back_to_random_weights(tmp_path, caplog):
    from lightning_auffusion.metrics.extractors.cnn14 import load_cnn14

    with pytest.raises(W.MissingWeightsError, match="Cnn14_16k"):
        load_cnn14(weights_dir=tmp_path)
    model, status = load_cnn14(weights_dir=tmp_path, allow_random=True)
    assert not status.pretrained and "RANDOM" in status.describe()
    assert "random weights" in caplog.text and isinstance(model, torch.nn.Module)


def test_clap_without_weights_raises_or_builds_a_random_model(tmp_path, tiny_clap):
    from lightning_auffusion.metrics.extractors import clap

    with pytest.raises(W.MissingWeightsError, match="clap-htsat-unfused"):
        clap.load_clap(weights_dir=tmp_path)

    small = tiny_clap.model.config  # the random fallback in a small size, to keep the test quick
    embedder, status = clap.load_clap(weights_dir=tmp_path, allow_random=True, random_config=small)
    assert not status.pretrained and "stand-in tokenizer" in status.note
    assert embedder.text_embeddings(["a cat"]).shape[0] == 1


def test_clap_backend_choice(tmp_path, monkeypatch):
    from lightning_auffusion.metrics.extractors import laion_clap_backend as lc
    from lightning_auffusion.metrics.suite import build_clap

    class FakeModule:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def load_ckpt(self, path, verbose=False):
            self.path = path

        def eval(self):
            return self

        def get_audio_embedding_from_data(self, x, use_tensor):
            return x[:, :4] + 1.0

        def get_text_embedding(self, texts, use_tensor):
            return torch.ones(len(texts), 4)

    fake = types.ModuleType("laion_clap")
    fake.CLAP_Module = FakeModule
    monkeypatch.setitem(sys.modules, "laion_clap", fake)
    monkeypatch.setattr(lc, "laion_clap_installed", lambda: True)
    assert not lc.laion_clap_available(weights_dir=tmp_path)
    with pytest.raises(W.MissingWeightsError, match="630k-audioset-best.pt"):
        build_clap("laion_clap", tmp_path, False, False, "cpu", 2, "repeatpad")
    (tmp_path / "630k-audioset-best.pt").write_bytes(b"ckpt")
    assert lc.laion_clap_available(weights_dir=tmp_path)
    embedder, status = build_clap("auto", tmp_path, False, False, "cpu", 2, "repeatpad")
    assert embedder.backend == "laion_clap" and status.pretrained
    assert embedder.module.kwargs["enable_fusion"] is False and embedder.module.kwargs["amodel"] == "HTSAT-tiny"
    assert embedder.audio_embeddings([torch.zeros(10)] * 3).shape == (3, 4)
    assert torch.allclose(embedder.text_embeddings(["one"]).norm(dim=-1), torch.ones(1))
    with pytest.raises(ValueError, match="clap_backend"):
        build_clap("other", tmp_path, False, False, "cpu", 2, "repeatpad")
