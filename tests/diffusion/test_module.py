"""AuffusionLDM: overfitting, frozen parts, EMA, bf16-mixed, latent cache, checkpoints, CLI optimiser override."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch
import yaml

from lightning_auffusion.diffusion.module import AuffusionLDM
from tests.helpers import (
    ToneDataModule,
    overfit_losses,
    quiet_trainer,
    single_torch_thread,  # noqa: F401 (fixture)
    tiny_frontend_kwargs,
    tiny_ldm,
    tiny_spec,
    tiny_unet_config,
    tiny_vae_config,
    tone_batch,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _eval_loss(model: AuffusionLDM, batch, seeds=range(4)) -> float:
    with torch.no_grad():
        return sum(
            model.diffusion_loss(batch, generator=torch.Generator().manual_seed(s), drop=False).item() for s in seeds
        ) / len(seeds)


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    options = dict(
        devices=1,
        max_steps=2,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        default_root_dir=str(tmp_path),
    )
    options.update(kwargs)
    return quiet_trainer(**options)


@pytest.fixture(scope="module")
def model():
    return tiny_ldm()


def test_shapes_and_defaults(model):
    assert model.vae_scaling_factor == pytest.approx(0.18215)
    cfg = model.noise_scheduler.config
    assert (cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule, cfg.prediction_type) == (
        1000,
        0.00085,
        0.012,
        "scaled_linear",
        "epsilon",
    )
    batch = tone_batch(2)
    image = model.images_from_audio(batch["audio"])
    assert image.shape == (2, 3, 64, 64)
    latents = model.latents_from_posterior(model.posterior_parameters(image))
    assert latents.shape == (2, 4, 16, 16)
    assert model.conditioner(batch["caption"]).shape == (2, 77, 32)
    assert model.sampling == {
        "scheduler": "pndm",
        "num_inference_steps": 100,
        "guidance_scale": 7.5,
        "seed": 0,
        "duration_seconds": 10.0,
    }
    assert type(next(iter(model.unet.attn_processors.values()))).__name__ == "AttnProcessor2_0"


def test_tiny_model_overfits_a_handful_of_clips():
    torch.manual_seed(0)
    model = tiny_ldm(learning_rate=2e-3)
    start, end = overfit_losses(model, tone_batch(4))
    assert end < 0.5 * start, (start, end)


def test_only_unet_and_adapters_get_gradients(model):
    model.zero_grad(set_to_none=True)
    model.train()
    model.diffusion_loss(tone_batch(2)).backward()
    assert all(p.grad is not None for p in model.unet.parameters() if p.requires_grad)
    assert all(p.grad is not None for p in model.conditioner.adapters.parameters())
    for frozen in (model.vae, model.conditioner.encoders):
        assert all(p.grad is None and not p.requires_grad for p in frozen.parameters())
    assert not model.vae.training and all(not e.training for e in model.conditioner.encoders)
    optimizer = model.configure_optimizers()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    expected = {id(p) for p in model.unet.parameters()} | {id(p) for p in model.conditioner.adapters.parameters()}
    assert in_optimizer == expected
    assert optimizer.defaults["lr"] == pytest.approx(3e-5) and isinstance(optimizer, torch.optim.AdamW)
    model.zero_grad(set_to_none=True)


def test_adapters_can_be_frozen_too():
    model = tiny_ldm(train_adapters=False)
    model.diffusion_loss(tone_batch(2)).backward()
    assert all(p.grad is None for p in model.conditioner.adapters.parameters())
    assert len(model.trainable_parameters()) == len(list(model.unet.parameters()))


def test_ema_updates_and_swaps(tmp_path):
    model = tiny_ldm(use_ema=True, ema_config={"decay": 0.9999, "power": 2 / 3}, learning_rate=1e-3)
    before = [p.detach().clone() for p in model.unet.parameters()]
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(model, datamodule=ToneDataModule(clips=2, batch_size=2))
    assert model.ema.optimization_step == 3
    # with the 2/3-power warm-up the third update uses decay 1 - (1 + 2) ** (-2/3)
    assert model.ema.get_decay(3) == pytest.approx(1 - 3 ** (-2 / 3))
    current = [p.detach().clone() for p in model.unet.parameters()]
    shadow = [s.detach().clone() for s in model.ema.shadow_params]
    moved = [not torch.equal(c, b) for c, b in zip(current, before)]
    assert any(moved)
    # the EMA sits between the initial and the current weights, and differs from both
    diffs = [(s - c).abs().max().item() for s, c, m in zip(shadow, current, moved) if m]
    assert max(diffs) > 0
    with model.ema_weights():
        inside = [p.detach().clone() for p in model.unet.parameters()]
    after = [p.detach().clone() for p in model.unet.parameters()]
    assert all(torch.equal(i, s) for i, s in zip(inside, shadow))
    assert all(torch.equal(a, c) for a, c in zip(after, current))
    # validation runs on the EMA weights and hands the training weights back afterwards
    batch = tone_batch(2)
    with model.ema_weights():
        ema_loss = _eval_loss(model, batch, [0])
    raw_loss = _eval_loss(model, batch, [0])
    model.on_validation_epoch_start()
    val_loss = _eval_loss(model, batch, [0])
    model.on_validation_epoch_end()
    assert val_loss == ema_loss and val_loss != raw_loss
    assert all(torch.equal(p, c) for p, c in zip(model.unet.parameters(), current))


def test_ema_checkpoint_round_trip(tmp_path):
    model = tiny_ldm(use_ema=True, learning_rate=1e-3)
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(model, datamodule=ToneDataModule(clips=2, batch_size=2))
    path = tmp_path / "ldm.ckpt"
    trainer.save_checkpoint(path)
    loaded = AuffusionLDM.load_from_checkpoint(path)
    for a, b in zip(loaded.unet.parameters(), model.unet.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(loaded.ema.shadow_params, model.ema.shadow_params):
        assert torch.equal(a, b)
    assert loaded.ema.optimization_step == model.ema.optimization_step
    batch = tone_batch(2)
    assert _eval_loss(loaded, batch, seeds=[0]) == pytest.approx(_eval_loss(model, batch, seeds=[0]), rel=1e-5)


def test_checkpoint_without_frozen_weights_rebuilds_them(tmp_path):
    model = tiny_ldm(save_frozen_weights=False)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(model, datamodule=ToneDataModule(clips=2, batch_size=2))
    path = tmp_path / "small.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    assert not any(k.startswith(("vae.", "conditioner.encoders.")) for k in state)
    assert any(k.startswith("unet.") for k in state) and any(k.startswith("conditioner.adapters.") for k in state)
    torch.manual_seed(123)  # the frozen parts are rebuilt from their (here: random) sources
    loaded = AuffusionLDM.load_from_checkpoint(path)
    for a, b in zip(loaded.unet.parameters(), model.unet.parameters()):
        assert torch.equal(a, b)


def test_bf16_mixed_fit_and_validation_run_on_cpu(tmp_path):
    model = tiny_ldm(use_ema=True)
    trainer = _trainer(tmp_path, precision="bf16-mixed", max_steps=2, limit_val_batches=1)
    trainer.fit(model, datamodule=ToneDataModule(clips=2, batch_size=2))
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and torch.isfinite(metrics["val/loss"])
    assert all(p.dtype == torch.float32 for p in model.unet.parameters())  # master weights stay fp32


def test_validation_loss_is_deterministic(model):
    batch = tone_batch(2)
    model.eval()
    a = model.validation_step(batch, 0)
    b = model.validation_step(batch, 0)
    assert torch.equal(a, b)


def test_latent_cache_reuses_posteriors_of_uncropped_clips():
    model = tiny_ldm(cache_latents=True)
    padded = tone_batch(3, short_by=1000)  # shorter than the window: cacheable
    full = tone_batch(2)  # fills the window: may be a random crop, never cached
    reference = model.posterior_parameters(model.images_from_audio(padded["audio"]))
    first = model.posterior_from_batch(padded)
    second = model.posterior_from_batch(padded)
    torch.testing.assert_close(first, reference)
    torch.testing.assert_close(second, reference)
    assert len(model.latent_cache) == 3 and model.latent_cache.hits == 3
    model.posterior_from_batch(full)
    assert len(model.latent_cache) == 3
    # a changed waveform under the same key is recomputed, not served stale
    changed = copy.deepcopy(padded)
    changed["audio"][0] *= 0.5
    changed["audio"][0, :100] = 0.1
    fresh = model.posterior_from_batch(changed)
    torch.testing.assert_close(fresh[0], model.posterior_parameters(model.images_from_audio(changed["audio"][:1]))[0])
    # a fresh sample is drawn from the cached posterior at every step
    z1 = model.latents_from_posterior(second, torch.Generator().manual_seed(0))
    z2 = model.latents_from_posterior(second, torch.Generator().manual_seed(1))
    assert not torch.equal(z1, z2)


def test_speed_options_keep_parameter_names():
    plain = tiny_ldm(seed=1)
    fast = tiny_ldm(seed=1, attention="math", gradient_checkpointing=True, channels_last=True)
    assert list(plain.unet.state_dict()) == list(fast.unet.state_dict())
    batch = tone_batch(2)
    fast.train()
    plain.train()
    torch.testing.assert_close(_eval_loss(fast, batch, [0]), _eval_loss(plain, batch, [0]), rtol=1e-4, atol=1e-5)
    loss = fast.diffusion_loss(batch)
    loss.backward()
    assert all(p.grad is not None for p in fast.unet.parameters())


def test_bad_options_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="attention must be one of"):
        tiny_ldm(attention="flash")
    with pytest.raises(FileNotFoundError, match="no unet"):
        tiny_ldm(unet=str(tmp_path / "nothing" / "here"))
    with pytest.raises(FileNotFoundError, match="train one first"):
        tiny_ldm(vae=str(tmp_path / "vae.ckpt"))
    with pytest.raises(FileNotFoundError, match="neither unet/config.json"):
        tiny_ldm(unet=str(tmp_path))
    try:
        import xformers  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install xformers"):
            tiny_ldm(attention="xformers")


def test_loads_unet_and_vae_from_a_diffusers_layout(tmp_path):
    source = tiny_ldm(seed=3)
    source.unet.save_pretrained(tmp_path / "layout" / "unet")
    source.vae.save_pretrained(tmp_path / "layout" / "vae")
    model = tiny_ldm(unet=str(tmp_path / "layout"), vae=str(tmp_path / "layout"))
    for a, b in zip(model.unet.state_dict().values(), source.unet.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(model.vae.state_dict().values(), source.vae.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("where", ["model_init_args", "top_level"])
def test_cli_fit_with_optimizer_and_scheduler_override(tmp_path, where):
    """``optimizer:`` / ``lr_scheduler:`` given as the model's callables, or as LightningCLI's top-level keys."""
    from lightning_auffusion.cli import main

    optim = {
        "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01, "momentum": 0.9}},
        "lr_scheduler": {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1, "gamma": 0.5}},
    }
    model_args = {
        "unet": tiny_unet_config(),
        "vae": tiny_vae_config(),
        "encoders": [vars(tiny_spec("clip"))],
        "mel": dict(vars(tiny_frontend_kwargs()["mel"])),
        "n_frames": 64,
    }
    config = {
        "trainer": {
            "accelerator": "cpu",
            "max_steps": 2,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 0,
            "default_root_dir": str(tmp_path),
        },
        "model": {"class_path": "lightning_auffusion.diffusion.module.AuffusionLDM", "init_args": model_args},
        "data": {"class_path": "tests.helpers.ToneDataModule", "init_args": {"clips": 2, "batch_size": 2}},
    }
    if where == "model_init_args":
        model_args.update(optim)
    else:
        config.update(optim)
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = main(["fit", "--config", str(path)])
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert cli.trainer.global_step == 2
    # LightningCLI's top-level optimizer receives every parameter; the frozen ones never get a gradient, so
    # the optimizer never touches them (no state, no update)
    frozen = [p for g in optimizer.param_groups for p in g["params"] if not p.requires_grad]
    assert all(p.grad is None and not optimizer.state.get(p) for p in frozen)
    assert all(optimizer.state.get(p) for p in cli.model.unet.parameters())
    if where == "model_init_args":  # our configure_optimizers: only the trainable parameters, StepLR per step
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**2)
        assert sum(len(g["params"]) for g in optimizer.param_groups) == len(cli.model.trainable_parameters())
