"""Sampling: schedulers, guidance arithmetic and order, seeds vs batching, negative prompts, callbacks, decode."""

from __future__ import annotations

import pytest
import torch

from lightning_auffusion.diffusion.pipeline import AuffusionPipeline
from lightning_auffusion.diffusion.sampling import (
    decode_latents,
    denoise,
    encode_audio,
    generate,
)
from lightning_auffusion.diffusion.schedulers import SCHEDULERS, make_scheduler
from tests.helpers import TINY_MEL, tiny_ldm, tone_batch

PROMPTS = ["a dog barks loudly", "rain falls on a tin roof", "birds chirp in the morning"]
SECONDS = 0.5  # shorter than the tiny clip (64 frames = 0.64 s)
STEPS = 3


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models gain nothing from intra-op threads; on a shared 2-core machine threads only spin-wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_vocoder():
    from lightning_auffusion.vocoder.config import GeneratorConfig
    from lightning_auffusion.vocoder.generator import HifiGanGenerator

    torch.manual_seed(3)
    config = GeneratorConfig.small(
        num_mels=TINY_MEL["n_mels"],
        n_fft=TINY_MEL["n_fft"],
        win_size=TINY_MEL["win_length"],
        upsample_initial_channel=32,
    )
    return HifiGanGenerator(config).remove_weight_norm().eval()


@pytest.fixture(scope="module")
def module():
    model = tiny_ldm(kinds=("clip",))
    model.vocoder = tiny_vocoder()
    return model.eval()


@pytest.fixture(scope="module")
def pipeline(module):
    return AuffusionPipeline.from_module(module, use_ema=False)


class UNetSpy:
    """Records what the U-Net is called with, then runs it."""

    def __init__(self, unet):
        self.unet, self.calls = unet, []

    def __call__(self, sample, t, encoder_hidden_states=None, **kwargs):
        self.calls.append((sample.shape[0], encoder_hidden_states.detach().clone()))
        return self.unet(sample, t, encoder_hidden_states=encoder_hidden_states, **kwargs)

    def __getattr__(self, name):
        return getattr(self.unet, name)


def spied(pipeline):
    clone = AuffusionPipeline(
        pipeline.unet,
        pipeline.vae,
        pipeline.conditioner,
        pipeline.frontend,
        vocoder=pipeline.vocoder,
        train_scheduler_config=pipeline.train_scheduler_config,
    )
    clone.unet = UNetSpy(pipeline.unet)
    return clone


def test_make_scheduler_follows_training_schedule(module):
    config = dict(module.noise_scheduler.config)
    pndm = make_scheduler("pndm", config)
    assert type(pndm).__name__ == "PNDMScheduler"
    assert pndm.config.skip_prk_steps and not pndm.config.set_alpha_to_one and pndm.config.steps_offset == 1
    assert (pndm.config.beta_start, pndm.config.beta_end, pndm.config.beta_schedule) == (
        0.00085,
        0.012,
        "scaled_linear",
    )
    assert make_scheduler("ddim", config).config.set_alpha_to_one is False
    assert make_scheduler("dpmsolver++", config).config.algorithm_type == "dpmsolver++"
    euler = make_scheduler("euler", config)
    euler.set_timesteps(10)
    assert float(euler.init_noise_sigma) > 1.0  # Euler works in sigma space: noise must be scaled up
    assert make_scheduler("pndm").config.num_train_timesteps == 1000  # SD-1.5 schedule without a config
    with pytest.raises(ValueError, match="unknown scheduler 'lms'"):
        make_scheduler("lms", config)


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_scheduler_gives_finite_audio_of_requested_length(pipeline, scheduler):
    out = generate(
        pipeline, PROMPTS[:2], num_inference_steps=STEPS, scheduler=scheduler, duration_seconds=SECONDS, batch_size=2
    )
    assert out.audio.shape == (2, int(SECONDS * 16000))
    assert out.sample_rate == 16000
    assert torch.isfinite(out.audio).all() and out.audio.abs().max() <= 1.0
    assert out.audio.abs().max() > 0
    assert out.latents.shape == (2, 4, 16, 16)
    assert out.logmel.shape == (2, TINY_MEL["n_mels"], 64)
    assert out.image.shape == (2, 3, TINY_MEL["n_mels"], 64)
    assert torch.isfinite(out.latents).all()


def test_schedulers_differ_and_more_steps_change_result(pipeline):
    results = {
        s: generate(pipeline, PROMPTS[:1], num_inference_steps=STEPS, scheduler=s, duration_seconds=SECONDS).latents
        for s in ("pndm", "ddim")
    }
    assert not torch.allclose(results["pndm"], results["ddim"])


