"""Interop: released Auffusion layout round trip, other condition-config forms, SD-1.5 layouts, the export command."""

from __future__ import annotations

import json

import pytest
import torch

from lightning_auffusion.diffusion.interop import (
    export,
    export_released,
    ldm_from_released,
    ldm_from_sd15,
    load_adapter,
    load_released,
    read_condition_config,
)
from lightning_auffusion.diffusion.pipeline import AuffusionPipeline
from lightning_auffusion.diffusion.sampling import generate
from tests.diffusion.test_sampling import single_thread, tiny_vocoder  # noqa: F401 (autouse fixture)
from tests.helpers import (
    TEST_CAPTIONS,
    save_tiny_checkpoint,
    tiny_ldm,
    tiny_tokenizer_dir,
    tiny_unet_config,
    tiny_vae_config,
)

SAMPLE = dict(num_inference_steps=3, duration_seconds=0.5, seed=4)
RELEASED_ARCHITECTURES = {
    "CLIPTextModel",
    "T5EncoderModel",
    "ClapTextModelWithProjection",
}  # the released loader's classes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CLIP + T5 model whose EMA differs from its weights, with a vocoder loaded from a path."""
    from lightning_auffusion.vocoder.checkpoint import save_auffusion_vocoder

    vocoder_dir = tmp_path_factory.mktemp("vocoder")
    save_auffusion_vocoder(tiny_vocoder(), vocoder_dir)
    model = tiny_ldm(kinds=("clip", "t5"), use_ema=True, vocoder=str(vocoder_dir))
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for adapter in model.conditioner.adapters:
            adapter.norm.weight.mul_(1.5)
    model.vae.register_to_config(scaling_factor=0.3)
    model.vae_scaling_factor = 0.3
    return model.eval()


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    return export_released(trained, tmp_path_factory.mktemp("released"))


