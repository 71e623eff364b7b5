"""Position channels: fixed features of each latent frame's place in the clip and of each token's in its caption."""

import pytest
import torch

from lightning_auffusion.diffusion.positions import (
    frame_position_features,
    position_encoding,
    with_frame_positions,
    with_token_positions,
)
from tests.helpers import single_torch_thread  # noqa: F401 (fixture)


def test_features_are_sine_cosine_pairs_of_the_frame_position_and_constant_over_height():
    feats = frame_position_features(4, 3, 8)
    x = torch.arange(8) / 8
    assert torch.allclose(feats[0, 0], torch.sin(torch.pi * x))
    assert torch.allclose(feats[1, 2], torch.cos(torch.pi * x))
    assert torch.allclose(feats[3, 1], torch.cos(2 * torch.pi * x))
    assert torch.equal(feats[:, 0], feats[:, 2])
    # the first cosine is strictly decreasing: every frame has its own position
    assert bool((feats[1, 0, 1:] < feats[1, 0, :-1]).all())


def test_appended_after_the_latent_channels_and_nothing_for_zero():
    latents = torch.randn(2, 8, 10, 44)
    out = with_frame_positions(latents, 4)
    assert out.shape == (2, 12, 10, 44) and torch.equal(out[:, :8], latents)
    assert with_frame_positions(latents, 0) is latents


@pytest.mark.parametrize("bad", [-2, 3])
def test_odd_or_negative_counts_are_refused(bad):
    with pytest.raises(ValueError, match="even number"):
        frame_position_features(bad, 1, 4)


def _tiny_positional_ldm(channels: int = 4):
    from tests.helpers import tiny_ldm, tiny_unet_config

    unet = {**tiny_unet_config(), "in_channels": 4 + channels}
    return tiny_ldm(unet=unet, frame_position_channels=channels)


def test_the_unet_input_must_hold_latent_plus_position_channels():
    from tests.helpers import tiny_ldm

    with pytest.raises(ValueError, match="set unet in_channels to 8"):
        tiny_ldm(frame_position_channels=4)


def test_a_positional_ldm_trains_and_samples_latents_of_the_vae_width(single_torch_thread):  # noqa: F811
    from lightning_auffusion.diffusion.pipeline import AuffusionPipeline
    from lightning_auffusion.diffusion.sampling import generate
    from tests.helpers import tone_batch

    module = _tiny_positional_ldm()
    loss = module.diffusion_loss(tone_batch(2))
    loss.backward()
    assert torch.isfinite(loss) and module.unet.conv_in.weight.grad is not None
    pipeline = AuffusionPipeline.from_module(module)
    assert pipeline.frame_position_channels == 4 and pipeline.latent_channels == 4
    out = generate(
        module,
        ["a loud sine tone"],
        num_inference_steps=2,
        guidance_scale=2.0,
        seed=0,
        duration_seconds=0.5,
        scheduler="ddim",
    )
    assert out.audio.shape[-1] == 8000 and torch.isfinite(torch.as_tensor(out.audio)).all()


def test_token_positions_are_relative_to_each_captions_own_length_and_padding_stays_zero():
    hidden = torch.zeros(2, 6, 3)
    hidden[0, :2] = 1.0  # a 2-token caption
    hidden[1, :4] = -0.5  # a 4-token caption
    out = with_token_positions(hidden, 4)
    assert out.shape == (2, 6, 7) and torch.equal(out[..., :3], hidden)
    torch.testing.assert_close(out[0, :2, 3:], position_encoding(torch.tensor([0.0, 0.5]), 4))
    torch.testing.assert_close(out[1, :4, 3:], position_encoding(torch.tensor([0.0, 0.25, 0.5, 0.75]), 4))
    assert out[0, 2:].abs().max() == 0 and out[1, 4:].abs().max() == 0
    # a token half way through its caption gets the features of the frame half way through the clip
    torch.testing.assert_close(out[1, 2, 3:], frame_position_features(4, 1, 8)[:, 0, 4])
    assert with_token_positions(hidden, 0) is hidden


def test_the_adapter_reads_the_encoder_width_plus_the_token_channels_and_the_option_is_checked():
    from lightning_auffusion.errors import UserInputError
    from tests.helpers import TEST_CAPTIONS, tiny_conditioner, tiny_spec

    cond = tiny_conditioner(("t5",), token_position_channels=4)
    width = cond.condition_dims[0]
    assert cond.adapters[0].proj.in_features == width + 4
    out = cond(TEST_CAPTIONS[:2])
    assert out.shape == (2, 77, 32) and torch.isfinite(out).all()
    # the same caption at another place in the caption list gets the same conditioning
    torch.testing.assert_close(cond(TEST_CAPTIONS[1:2])[0], out[1])
    with pytest.raises(UserInputError, match="even number"):
        tiny_spec("t5", token_position_channels=3)
    with pytest.raises(UserInputError, match="padding 'zeros'"):
        tiny_spec("t5", token_position_channels=2, padding="tokens")