def test_seeds_reproducible_and_independent_of_batch_size(pipeline):
    kwargs = dict(num_inference_steps=STEPS, duration_seconds=SECONDS, seed=11)
    together = generate(pipeline, PROMPTS, batch_size=3, **kwargs)
    one_by_one = generate(pipeline, PROMPTS, batch_size=1, **kwargs)
    # equal up to float summation order (batched matmuls); a different seed differs by O(1)
    torch.testing.assert_close(together.latents, one_by_one.latents, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(together.audio, one_by_one.audio, atol=1e-4, rtol=1e-3)
    assert together.seeds == [11, 12, 13]
    # prompt 2 alone with its own seed is the same clip
    alone = generate(pipeline, PROMPTS[2:], seed=[13], num_inference_steps=STEPS, duration_seconds=SECONDS)
    torch.testing.assert_close(alone.latents[0], together.latents[2], atol=1e-4, rtol=1e-4)
    other = generate(pipeline, PROMPTS[:1], seed=12, num_inference_steps=STEPS, duration_seconds=SECONDS)
    assert not torch.allclose(other.latents[0], together.latents[0])


def test_guidance_puts_unconditional_first_and_combines_as_released(pipeline):
    spy = spied(pipeline)
    generate(spy, PROMPTS[:2], num_inference_steps=2, guidance_scale=7.5, duration_seconds=SECONDS)
    batch, context = spy.unet.calls[0]
    assert batch == 4 and context.shape[0] == 4
    assert torch.count_nonzero(context[:2]) == 0  # unconditional = zeros after the adapter, first half
    torch.testing.assert_close(context[2:], pipeline.conditioner(PROMPTS[:2]))

    # eps = eps_u + g (eps_c - eps_u): check one guided step against two separate U-Net calls
    cond = pipeline.conditioner(PROMPTS[:1])
    uncond = pipeline.conditioner.unconditional(1)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    sched = make_scheduler("ddim", pipeline.train_scheduler_config)
    guided = denoise(pipeline, cond, uncond, latents, sched, num_inference_steps=1, guidance_scale=3.0)
    sched.set_timesteps(1)
    t = sched.timesteps[0]
    with torch.no_grad():
        eps_u = pipeline.unet(latents, t, encoder_hidden_states=uncond).sample
        eps_c = pipeline.unet(latents, t, encoder_hidden_states=cond).sample
    expected = sched.step(eps_u + 3.0 * (eps_c - eps_u), t, latents).prev_sample
    torch.testing.assert_close(guided, expected, atol=1e-5, rtol=1e-4)


def test_guidance_one_is_conditional_only(pipeline):
    spy = spied(pipeline)
    out = generate(spy, PROMPTS[:2], num_inference_steps=2, guidance_scale=1.0, duration_seconds=SECONDS, seed=5)
    assert all(batch == 2 for batch, _ in spy.unet.calls)  # no unconditional branch at all
    torch.testing.assert_close(spy.unet.calls[0][1], pipeline.conditioner(PROMPTS[:2]))
    # a negative prompt has no effect without guidance
    negative = generate(
        pipeline,
        PROMPTS[:2],
        num_inference_steps=2,
        guidance_scale=1.0,
        duration_seconds=SECONDS,
        seed=5,
        negative_prompts="birds chirp in the morning",
    )
    torch.testing.assert_close(out.latents, negative.latents)


def test_negative_prompt_replaces_zeros_and_changes_output(pipeline):
    kwargs = dict(num_inference_steps=STEPS, duration_seconds=SECONDS, seed=2, guidance_scale=5.0)
    plain = generate(pipeline, PROMPTS[:1], **kwargs)
    spy = spied(pipeline)
    steered = generate(spy, PROMPTS[:1], negative_prompts=["birds chirp in the morning"], **kwargs)
    torch.testing.assert_close(spy.unet.calls[0][1][:1], pipeline.conditioner(["birds chirp in the morning"]))
    assert not torch.allclose(plain.latents, steered.latents)
    with pytest.raises(ValueError, match="negative prompts"):
        generate(pipeline, PROMPTS[:3], negative_prompts=["a", "b"], **kwargs)


def test_step_callback_start_step_and_latents_argument(pipeline):
    seen = []
    cond = pipeline.conditioner(PROMPTS[:1])
    uncond = pipeline.conditioner.unconditional(1)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    sched = make_scheduler("ddim", pipeline.train_scheduler_config)

    def callback(index, t, current):
        seen.append(index)
        return torch.zeros_like(current) if index == 4 else None

    out = denoise(
        pipeline,
        cond,
        uncond,
        latents,
        sched,
        num_inference_steps=5,
        guidance_scale=2.0,
        start_step=2,
        step_callback=callback,
    )
    assert seen == [2, 3, 4]
    assert torch.count_nonzero(out) == 0  # the callback's tensor replaced the latents
    with pytest.raises(ValueError, match="start_step"):
        denoise(pipeline, cond, uncond, latents, sched, num_inference_steps=5, guidance_scale=2.0, start_step=9)
    # explicit initial latents replace the seeded noise
    a = generate(pipeline, PROMPTS[:1], latents=latents, seed=0, num_inference_steps=2, duration_seconds=SECONDS)
    b = generate(pipeline, PROMPTS[:1], latents=latents, seed=99, num_inference_steps=2, duration_seconds=SECONDS)
    torch.testing.assert_close(a.latents, b.latents)


def test_encode_decode_shapes_and_griffin_lim_fallback(pipeline):
    batch = tone_batch(2)
    latents = encode_audio(pipeline, batch["audio"])
    assert latents.shape == (2, 4, 16, 16)
    audio, logmel, image = decode_latents(pipeline, latents)
    assert audio.shape == (2, 64 * 160) and logmel.shape == (2, 64, 64) and image.shape == (2, 3, 64, 64)
    no_vocoder = AuffusionPipeline(
        pipeline.unet, pipeline.vae, pipeline.conditioner, pipeline.frontend, griffin_lim_iters=4
    )
    gl_audio, _, _ = decode_latents(no_vocoder, latents)
    assert gl_audio.shape == (2, 64 * 160) and torch.isfinite(gl_audio).all() and gl_audio.abs().max() <= 1.0


def test_longer_duration_widens_the_spectrogram(pipeline):
    out = generate(pipeline, PROMPTS[:1], num_inference_steps=1, duration_seconds=1.0)
    assert out.audio.shape == (1, 16000)
    assert out.logmel.shape[-1] >= 100 and out.latents.shape[-1] * 4 == out.logmel.shape[-1]


def test_module_generation_uses_ema_and_restores_training_weights():
    model = tiny_ldm(use_ema=True)
    model.vocoder = tiny_vocoder()
    model.eval()
    with torch.no_grad():  # training weights drift away from the EMA
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    before = [p.detach().clone() for p in model.unet.parameters()]
    kwargs = dict(num_inference_steps=2, duration_seconds=SECONDS)
    from_module = generate(model, PROMPTS[:1], **kwargs)
    for p, q in zip(model.unet.parameters(), before):
        assert torch.equal(p, q)
    ema_pipeline = AuffusionPipeline.from_module(model, use_ema=True)
    torch.testing.assert_close(generate(ema_pipeline, PROMPTS[:1], **kwargs).latents, from_module.latents)
    raw = generate(model, PROMPTS[:1], use_ema=False, **kwargs)
    assert not torch.allclose(raw.latents, from_module.latents)


def test_input_errors(pipeline):
    with pytest.raises(ValueError, match="at least one prompt"):
        generate(pipeline, [], num_inference_steps=1)
    with pytest.raises(ValueError, match="seeds for 2 prompts"):
        generate(pipeline, PROMPTS[:2], seed=[1, 2, 3], num_inference_steps=1)
    with pytest.raises(ValueError, match="num_inference_steps"):
        generate(pipeline, PROMPTS[:1], num_inference_steps=0)


def test_released_geometry_ten_seconds_from_a_256_by_1024_image():
    """SD-1.5's depth (VAE factor 8, U-Net factor 8) on Auffusion's front end, with narrow channels."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from lightning_auffusion.audio import AuffusionFrontend
    from tests.helpers import tiny_conditioner

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    ).eval()
    vae = AutoencoderKL(
        block_out_channels=(4, 4, 4, 4),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=2,
    ).eval()
    pipeline = AuffusionPipeline(unet, vae, tiny_conditioner(("clip",)), AuffusionFrontend(), griffin_lim_iters=2)
    assert pipeline.vae_downsample_factor == 8 and pipeline.unet_downsample_factor == 8
    assert pipeline.latent_shape(10.0) == (4, 32, 128) and pipeline.frames_for(10.24) == 1024
    assert pipeline.frames_for(12.0) == 1216  # 1200 frames rounded up to a multiple of 64
    out = generate(pipeline, PROMPTS[:1], num_inference_steps=1, duration_seconds=10.0)
    assert out.audio.shape == (1, 160000) and out.image.shape == (1, 3, 256, 1024)
    assert torch.isfinite(out.audio).all() and out.audio.abs().max() <= 1.0