def test_layout_matches_released_files(exported):
    for part in (
        "unet",
        "vae",
        "scheduler",
        "vocoder",
        "feature_extractor",
        "text_encoder_0",
        "text_encoder_1",
        "condition_adapter_0",
        "condition_adapter_1",
    ):
        assert (exported / part).is_dir(), part
    entries = json.loads((exported / "condition_config.json").read_text())
    assert isinstance(entries, list) and len(entries) == 2
    for i, entry in enumerate(entries):
        assert (
            entry["text_encoder_name"] == f"text_encoder_{i}"
            and entry["condition_adapter_name"] == f"condition_adapter_{i}"
        )
        assert entry["condition_max_length"] == 77 and entry["cross_attention_dim"] == 32
        assert "token_position_channels" not in entry  # only written when an encoder has them
        config = json.loads((exported / f"text_encoder_{i}" / "config.json").read_text())
        assert config["architectures"][0] in RELEASED_ARCHITECTURES
        adapter_config = json.loads((exported / f"condition_adapter_{i}" / "config.json").read_text())
        assert adapter_config["condition_dim"] == entry["condition_dim"] and adapter_config["cross_attention_dim"] == 32
        state = torch.load(exported / f"condition_adapter_{i}" / "condition_adapter.pt", weights_only=True)
        assert set(state) == {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}
    assert [e["model_type"] for e in entries] == ["clip", "t5"]
    scheduler = json.loads((exported / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "PNDMScheduler" and scheduler["skip_prk_steps"] is True
    assert json.loads((exported / "vae" / "config.json").read_text())["scaling_factor"] == 0.3
    assert "generator" in torch.load(exported / "vocoder" / "vocoder.pt", weights_only=True)


def test_released_round_trip_reproduces_every_part(trained, exported):
    source = AuffusionPipeline.from_module(trained, use_ema=True)
    loaded = load_released(exported)
    assert loaded.vae_scaling_factor == pytest.approx(0.3)
    assert type(loaded.scheduler).__name__ == "PNDMScheduler"
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    context = torch.randn(2, 154, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.unet(latents, 10, encoder_hidden_states=context).sample,
            source.unet(latents, 10, encoder_hidden_states=context).sample,
            rtol=0,
            atol=0,
        )
        torch.testing.assert_close(loaded.vae.decode(latents).sample, source.vae.decode(latents).sample, rtol=0, atol=0)
        torch.testing.assert_close(loaded.conditioner(TEST_CAPTIONS), source.conditioner(TEST_CAPTIONS), rtol=0, atol=0)
        for a, b in zip(loaded.conditioner.adapters, source.conditioner.adapters):
            hidden = torch.randn(3, 77, a.proj.in_features)
            torch.testing.assert_close(a(hidden), b(hidden), rtol=0, atol=0)
    assert loaded.frontend.mel_config == source.frontend.mel_config and loaded.frontend.n_frames == 64
    expected = generate(source, TEST_CAPTIONS[:2], **SAMPLE)
    got = generate(loaded, TEST_CAPTIONS[:2], **SAMPLE)
    torch.testing.assert_close(got.latents, expected.latents, rtol=0, atol=0)
    torch.testing.assert_close(got.audio, expected.audio, rtol=0, atol=1e-6)
    # the exported U-Net is the EMA one, not the training weights
    raw = AuffusionPipeline.from_module(trained, use_ema=False)
    assert not torch.equal(next(raw.unet.parameters()), next(loaded.unet.parameters()))


def test_ldm_from_released_starts_training_from_the_layout(trained, exported):
    module = ldm_from_released(exported, learning_rate=1e-4)
    assert module.hparams.learning_rate == 1e-4 and module.vocoder is not None
    assert [s.kind for s in module.conditioner.specs] == ["clip", "t5"]
    assert all(s.dropout == 0.1 for s in module.conditioner.specs)
    expected = generate(AuffusionPipeline.from_module(trained, use_ema=True), TEST_CAPTIONS[:1], **SAMPLE)
    torch.testing.assert_close(generate(module, TEST_CAPTIONS[:1], **SAMPLE).latents, expected.latents, rtol=0, atol=0)


def test_object_form_condition_config_and_inferred_kinds(exported, tmp_path):
    import shutil

    copy_dir = tmp_path / "object_form"
    shutil.copytree(exported, copy_dir)
    entries = json.loads((copy_dir / "condition_config.json").read_text())
    listing = [
        {
            "text_encoder_path": e["text_encoder_name"],
            "condition_adapter_path": e["condition_adapter_name"],
            "max_length": 77,
        }
        for e in entries
    ]  # no model_type: read from the encoders' configs
    (copy_dir / "condition_config.json").write_text(
        json.dumps({"text_encoder_list": listing, "cross_attention_dim": 32})
    )
    for i, entry in enumerate(entries):
        (copy_dir / f"condition_adapter_{i}" / "config.json").write_text(
            json.dumps({"input_dim": entry["condition_dim"], "output_dim": 32})
        )
    assert [e["kind"] for e in read_condition_config(copy_dir)] == ["clip", "t5"]
    a, b = load_released(copy_dir), load_released(exported)
    torch.testing.assert_close(a.conditioner(TEST_CAPTIONS), b.conditioner(TEST_CAPTIONS), rtol=0, atol=0)


def test_layout_errors_name_the_missing_piece(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="no unet/ folder"):
        load_released(tmp_path)
    loaded = load_released(exported)
    wrong = torch.nn.Sequential(torch.nn.Linear(5, 32), torch.nn.LayerNorm(32))
    with pytest.raises(ValueError, match="adapter maps 32 -> 32 but the model's adapter maps 5 -> 32"):
        load_adapter(wrong, exported / "condition_adapter_0")
    assert loaded.vocoder is not None


def _write_sd15_layout(root):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    from lightning_auffusion.diffusion.schedulers import make_scheduler
    from tests.helpers import tiny_encoder_config

    torch.manual_seed(7)
    UNet2DConditionModel.from_config(tiny_unet_config()).save_pretrained(root / "unet")
    AutoencoderKL.from_config(tiny_vae_config()).save_pretrained(root / "vae")
    CLIPTextModel(CLIPTextConfig(**tiny_encoder_config("clip"))).save_pretrained(root / "text_encoder")
    AutoTokenizer.from_pretrained(tiny_tokenizer_dir("clip")).save_pretrained(root / "tokenizer")
    make_scheduler("pndm").save_pretrained(root / "scheduler")


def test_ldm_from_plain_sd15_layout(tmp_path):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from tests.helpers import tiny_frontend_kwargs

    _write_sd15_layout(tmp_path)
    module = ldm_from_sd15(tmp_path, identity_adapter=True, **tiny_frontend_kwargs())
    reference = UNet2DConditionModel.from_pretrained(tmp_path, subfolder="unet").state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in module.unet.state_dict().items())
    text = CLIPTextModel.from_pretrained(tmp_path / "text_encoder").state_dict()
    assert all(torch.equal(v, text[k]) for k, v in module.conditioner.encoders[0].state_dict().items())
    assert module.conditioner.specs[0].kind == "clip"
    torch.testing.assert_close(module.conditioner.adapters[0].proj.weight, torch.eye(32))
    assert module.noise_scheduler.config.beta_schedule == "scaled_linear"
    out = generate(module, TEST_CAPTIONS[:1], num_inference_steps=2, duration_seconds=0.5)
    assert out.audio.shape == (1, 8000) and torch.isfinite(out.audio).all()
    with pytest.raises(FileNotFoundError, match="not a Stable Diffusion layout: no unet/ folder"):
        ldm_from_sd15(tmp_path / "unet")


def test_export_command_from_a_lightning_checkpoint(tmp_path):
    from lightning_auffusion.cli import run_subcommand
    from lightning_auffusion.vocoder.checkpoint import save_auffusion_vocoder

    save_auffusion_vocoder(tiny_vocoder(), tmp_path / "voc")
    model = tiny_ldm(use_ema=True, learning_rate=1e-3, vocoder=str(tmp_path / "voc"))
    ckpt = tmp_path / "ldm.ckpt"
    save_tiny_checkpoint(model, ckpt)
    out = run_subcommand("export", ["--checkpoint", str(ckpt), "--output_dir", str(tmp_path / "out")])
    assert out == str(tmp_path / "out")
    loaded = load_released(out)
    model.eval()
    with model.ema_weights():
        expected = generate(AuffusionPipeline.from_module(model, use_ema=False), TEST_CAPTIONS[:1], **SAMPLE)
    torch.testing.assert_close(generate(loaded, TEST_CAPTIONS[:1], **SAMPLE).latents, expected.latents, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="checkpoint .* not found"):
        export(str(tmp_path / "missing.ckpt"))


def test_token_position_channels_survive_the_layout_round_trip(tmp_path):
    from tests.helpers import tiny_spec

    model = tiny_ldm(encoders=[tiny_spec("t5", token_position_channels=4)]).eval()
    out = export_released(model, tmp_path / "layout")
    entry = json.loads((out / "condition_config.json").read_text())[0]
    adapter_config = json.loads((out / "condition_adapter_0" / "config.json").read_text())
    width = model.conditioner.condition_dims[0]
    assert entry["token_position_channels"] == 4 and adapter_config["condition_dim"] == width + 4
    loaded = load_released(out)
    assert loaded.conditioner.specs[0].token_position_channels == 4
    with torch.no_grad():
        torch.testing.assert_close(loaded.conditioner(TEST_CAPTIONS), model.conditioner(TEST_CAPTIONS), rtol=0, atol=0)
