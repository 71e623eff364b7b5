"""The full Stable Diffusion v1.5 U-Net built from config: 859.52 M parameters, strict diffusers-layout loading."""

from __future__ import annotations

import pytest
import torch

from lightning_auffusion.diffusion.unet_factory import (
    build_unet,
    build_vae,
    count_parameters,
    sd15_unet_config,
    sd15_vae_config,
)
from tests.helpers import single_torch_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

SD15_UNET_PARAMETERS = 859_520_964


def test_sd15_unet_from_config_has_859_52_m_parameters():
    with torch.device("meta"):  # architecture only: no memory, no time
        unet = build_unet(sd15_unet_config())
    assert count_parameters(unet) == SD15_UNET_PARAMETERS
    assert unet.config.cross_attention_dim == 768
    assert tuple(unet.config.block_out_channels) == (320, 640, 1280, 1280)
    assert unet.config.attention_head_dim == 8


def test_preset_dict_is_the_same_architecture():
    with torch.device("meta"):
        a = build_unet({"preset": "sd15"})
        b = build_unet({"preset": "sd15", "cross_attention_dim": 1024})
    assert count_parameters(a) == SD15_UNET_PARAMETERS
    assert count_parameters(b) > SD15_UNET_PARAMETERS  # overrides apply on top of the preset
    with pytest.raises(ValueError, match="unknown unet preset"):
        build_unet({"preset": "sd21"})


def test_sd15_vae_maps_a_spectrogram_image_to_a_4x32x128_latent():
    with torch.device("meta"):
        vae = build_vae(sd15_vae_config())
        latent = vae.encode(torch.zeros(1, 3, 256, 1024)).latent_dist.mean
    assert tuple(latent.shape) == (1, 4, 32, 128)
    assert vae.config.scaling_factor == pytest.approx(0.18215)


@pytest.mark.slow
def test_sd15_unet_loads_a_diffusers_layout_strictly(tmp_path):
    """Real weights (3.4 GB fp32): save in the diffusers layout, reload through the factory and strictly."""
    from safetensors.torch import load_file

    torch.manual_seed(0)
    unet = build_unet(sd15_unet_config())
    assert count_parameters(unet) == SD15_UNET_PARAMETERS
    layout = tmp_path / "sd15"
    unet.save_pretrained(layout / "unet")
    probe = {k: v.clone() for k, v in list(unet.state_dict().items())[::97]}
    del unet
    loaded = build_unet(str(layout))  # an SD-1.5 diffusers layout directory (subfolder unet)
    assert count_parameters(loaded) == SD15_UNET_PARAMETERS
    state = load_file(str(layout / "unet" / "diffusion_pytorch_model.safetensors"))
    with torch.device("meta"):
        fresh = build_unet(sd15_unet_config())
    result = fresh.load_state_dict(state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded_state = loaded.state_dict()
    for key, value in probe.items():
        assert torch.equal(loaded_state[key], value), key
