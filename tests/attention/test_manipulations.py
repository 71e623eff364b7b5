"""Manipulations on non-square latents (4 x 8 x 32) with one and two concatenated encoders."""

from __future__ import annotations

import pytest
import torch

from lightning_auffusion.attention import manipulations as M
from lightning_auffusion.diffusion.pipeline import AuffusionPipeline
from lightning_auffusion.diffusion.sampling import encode_audio, generate
from tests.attention.conftest import STEPS, PatchVAE

SETTINGS = dict(num_inference_steps=STEPS, duration_seconds=1.0)


def test_style_transfer_at_strength_zero_returns_the_source(pipeline, source_wave):
    out = M.style_transfer(pipeline, source_wave, "a dog barks", strength=0.0, num_inference_steps=STEPS)
    assert torch.equal(out.latents, encode_audio(pipeline, source_wave[None]).cpu())
    assert out.latents.shape == (1, 4, 8, 32)
    assert torch.equal(out.audio, out.source.audio) and torch.equal(out.logmel, out.source.logmel)
    assert out.audio.shape == (1, source_wave.shape[-1])


def test_style_transfer_moves_away_with_strength(pipeline, source_wave):
    a = M.style_transfer(pipeline, source_wave, "a dog barks", strength=0.7, num_inference_steps=STEPS, seed=3)
    b = M.style_transfer(pipeline, source_wave, "a dog barks", strength=0.7, num_inference_steps=STEPS, seed=3)
    assert torch.equal(a.latents, b.latents)  # deterministic per seed
    assert (a.latents - a.source.latents).abs().mean() > 0.1
    with pytest.raises(ValueError, match="strength"):
        M.style_transfer(pipeline, source_wave, "x", strength=1.5)


def test_inpainting_keeps_the_latents_outside_the_span(pipeline, source_wave):
    out = M.inpaint(
        pipeline,
        source_wave,
        "a dog barks",
        0.32,
        0.96,
        **{k: v for k, v in SETTINGS.items() if k != "duration_seconds"},
    )
    first, last = M.span_columns(pipeline, 0.32, 0.96, 32)
    assert (first, last) == (8, 24)  # frames 32..96 over a VAE factor of 4
    outside = torch.cat([out.latents[..., :first], out.latents[..., last:]], dim=-1)
    known = torch.cat([out.source.latents[..., :first], out.source.latents[..., last:]], dim=-1)
    assert torch.equal(outside, known)
    assert (out.latents[..., first:last] - out.source.latents[..., first:last]).abs().mean() > 0.1


@pytest.mark.parametrize("scheduler", ["pndm", "ddim", "euler", "dpmsolver++"])
def test_inpainting_keeps_the_audio_outside_the_span(ldm, source_wave, scheduler):
    """With a strictly local VAE the log-mel outside the span equals the source's VAE round trip."""
    local = AuffusionPipeline(
        unet=ldm.unet,
        vae=PatchVAE(4),
        conditioner=ldm.conditioner,
        frontend=ldm.frontend,
        train_scheduler_config=dict(ldm.noise_scheduler.config),
        vae_scaling_factor=1.0,
    )
    out = M.inpaint(local, source_wave, "a dog barks", 0.32, 0.96, num_inference_steps=STEPS, scheduler=scheduler)
    span = slice(32, 96)  # mel frames 32..96 = 0.32..0.96 s
    diff = (out.logmel - out.source.logmel).abs()[0]
    assert diff[:, : span.start].max() < 1e-4 and diff[:, span.stop :].max() < 1e-4
    assert diff[:, span].mean() > 0.5


def test_word_swap_with_identical_prompts_is_a_no_op(pipeline):
    prompt = "a dog barks"
    plain = generate(pipeline, [prompt], seed=5, **SETTINGS)
    swapped = M.word_swap(pipeline, prompt, prompt, seed=5, **SETTINGS)
    torch.testing.assert_close(swapped.latents, plain.latents, atol=1e-4, rtol=0)
    torch.testing.assert_close(swapped.source.latents, plain.latents, atol=1e-4, rtol=0)
    assert swapped.audio.shape == plain.audio.shape == (1, 16000)


def test_reweighting_by_one_is_a_no_op_and_other_weights_are_not(pipeline):
    prompt = "a dog barks"
    plain = generate(pipeline, [prompt], seed=5, **SETTINGS)
    same = M.reweight(pipeline, prompt, {"dog": 1.0}, seed=5, **SETTINGS)
    torch.testing.assert_close(same.latents, plain.latents, atol=1e-4, rtol=0)
    louder = M.reweight(pipeline, prompt, {"dog": 4.0}, seed=5, **SETTINGS)
    torch.testing.assert_close(louder.source.latents, plain.latents, atol=1e-4, rtol=0)
    assert (louder.latents - plain.latents).abs().max() > 1e-2


def test_word_swap_with_concatenated_encoders_and_without_guidance(pipeline_concat):
    plain = generate(pipeline_concat, ["a dog barks"], seed=1, guidance_scale=1.0, **SETTINGS)
    same = M.word_swap(pipeline_concat, "a dog barks", "a dog barks", seed=1, guidance_scale=1.0, **SETTINGS)
    torch.testing.assert_close(same.latents, plain.latents, atol=1e-4, rtol=0)
    swapped = M.word_swap(pipeline_concat, "a dog barks", "a horse barks", seed=1, **SETTINGS)
    target = generate(pipeline_concat, ["a horse barks"], seed=1, **SETTINGS)
    assert swapped.prompts == ["a horse barks"] and swapped.source.prompts == ["a dog barks"]
    assert (swapped.latents - target.latents).abs().max() > 1e-3  # the source's attention changed the result
