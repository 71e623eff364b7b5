import pytest
import torch

from lightning_auffusion.audio import MelConfig
from lightning_auffusion.vocoder import GeneratorConfig, HifiGanGenerator
from lightning_auffusion.vocoder.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator

from .helpers import tiny_discriminator_config, tiny_generator_config


@pytest.mark.parametrize(
    "rates,kernels,hop,resblock",
    [
        ([5, 4, 2, 2, 2], [11, 8, 4, 4, 4], 160, "1"),  # Auffusion hop, k - u even everywhere
        ([5, 4, 2, 2, 2], [10, 8, 4, 4, 4], 160, "2"),  # k - u odd: padding + output_padding path
        ([8, 8, 2, 2], [16, 16, 4, 4], 256, "1"),  # HiFi-GAN V1 at 22.05 kHz
        ([10, 4, 4], [20, 8, 8], 160, "2"),
        ([4, 4, 4, 4], [8, 8, 8, 8], 256, "1"),
    ],
)
def test_output_length_is_frames_times_hop(rates, kernels, hop, resblock):
    n_mels = 16
    cfg = GeneratorConfig(
        resblock=resblock,
        upsample_rates=rates,
        upsample_kernel_sizes=kernels,
        upsample_initial_channel=32,
        resblock_kernel_sizes=[3, 5],
        resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]] if resblock == "1" else [[1, 2], [2, 6]],
        num_mels=n_mels,
        hop_size=hop,
    )
    gen = HifiGanGenerator(cfg)
    for frames in (1, 7, 20):
        out = gen(torch.randn(2, n_mels, frames))
        assert out.shape == (2, 1, frames * hop)
        assert out.abs().max() <= 1.0


def test_resblock_types_have_original_module_names():
    v1 = HifiGanGenerator(tiny_generator_config(resblock="1", resblock_dilation_sizes=[[1, 3, 5]]))
    v3 = HifiGanGenerator(tiny_generator_config(resblock="2"))
    assert "resblocks.0.convs1.2.parametrizations.weight.original0" in v1.state_dict()
    assert "resblocks.0.convs2.0.parametrizations.weight.original1" in v1.state_dict()
    assert "resblocks.0.convs.1.parametrizations.weight.original1" in v3.state_dict()
    # one residual block per (upsampling layer, kernel size)
    assert len(v1.resblocks) == len(v1.config.upsample_rates) * len(v1.config.resblock_kernel_sizes)


def test_upsample_factors_must_multiply_to_hop():
    with pytest.raises(ValueError, match=r"multiply to 128 but hop_size is 160"):
        GeneratorConfig(upsample_rates=[8, 4, 2, 2], upsample_kernel_sizes=[16, 8, 4, 4])
    with pytest.raises(ValueError, match="same length"):
        GeneratorConfig(upsample_kernel_sizes=[11, 8, 4, 4])
    with pytest.raises(ValueError, match="kernel size >= rate"):
        GeneratorConfig(upsample_kernel_sizes=[3, 8, 4, 4, 4])
    with pytest.raises(ValueError, match="resblock"):
        GeneratorConfig(resblock="3")


def test_wrong_mel_count_is_a_clear_error():
    gen = HifiGanGenerator(tiny_generator_config())
    with pytest.raises(ValueError, match=r"\(batch, 256, frames\)"):
        gen(torch.randn(1, 80, 10))


def test_remove_weight_norm_keeps_output_and_parameters():
    gen = HifiGanGenerator(tiny_generator_config()).eval()
    x = torch.randn(1, 256, 12)
    with torch.no_grad():  # removal under no_grad must still leave real Parameters
        before = gen(x)
        count = sum(p.numel() for p in gen.parameters())
        gen.remove_weight_norm()
        after = gen(x)
    assert not gen.has_weight_norm
    assert torch.allclose(before, after, atol=1e-6)
    assert "conv_pre.weight" in dict(gen.named_parameters())
    # weight norm stores (g, v) per conv: removing it drops exactly the g vectors
    assert count - sum(p.numel() for p in gen.parameters()) == sum(
        m.weight.shape[0] for m in gen.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))
    )


def test_full_size_parameter_count():
    # inference size (weight norm removed); V1 at Auffusion's settings: 512 channels, 5 upsamplers, 256 mels
    assert HifiGanGenerator(GeneratorConfig.v1()).remove_weight_norm().num_parameters() == 13_673_793
    # HiFi-GAN V1 at 22.05 kHz / 80 mels: the published 13.92 M
    v1_22k = GeneratorConfig(
        upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4],
        num_mels=80,
        hop_size=256,
        n_fft=1024,
        sampling_rate=22050,
    )
    assert HifiGanGenerator(v1_22k).remove_weight_norm().num_parameters() == 13_926_017


def test_compatibility_check_names_the_mismatch():
    cfg = GeneratorConfig()
    cfg.check_compatible(MelConfig())
    with pytest.raises(ValueError, match=r"num_mels / n_mels: vocoder 256 vs 80"):
        cfg.check_compatible(MelConfig(n_mels=80))


def test_discriminator_outputs():
    cfg = tiny_discriminator_config(periods=[2, 3, 5])
    audio = torch.randn(2, 1, 1601)  # not a multiple of any period: reflect-padded
    logits, feats = MultiPeriodDiscriminator(cfg)(audio)
    assert len(logits) == 3 and all(x.shape[0] == 2 and x.dim() == 2 for x in logits)
    assert all(len(f) == len(cfg.period_channels) + 1 for f in feats)
    assert feats[1][0].shape[-1] == 3  # period 3 is the last axis of the 2-D maps
    logits, feats = MultiScaleDiscriminator(cfg)(audio)
    assert len(logits) == cfg.num_scales and len(feats[0]) == len(cfg.scale_channels) + 1
    assert feats[1][0].shape[-1] < feats[0][0].shape[-1]  # second scale sees pooled audio
