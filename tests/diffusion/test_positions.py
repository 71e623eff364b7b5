"""Frame-position channels: fixed features of each latent frame's place in the clip."""

import pytest
import torch

from lightning_auffusion.diffusion.positions import frame_position_features, with_frame_positions


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
