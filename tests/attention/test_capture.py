"""Attention capture: bit-identical outputs, exact restoration, distributions over tokens, shapes, labels."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor

from lightning_auffusion.attention.capture import AttentionRecorder, select_layers, token_attention
from lightning_auffusion.attention.recording import generate_recording_attention
from lightning_auffusion.diffusion.sampling import generate
from tests.attention.conftest import STEPS


def sd_like_unet() -> UNet2DConditionModel:
    """SD-1.5's 4-level layout at tiny width; attention at factors 2, 4 and the 8x middle (SD also has it at
    factor 1, left out here because 32 x 128 self-attention is slow on a CPU)."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=(32, 128),
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    ).eval()


@pytest.fixture(scope="module")
def unet():
    return sd_like_unet()


def cfg_inputs(batch: int = 2, tokens: int = 77):
    """A classifier-free batch at Auffusion's latent size 4 x 32 x 128: cat([uncond, cond])."""
    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(batch, 4, 32, 128, generator=gen)
    cond = torch.randn(batch, tokens, 32, generator=gen)
    return torch.cat([latents, latents]), torch.cat([torch.zeros_like(cond), cond])


def test_recording_is_bit_identical_and_restores_the_exact_processors(unet):
    from diffusers.models.attention_processor import AttnProcessor2_0

    x, context = cfg_inputs()
    unet.set_attn_processor(AttnProcessor2_0())
    recorded_layer = "mid_block.attentions.0.transformer_blocks.0.attn2.processor"  # factor 8: recorded
    other_layer = "up_blocks.1.attentions.0.transformer_blocks.0.attn1.processor"  # self-attention: never recorded
    custom = {recorded_layer: AttnProcessor(), other_layer: AttnProcessor()}  # plain-math kernels
    unet.set_attn_processor({**unet.attn_processors, **custom})
    before = dict(unet.attn_processors)
    with torch.no_grad():
        plain = unet(x, 500, encoder_hidden_states=context).sample
        with AttentionRecorder(unet) as recorder:
            recorded = unet(x, 500, encoder_hidden_states=context).sample
            assert recorder.num_rows == 2
        after = unet(x, 500, encoder_hidden_states=context).sample
    assert torch.equal(plain, recorded)
    assert torch.equal(plain, after)
    assert unet.attn_processors.keys() == before.keys()
    assert all(unet.attn_processors[k] is v for k, v in before.items())
    assert all(unet.attn_processors[k] is v for k, v in custom.items())
    torch.testing.assert_close(recorder.resolution_maps(0)[(4, 16)].sum(0), torch.ones(4, 16), atol=1e-5, rtol=0)


def test_maps_are_distributions_at_the_papers_resolutions(unet):
    x, context = cfg_inputs(batch=2, tokens=8)
    with torch.no_grad(), AttentionRecorder(unet, resolutions=(2, 4, 8)) as recorder:
        for t in (900, 500, 100):  # three denoising steps
            unet(x, t, encoder_hidden_states=context)
    assert len(recorder.runs) == 1 and recorder.runs[0].calls == 3
    sizes = {tuple(m.shape) for m in recorder.layer_maps(1).values()}
    assert sizes == {(8, 16, 64), (8, 8, 32), (8, 4, 16)}  # 16x64, 8x32, 4x16 as in the paper
    for size, m in recorder.resolution_maps(0).items():
        assert m.shape == (8, *size)
        assert torch.all(m >= 0)
        torch.testing.assert_close(m.sum(0), torch.ones(size), atol=1e-5, rtol=0)
    maps = recorder.token_maps(0, size=(256, 1024))
    assert maps.shape == (8, 256, 1024)
    torch.testing.assert_close(maps.sum(0), torch.ones(256, 1024), atol=1e-5, rtol=0)
    # the conditional half was kept: maps of the two prompts differ (their conditioning differs)
    assert not torch.allclose(recorder.token_maps(0, size=(32, 128)), recorder.token_maps(1, size=(32, 128)))
    assert recorder.token_maps(0, tokens=[1, 3]).shape == (2, 256, 1024)  # default: latent x image_scale 8
    torch.testing.assert_close(recorder.token_maps(0, tokens=[1, 3]), maps[[1, 3]])


def test_only_chosen_layers_are_recorded(unet):
    chosen = select_layers(unet, resolutions=(4,), layers=["up_blocks"])
    assert chosen and all(name.startswith("up_blocks.1") for name in chosen)
    with pytest.raises(ValueError, match=r"downsampling factors \[2, 4, 8\]"):
        AttentionRecorder(unet, resolutions=(16,))
    x, context = cfg_inputs()
    with torch.no_grad(), AttentionRecorder(unet, resolutions=(4,), layers=["up_blocks"]) as recorder:
        with recorder.pause():
            unet(x, 900, encoder_hidden_states=context)
        assert recorder.runs == []
        unet(x, 900, encoder_hidden_states=context)
    assert set(recorder.layer_maps(0)) == set(chosen)


def test_generation_with_recording_is_bit_identical_and_rows_follow_prompts(pipeline):
    prompts = ["a dog barks", "rain falls", "birds chirp"]
    settings = dict(num_inference_steps=STEPS, duration_seconds=1.0, batch_size=2)
    plain = generate(pipeline, prompts, **settings)
    output, maps = generate_recording_attention(pipeline, prompts, resolutions=(1, 2), **settings)
    assert torch.equal(plain.latents, output.latents)
    assert torch.equal(plain.audio, output.audio)
    assert [m.prompt for m in maps] == prompts
    # prompt 2 was alone in the second batch: its maps match a run of that prompt by itself
    _, alone = generate_recording_attention(pipeline, prompts[2:], resolutions=(1, 2), **{**settings, "seed": 2})
    torch.testing.assert_close(maps[2].maps, alone[0].maps, atol=1e-5, rtol=0)
    assert maps[0].maps.shape[-2:] == output.image.shape[-2:] == (32, 128)


def test_labels_of_concatenated_encoders(pipeline_concat):
    prompt = "a dog barks"
    with AttentionRecorder(pipeline_concat.unet, resolutions=None, image_scale=4, classifier_free=False) as recorder:
        generate(pipeline_concat, [prompt], num_inference_steps=2, duration_seconds=1.0, guidance_scale=1.0)
    assert recorder.runs[0].rows == 1  # guidance 1: the U-Net batch is the conditional rows only
    full = token_attention(recorder, 0, prompt, pipeline_concat.conditioner, skip_padding=False)
    assert len(full.labels) == 154 and full.maps.shape == (154, 32, 128)
    torch.testing.assert_close(full.maps.sum(0), torch.ones(32, 128), atol=1e-5, rtol=0)
    assert {label.split(":")[0] for label in full.labels} == {"clip", "t5"}
    shown = token_attention(recorder, 0, prompt, pipeline_concat.conditioner)
    assert all(not label.endswith(":<pad>") for label in shown.labels)
    torch.testing.assert_close(shown.maps, full.maps[shown.positions])
    drawn = [shown.labels[i] for i in shown.keep()]
    assert "clip:<|startoftext|>" not in drawn and "t5:</s>" not in drawn
    assert "clip:d" in drawn and "t5:d" in drawn
