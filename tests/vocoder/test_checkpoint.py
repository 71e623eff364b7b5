import json

import pytest
import torch

from lightning_auffusion.vocoder import (
    GeneratorConfig,
    HifiGanGenerator,
    load_hifigan_discriminators,
    load_vocoder,
    save_auffusion_vocoder,
    save_hifigan_discriminators,
    save_hifigan_generator,
)
from lightning_auffusion.vocoder.checkpoint import adapt_state_dict, original_generator_state, to_original_names
from lightning_auffusion.vocoder.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator

from .helpers import tiny_discriminator_config, tiny_generator_config


def _perturbed_generator(cfg: GeneratorConfig) -> HifiGanGenerator:
    torch.manual_seed(0)
    gen = HifiGanGenerator(cfg)
    with torch.no_grad():  # move g away from ||v|| so a lost g would show
        for name, p in gen.named_parameters():
            if name.endswith("original0"):
                p.mul_(1.0 + torch.rand_like(p))
    return gen.eval()


def test_original_names_match_the_hifigan_layout():
    state = original_generator_state(
        HifiGanGenerator(tiny_generator_config(resblock="1", resblock_dilation_sizes=[[1, 3, 5]]))
    )
    assert {"conv_pre.weight_g", "conv_pre.weight_v", "conv_pre.bias", "ups.4.weight_g", "conv_post.weight_v"} <= set(
        state
    )
    assert "resblocks.0.convs1.2.weight_v" in state and "resblocks.0.convs2.2.weight_g" in state
    assert not any("parametrizations" in k for k in state)
    assert state["ups.0.weight_g"].shape == (32, 1, 1)  # transposed conv: g over the input channels, as torch's old API


def test_original_format_round_trip(tmp_path):
    cfg = tiny_generator_config()
    gen = _perturbed_generator(cfg)
    path = save_hifigan_generator(gen, tmp_path / "g_00001000")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert list(raw) == ["generator"]
    assert json.loads((tmp_path / "config.json").read_text())["upsample_rates"] == cfg.upsample_rates

    loaded = load_vocoder(path, remove_weight_norm=False)
    for key, value in original_generator_state(gen).items():
        assert torch.equal(original_generator_state(loaded)[key], value), key
    mel = torch.randn(1, 256, 9)
    with torch.no_grad():
        expected = gen(mel)
        inference = load_vocoder(path)  # weight norm removed
        assert not inference.has_weight_norm and not inference.training
        assert torch.allclose(inference(mel), expected, atol=1e-6)
        # saving a generator whose weight norm was removed splits the weights again: same function
        save_hifigan_generator(inference, tmp_path / "again" / "g_1")
        assert torch.allclose(load_vocoder(tmp_path / "again" / "g_1")(mel), expected, atol=1e-5)


def test_auffusion_layout_round_trip(tmp_path):
    gen = _perturbed_generator(tiny_generator_config())
    save_auffusion_vocoder(gen, tmp_path / "model" / "vocoder")
    folder = tmp_path / "model" / "vocoder"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "vocoder.pt", "vocoder.safetensors"]
    mel = torch.randn(2, 256, 5)
    with torch.no_grad():
        expected = gen(mel)
        for source in (folder, tmp_path / "model"):  # the vocoder folder, or the model folder
            assert torch.allclose(load_vocoder(str(source))(mel), expected, atol=1e-6)
        (folder / "vocoder.safetensors").unlink()  # the released layout alone: vocoder.pt
        assert torch.allclose(load_vocoder(str(folder))(mel), expected, atol=1e-6)


def test_plain_weights_load_into_weight_norm_and_back():
    cfg = tiny_generator_config()
    source = _perturbed_generator(cfg)
    plain = HifiGanGenerator(cfg).remove_weight_norm()
    plain.load_state_dict(adapt_state_dict(source.state_dict(), plain))  # folded g * v / ||v||
    normed = HifiGanGenerator(cfg)
    normed.load_state_dict(adapt_state_dict(plain.state_dict(), normed))  # split again
    mel = torch.randn(1, 256, 4)
    with torch.no_grad():
        assert torch.allclose(plain(mel), source(mel), atol=1e-6)
        assert torch.allclose(normed(mel), source(mel), atol=1e-6)


def test_mismatched_config_is_a_clear_error(tmp_path):
    save_hifigan_generator(HifiGanGenerator(tiny_generator_config()), tmp_path / "g")
    other = GeneratorConfig(**{**tiny_generator_config().to_dict(), "upsample_initial_channel": 64})
    with pytest.raises(ValueError, match="does not fit the HifiGanGenerator"):
        load_vocoder(tmp_path / "g", config=other)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vocoder(tmp_path / "g")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_vocoder(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a vocoder checkpoint"):
        load_vocoder(tmp_path / "other.pt")


def test_hub_id_offline_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="neither a local path nor a downloadable hub folder"):
        load_vocoder("nobody/no-such-model")


def test_discriminator_original_format_round_trip(tmp_path):
    cfg = tiny_discriminator_config()
    mpd, msd = MultiPeriodDiscriminator(cfg), MultiScaleDiscriminator(cfg)
    audio = torch.randn(1, 1, 800)
    msd(audio)  # one power iteration: spectral-norm vectors differ from a fresh module's
    path = save_hifigan_discriminators(mpd, msd, tmp_path / "do_00001000", steps=1000, epoch=3)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert "discriminators.0.convs.0.weight_orig" in raw["msd"] and "discriminators.0.convs.0.weight_u" in raw["msd"]
    assert "discriminators.1.convs.0.weight_g" in raw["msd"] and "discriminators.0.conv_post.weight_v" in raw["mpd"]
    mpd2, msd2 = MultiPeriodDiscriminator(cfg).eval(), MultiScaleDiscriminator(cfg).eval()
    extra = load_hifigan_discriminators(mpd2, msd2, path)
    assert extra == {"steps": 1000, "epoch": 3}
    mpd.eval(), msd.eval()
    with torch.no_grad():
        for a, b in ((mpd, mpd2), (msd, msd2)):
            for x, y in zip(a(audio)[0], b(audio)[0]):
                assert torch.allclose(x, y, atol=1e-6)


def test_to_original_names_leaves_plain_keys():
    state = {"a.bias": torch.zeros(1), "a.parametrizations.weight.original0": torch.ones(1)}
    assert set(to_original_names(state)) == {"a.bias", "a.weight_g"}
