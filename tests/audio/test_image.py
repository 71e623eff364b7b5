import math

import pytest
import torch

from lightning_auffusion.audio import AuffusionFrontend, ImageConfig, SpectrogramImage

from .signals import synthetic_mixture


def _logmel():
    fe = AuffusionFrontend()
    return fe.waveform_to_logmel(torch.from_numpy(synthetic_mixture(seconds=10.24))[None])


def test_minmax_matches_released_formula_and_inverts():
    logmel = _logmel()
    mapper = SpectrogramImage(ImageConfig())
    image = mapper.to_image(logmel)
    lo, hi = math.log(1e-5), math.log(200.0)
    expected = ((logmel - lo) / (hi - lo)).clamp(0, 1).flip(-2) * 2 - 1
    torch.testing.assert_close(image[:, 0], expected)
    assert torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 0], image[:, 2])
    assert image.min() >= -1 and image.max() <= 1
    # low frequencies at the bottom: row -1 of the image is mel band 0
    torch.testing.assert_close(image[:, 0, -1], expected[:, -1])
    torch.testing.assert_close(mapper.to_logmel(image), logmel, atol=2e-6, rtol=0)
    assert abs(lo + 11.512925) < 1e-6 and abs(hi - 5.298317) < 1e-6


@pytest.mark.parametrize("per_band", [False, True])
def test_meanstd_inverts(per_band, tmp_path):
    logmel = _logmel()
    if per_band:
        mean = logmel.mean(dim=(0, 2)).tolist()
        std = logmel.std(dim=(0, 2)).clamp_min(0.5).tolist()
    else:
        mean, std = float(logmel.mean()), float(logmel.std())
    mapper = SpectrogramImage(ImageConfig(mode="meanstd", mean=mean, std=std, num_std=6.0))
    image = mapper.to_image(logmel)
    inside = (image[:, 0] > -1) & (image[:, 0] < 1)
    assert inside.float().mean() > 0.99
    back = mapper.to_logmel(image)
    err = (back - logmel).abs()[inside.flip(-2)]  # `inside` is in image (flipped) orientation
    assert err.max() < 1e-5


def test_meanstd_from_stats_file(tmp_path):
    import json

    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"mel_mean": -4.0, "mel_std": 2.5}))
    mapper = SpectrogramImage(ImageConfig(mode="meanstd", stats_file=str(path), num_std=3.0))
    logmel = torch.full((1, 256, 8), -4.0)
    assert torch.allclose(mapper.to_image(logmel), torch.zeros(1, 3, 256, 8), atol=1e-6)
    with pytest.raises(ValueError, match="needs mean and std"):
        ImageConfig(mode="meanstd")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a stats file"):
        SpectrogramImage(ImageConfig(mode="meanstd", stats_file=str(bad)))


def test_riffusion_stores_8_bit_per_clip_min_max_images():
    logmel = torch.cat([_logmel(), _logmel() * 0.5 - 2.0])  # two clips with different ranges
    mapper = SpectrogramImage(ImageConfig(mode="riffusion"))
    stored = mapper.to_uint8(logmel)
    assert stored.dtype == torch.uint8 and stored.shape == (2, 3, *logmel.shape[1:])
    for clip in stored[:, 0]:  # each clip spans the whole 8-bit range, whatever its own log-mel range
        assert int(clip.min()) == 0 and int(clip.max()) == 255
    image = mapper.to_image(logmel)
    torch.testing.assert_close(image, stored.float() / 255 * 2 - 1)
    with pytest.raises(ValueError, match="riffusion"):
        SpectrogramImage(ImageConfig()).to_uint8(logmel)
    with pytest.raises(ValueError, match="levels"):
        ImageConfig(mode="riffusion", levels=512)


def test_riffusion_round_trip_error_is_bounded_by_the_8_bit_step():
    lo, hi = math.log(1e-5), math.log(200.0)
    logmel = _logmel()
    mapper = SpectrogramImage(ImageConfig(mode="riffusion"))  # inverse onto the fixed [lo, hi]
    back = mapper.to_logmel(mapper.to_image(logmel))
    # per clip, relative to its own range (its min and max are not stored): within half a step of 1/255
    low, high = logmel.amin(dim=(-2, -1), keepdim=True), logmel.amax(dim=(-2, -1), keepdim=True)
    relative_error = ((back - lo) / (hi - lo) - (logmel - low) / (high - low)).abs().max()
    assert 0 < relative_error <= 0.5 / 255 + 1e-6  # lossy, and bounded by the quantisation
    # a clip that spans [lo, hi] comes back in log-mel units within half a step of (hi - lo) / 255
    spanning = (logmel - low) / (high - low) * (hi - lo) + lo
    error = (mapper.to_logmel(mapper.to_image(spanning)) - spanning).abs().max()
    assert 0 < error <= (hi - lo) / 255 / 2 + 1e-5
    constant = torch.full((1, 256, 8), -3.0)  # no range: the lowest level, not NaN
    assert torch.equal(mapper.to_uint8(constant), torch.zeros(1, 3, 256, 8, dtype=torch.uint8))
