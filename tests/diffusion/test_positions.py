"""Frame-position channels: fixed features of each latent frame's place in the clip."""

import pytest
import torch

from lightning_auffusion.diffusion.positions import frame_position_features, with_frame_positions
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
