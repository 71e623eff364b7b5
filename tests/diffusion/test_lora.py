"""LoRA fine-tuning of the tiny U-Net: the loss falls, the base stays bit-identical, checkpoints hold the
adapter (plus a random base), and the diffusers-format export reads back with equal outputs."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

from lightning_auffusion.diffusion.lora import LORA_WEIGHT_NAME, LoRAConfig, export_lora, is_lora_key, load_lora  # noqa: E402
from lightning_auffusion.diffusion.module import AuffusionLDM  # noqa: E402
from lightning_auffusion.errors import UserInputError  # noqa: E402
from tests.helpers import (  # noqa: E402
    overfit_losses,
    save_tiny_checkpoint,
    single_torch_thread,  # noqa: F401 (fixture)
    tiny_ldm,
    tiny_unet_config,
    tone_batch,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")
LORA = {"rank": 4, "alpha": 8, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}


def _base(model: AuffusionLDM) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.unet.state_dict().items() if not is_lora_key(k)}


def _unet_output(unet, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 16, 16, generator=g)
    cond = torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([10, 500]), encoder_hidden_states=cond).sample


def test_only_adapters_train_the_loss_falls_and_the_base_is_bit_identical():
    model = tiny_ldm(lora=LORA, learning_rate=1e-2, train_adapters=False)
    before = _base(model)
    params = model.trainable_parameters()
    names = {id(p): n for n, p in model.named_parameters()}
    assert params and all(is_lora_key(names[id(p)]) for p in params)
    assert all(not p.requires_grad for n, p in model.unet.named_parameters() if not is_lora_key(n))
    start, end = overfit_losses(model, tone_batch(4))
    assert end < 0.8 * start, (start, end)
    after = _base(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_checkpoint_holds_the_adapter_and_a_random_base_and_loads_back(tmp_path):
    model = tiny_ldm(lora=LORA, learning_rate=1e-2)
    path = tmp_path / "lora.ckpt"
    save_tiny_checkpoint(model, path)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert any(is_lora_key(k) for k in state)
    assert any(k.startswith("unet.") and not is_lora_key(k) for k in state)  # a dict (random) base is kept
    loaded = AuffusionLDM.load_from_checkpoint(path)
    assert loaded.hparams.lora["rank"] == 4
    assert torch.equal(_unet_output(loaded.unet), _unet_output(model.unet))


def test_checkpoint_of_a_base_from_a_folder_keeps_only_the_adapter(tmp_path):
    base = tiny_ldm(seed=5)
    base.unet.save_pretrained(tmp_path / "base_unet")
    model = tiny_ldm(unet=str(tmp_path / "base_unet"), lora=LORA)
    with torch.no_grad():
        for name, p in model.unet.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a trained-looking adapter (lora_B starts at zero)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    assert not any(k.startswith("unet.") and not is_lora_key(k) for k in checkpoint["state_dict"])
    fresh = tiny_ldm(unet=str(tmp_path / "base_unet"), lora=LORA, seed=9)
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"])
    assert torch.equal(_unet_output(fresh.unet), _unet_output(model.unet))


def test_diffusers_format_export_reads_back_with_equal_outputs(tmp_path):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    model = tiny_ldm(lora=LORA)
    with torch.no_grad():
        for name, p in model.unet.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    trained = _unet_output(model.unet)
    path = export_lora(model.unet, str(tmp_path / "lora"))
    assert path.endswith(LORA_WEIGHT_NAME)
    keys = load_file(path).keys()
    assert keys and all(k.startswith("unet.") and (".lora.down." in k or ".lora.up." in k) for k in keys)

    torch.manual_seed(0)  # the tiny base, rebuilt; diffusers' own loader reads the file (not fused)
    unet = UNet2DConditionModel.from_config(tiny_unet_config())
    unet.load_state_dict(_base_weights(model))
    assert not torch.allclose(_unet_output(unet), trained)
    unet.load_lora_adapter(path, prefix="unet")
    torch.testing.assert_close(_unet_output(unet), trained, rtol=1e-5, atol=1e-5)

    fused = UNet2DConditionModel.from_config(tiny_unet_config())  # ours: loaded and fused into the weights
    fused.load_state_dict(_base_weights(model))
    load_lora(fused, str(tmp_path / "lora"))
    assert not any(is_lora_key(k) for k in fused.state_dict())
    torch.testing.assert_close(_unet_output(fused), trained, rtol=1e-4, atol=1e-5)


def _base_weights(model: AuffusionLDM) -> dict[str, torch.Tensor]:
    return {k.replace(".base_layer", ""): v for k, v in model.unet.state_dict().items() if not is_lora_key(k)}


def test_a_stable_diffusion_pipeline_loads_the_export(tmp_path):
    from diffusers import StableDiffusionPipeline

    model = tiny_ldm(lora=LORA)
    path = export_lora(model.unet, str(tmp_path / "lora"))
    unet_lora, _ = StableDiffusionPipeline.lora_state_dict(path)
    assert set(unet_lora) == {f"unet.{k}" for k in _diffusers_keys(model)}


def _diffusers_keys(model: AuffusionLDM) -> set[str]:
    from lightning_auffusion.diffusion.lora import lora_state_dict

    return set(lora_state_dict(model.unet))


@pytest.mark.parametrize(
    ("lora", "match"),
    [
        ({"rank": 0}, "rank"),
        ({"target_modules": []}, "target_modules"),
        ({"target_modules": ["nope"]}, "matched no"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_lora_settings_fail_in_one_line(lora, match):
    with pytest.raises(UserInputError, match=match):
        tiny_ldm(lora=lora)


def test_lora_with_ema_is_refused():
    with pytest.raises(UserInputError, match="use_ema"):
        tiny_ldm(lora=LoRAConfig(), use_ema=True)


def test_missing_lora_file_is_one_line(tmp_path):
    from diffusers import UNet2DConditionModel

    with pytest.raises(FileNotFoundError, match="export-lora"):
        load_lora(UNet2DConditionModel.from_config(tiny_unet_config()), str(tmp_path))


def test_export_lora_command_and_generate_lora_apply_the_adapter(tmp_path):
    from lightning_auffusion.cli import main
    from lightning_auffusion.diffusion.interop import export_released
    from lightning_auffusion.diffusion.loading import ModelSource

    base = tiny_ldm().eval()
    layout = export_released(base, tmp_path / "layout")  # the released layout of the (random) base
    model = tiny_ldm(unet=str(layout), lora=LORA).eval()
    with torch.no_grad():
        for name, p in model.unet.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    ckpt = save_tiny_checkpoint(model, tmp_path / "lora.ckpt", steps=0)
    path = main(["export-lora", "--checkpoint", ckpt, "--output_dir", str(tmp_path / "adapter")])
    assert path.endswith(LORA_WEIGHT_NAME)
    plain = ModelSource(pretrained=str(layout), device="cpu").load()
    tuned = ModelSource(pretrained=str(layout), lora=str(tmp_path / "adapter"), device="cpu").load()
    assert not torch.allclose(_unet_output(plain.unet), _unet_output(model.unet))
    torch.testing.assert_close(_unet_output(tuned.unet), _unet_output(model.unet), rtol=1e-4, atol=1e-5)
    # the released-layout export of a LoRA run holds the merged U-Net
    merged = export_released(model, tmp_path / "merged")
    again = ModelSource(pretrained=str(merged), device="cpu").load()
    torch.testing.assert_close(_unet_output(again.unet), _unet_output(model.unet), rtol=1e-4, atol=1e-5)
    with pytest.raises(UserInputError, match="not trained with LoRA"):
        main(
            [
                "export-lora",
                "--checkpoint",
                save_tiny_checkpoint(base, tmp_path / "full.ckpt", steps=0),
                "--output_dir",
                str(tmp_path / "x"),
            ]
        )


def test_adamw8bit_without_bitsandbytes_is_one_line(monkeypatch):
    import sys

    from lightning_auffusion.diffusion.low_memory import AdamW8bit

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ImportError, match="pip install 'lightning-auffusion\\[low-memory\\]'"):
        AdamW8bit([torch.nn.Parameter(torch.zeros(2))])
