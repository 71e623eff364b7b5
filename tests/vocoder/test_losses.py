import math

import pytest
import torch

from lightning_auffusion.vocoder.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mel_l1_loss,
)
from lightning_auffusion.vocoder.metrics import LogMelL1Distance, MultiResolutionSTFTDistance
from lightning_auffusion.vocoder.stft_loss import multi_resolution_stft_distance

from .helpers import tone


def test_discriminator_loss_known_values():
    real = [torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 2.0]])]  # terms: 0 and mean(1, 1) = 1
    fake = [torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 3.0]])]  # terms: 0 and mean(1, 9) = 5
    total, real_terms, fake_terms = discriminator_loss(real, fake)
    assert total.item() == pytest.approx(6.0)
    assert [t.item() for t in real_terms] == pytest.approx([0.0, 1.0])
    assert [t.item() for t in fake_terms] == pytest.approx([0.0, 5.0])


def test_generator_adversarial_loss_known_values():
    total, terms = generator_adversarial_loss([torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, -1.0]])])
    assert [t.item() for t in terms] == pytest.approx([0.0, 2.5])  # mean((1-0)^2, (1+1)^2) = 2.5
    assert total.item() == pytest.approx(2.5)


def test_feature_matching_known_values_and_gradient_only_to_fake():
    real = [[torch.zeros(2, 3), torch.ones(4)], [torch.full((5,), 2.0)]]
    fake = [
        [torch.ones(2, 3, requires_grad=True), torch.ones(4, requires_grad=True)],
        [torch.zeros(5, requires_grad=True)],
    ]
    real[0][0].requires_grad_(True)
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(1.0 + 0.0 + 2.0)
    loss.backward()
    assert real[0][0].grad is None  # real features are targets
    assert fake[0][0].grad is not None


def test_mel_l1_known_value_and_shape_check():
    a = torch.zeros(1, 4, 3)
    b = torch.full((1, 4, 3), -0.5)
    b[0, 0, 0] = 5.5  # |5.5| + 11 * 0.5 = 11, mean 11 / 12
    assert mel_l1_loss(a, b).item() == pytest.approx(11 / 12)
    with pytest.raises(ValueError, match="shapes differ"):
        mel_l1_loss(a, b[..., :2])


def test_multi_resolution_stft_distance():
    x = tone(8000, 440.0)[None]
    assert multi_resolution_stft_distance(x, x).item() == pytest.approx(0.0, abs=1e-6)
    # a gain of 1/2: spectral convergence 0.5, log-magnitude difference ln 2 at every bin above the 1e-7 floor
    assert multi_resolution_stft_distance(0.5 * x, x).item() == pytest.approx(0.5 + math.log(2.0), rel=0.02)
    # a 2-sample delay moves phase, not magnitude: far below a gain error or another signal
    gen = torch.Generator().manual_seed(0)
    y = x + 0.05 * torch.randn(x.shape, generator=gen)
    shifted = torch.cat([torch.zeros(1, 2), y[:, :-2]], dim=-1)
    assert multi_resolution_stft_distance(shifted, y).item() < 0.25
    assert multi_resolution_stft_distance(0.3 * torch.randn(x.shape, generator=gen), y).item() > 1.0


def test_metrics_crop_padding_and_average_clips():
    x = 0.3 * torch.randn(8000, generator=torch.Generator().manual_seed(0))  # energy in every band
    padded = torch.stack([x, x])
    padded[1, 6000:] = 0.0
    lengths = torch.tensor([8000, 6000])
    metric = MultiResolutionSTFTDistance()
    metric.update(0.5 * padded, padded, lengths)
    assert metric.compute().item() == pytest.approx(0.5 + math.log(2.0), rel=1e-3)
    mel = LogMelL1Distance()
    mel.update(0.5 * padded, padded, lengths)
    # halving the amplitude halves every mel magnitude: ln 2 in every band and frame
    assert mel.compute().item() == pytest.approx(math.log(2.0), rel=1e-3)
    # without the lengths, the padded tail (silent in both) would pull the second clip's distance down
    uncropped = LogMelL1Distance()
    uncropped.update(0.5 * padded, padded)
    assert uncropped.compute().item() < mel.compute().item() - 0.05
