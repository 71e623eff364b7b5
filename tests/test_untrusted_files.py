"""Crafted pickles through every user-facing load path: refused with one line, never executed."""

import json
import os

import pytest
import torch

from lightning_auffusion.errors import UnsafeCheckpointError
from tests.helpers import run_command_line


class _Payload:
    """Unpickling this would create the marker file: the attack a weights_only load must refuse."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture
def crafted(tmp_path):
    """(make(name, content_key) -> path of a torch file whose unpickling creates ``marker``, marker)."""
    marker = tmp_path / "MARKER"

    def make(name, key="state_dict"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({key: _Payload(marker), "pytorch-lightning_version": "2.0", "hyper_parameters": {}}, path)
        return path

    yield make, marker
    assert not marker.exists(), "a crafted pickle was executed"


def _one_line_refusal(monkeypatch, capsys, argv, path):
    code, err = run_command_line(monkeypatch, capsys, argv)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: refused to load") and str(path) in err and "safetensors" in err
    return err


def test_cli_commands_refuse_crafted_pickles(crafted, tmp_path, monkeypatch, capsys):
    make, _ = crafted
    wav_dir = tmp_path / "audio"
    wav_dir.mkdir()
    for argv_of, name in (
        (lambda p: ["export-vocoder", "--checkpoint", str(p), "--out_dir", str(tmp_path / "out")], "voc.ckpt"),
        (lambda p: ["vocode", "--inputs", str(wav_dir), "--vocoder", str(p), "--out_dir", str(tmp_path / "v")], "g_1"),
        (lambda p: ["export-vae", "--checkpoint", str(p), "--output_dir", str(tmp_path / "vae")], "vae.ckpt"),
        (
            lambda p: [
                "generate",
                "--checkpoint",
                str(p),
                "--prompts",
                '["a dog"]',
                "--output_dir",
                str(tmp_path / "g"),
            ],
            "ldm.ckpt",
        ),
        (lambda p: ["export", "--checkpoint", str(p), "--output_dir", str(tmp_path / "e")], "ldm2.ckpt"),
    ):
        path = make(name)
        _one_line_refusal(monkeypatch, capsys, argv_of(path), path)


def test_library_load_paths_refuse_crafted_pickles(crafted, tmp_path):
    from lightning_auffusion.diffusion.interop import _load_vocoder_folder
    from lightning_auffusion.diffusion.module import load_frozen_vocoder
    from lightning_auffusion.diffusion.unet_factory import build_vae
    from lightning_auffusion.metrics.extractors.cnn14 import load_cnn14
    from lightning_auffusion.metrics.extractors.vggish import load_vggish
    from lightning_auffusion.vocoder.checkpoint import load_hifigan_discriminators, load_vocoder

    make, _ = crafted
    layout = tmp_path / "released"
    make("released/vocoder/vocoder.pt", key="generator")
    (layout / "vocoder" / "config.json").write_text(json.dumps({"upsample_rates": [5, 4, 2, 2, 2]}))
    attempts = {
        "generate --vocoder": lambda: load_vocoder(str(make("g_2", key="generator"))),
        "--pretrained layout vocoder/vocoder.pt": lambda: _load_vocoder_folder(layout / "vocoder"),
        "--pretrained model folder": lambda: load_vocoder(str(layout)),
        "LDM config vocoder:": lambda: load_frozen_vocoder(str(make("ldm_vocoder.ckpt"))),
        "LDM config vae: .ckpt": lambda: build_vae(str(make("ldm_vae.ckpt"))),
        "discriminator file": lambda: load_hifigan_discriminators(torch.nn.Module(), torch.nn.Module(), make("do_1")),
        "Cnn14 weights": lambda: load_cnn14(path=make("Cnn14_16k_mAP=0.438.pth", key="model")),
        "VGGish weights": lambda: load_vggish(path=make("vggish-10086976.pth")),
    }
    for what, attempt in attempts.items():
        with pytest.raises(Exception) as info:
            attempt()
        assert (
            isinstance(info.value, UnsafeCheckpointError) or "sha256" in str(info.value) or "md5" in str(info.value)
        ), (what, info.value)
        assert "\n" not in str(info.value), what


def test_condition_adapter_refuses_crafted_pickle(crafted, tmp_path):
    from lightning_auffusion.safe_load import load_weights

    make, _ = crafted
    with pytest.raises(UnsafeCheckpointError, match="condition adapter"):
        load_weights(make("adapter/condition_adapter.pt"), "condition adapter weights")


def test_plain_and_numpy_content_still_loads(tmp_path):
    import numpy as np

    from lightning_auffusion.safe_load import load_weights

    torch.save({"model": {"w": torch.ones(2)}, "iteration": np.int64(3), "stats": np.zeros(2)}, tmp_path / "ok.pt")
    data = load_weights(tmp_path / "ok.pt")
    assert torch.equal(data["model"]["w"], torch.ones(2)) and int(data["iteration"]) == 3
