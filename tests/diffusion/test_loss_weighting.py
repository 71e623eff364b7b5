"""Min-SNR-gamma weights and offset noise: the formulas, and their effect inside AuffusionLDM's loss."""

from __future__ import annotations

import pytest
import torch

from lightning_auffusion.diffusion.loss_weighting import min_snr_weights, offset_noise, snr, weighted_mse
from lightning_auffusion.diffusion.schedulers import build_noise_scheduler
from lightning_auffusion.errors import UserInputError
from tests.helpers import single_torch_thread, tiny_ldm, tone_batch  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_min_snr_weights_follow_the_formula():
    scheduler = build_noise_scheduler(None)
    t = torch.tensor([0, 10, 100, 500, 999])
    ac = scheduler.alphas_cumprod[t].double()
    ratio = ac / (1 - ac)
    torch.testing.assert_close(snr(scheduler.alphas_cumprod, t).double(), ratio, rtol=1e-6, atol=0)
    eps = min_snr_weights(scheduler.alphas_cumprod, t, 5.0, "epsilon").double()
    v = min_snr_weights(scheduler.alphas_cumprod, t, 5.0, "v_prediction").double()
    torch.testing.assert_close(eps, torch.clamp(ratio, max=5.0) / ratio, rtol=1e-5, atol=0)
    torch.testing.assert_close(v, torch.clamp(ratio, max=5.0) / (ratio + 1), rtol=1e-5, atol=0)
    assert eps[0] < 0.01 and eps[-1] == pytest.approx(1.0)  # low noise (high SNR) down-weighted, high noise kept
    with pytest.raises(UserInputError, match="epsilon or v_prediction"):
        min_snr_weights(scheduler.alphas_cumprod, t, 5.0, "sample")


def test_weighted_mse_weights_each_sample_mean():
    pred, target = torch.zeros(2, 4, 3, 3), torch.ones(2, 4, 3, 3)
    target[1] *= 2
    assert weighted_mse(pred, target, None).item() == pytest.approx(2.5)
    assert weighted_mse(pred, target, torch.tensor([1.0, 0.5])).item() == pytest.approx((1 + 0.5 * 4) / 2)


def test_offset_noise_adds_a_constant_per_sample_and_channel():
    noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert offset_noise(noise, 0.0) is noise
    shifted = offset_noise(noise, 0.1, torch.Generator().manual_seed(1))
    expected = 0.1 * torch.randn(3, 4, 1, 1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(shifted - noise, expected.expand_as(noise))


def _loss(model, batch, seed=0):
    with torch.no_grad():
        return model.diffusion_loss(batch, generator=torch.Generator().manual_seed(seed), drop=False)


def test_switches_are_off_by_default_and_change_the_loss_when_on(monkeypatch):
    batch = tone_batch(2)
    plain = tiny_ldm()
    assert plain.hparams.snr_gamma is None and plain.hparams.noise_offset == 0.0
    weighted = tiny_ldm(snr_gamma=5.0)
    seen = {}

    def spy(alphas_cumprod, timesteps, gamma, prediction_type):
        seen["weights"] = min_snr_weights(alphas_cumprod, timesteps, gamma, prediction_type)
        return seen["weights"]

    monkeypatch.setattr("lightning_auffusion.diffusion.module.min_snr_weights", spy)
    base, snr_loss = _loss(plain, batch), _loss(weighted, batch)
    assert seen["weights"].shape == (2,) and bool(((seen["weights"] > 0) & (seen["weights"] <= 1)).all())
    assert snr_loss.item() != pytest.approx(base.item())
    offset = _loss(tiny_ldm(noise_offset=0.1), batch)
    assert offset.item() != pytest.approx(base.item())


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"snr_gamma": 0.0}, "snr_gamma"), ({"noise_offset": -0.1}, "noise_offset")]
)
def test_bad_switch_values_fail_in_one_line(kwargs, match):
    with pytest.raises(UserInputError, match=match):
        tiny_ldm(**kwargs)
