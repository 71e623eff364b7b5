"""SpectrogramVAE: learning, KL / log-mel / adversarial terms, decoder-only fine-tuning, export and reuse by the LDM."""

from __future__ import annotations

import pytest
import torch

from lightning_auffusion.diffusion.unet_factory import build_vae
from lightning_auffusion.diffusion.vae_losses import PatchDiscriminator, discriminator_loss, generator_loss
from lightning_auffusion.diffusion.vae_module import SpectrogramVAE, export_vae
from tests.helpers import (
    ToneDataModule,
    quiet_trainer,
    single_torch_thread,  # noqa: F401 (fixture)
    tiny_frontend_kwargs,
    tiny_ldm,
    tiny_vae_config,
    tone_batch,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def tiny_vae_module(**kwargs) -> SpectrogramVAE:
    torch.manual_seed(0)
    options = dict(vae=tiny_vae_config(), learning_rate=2e-3, **tiny_frontend_kwargs())
    options.update(kwargs)
    return SpectrogramVAE(**options)


def _fit(module, tmp_path, steps, **kwargs):
    trainer = quiet_trainer(
        max_steps=steps,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
        **kwargs,
    )
    trainer.fit(module, datamodule=ToneDataModule(clips=4, batch_size=4))
    return trainer


def _recon_l1(module, batch) -> float:
    module.eval()
    with torch.no_grad():
        images = module.images_from_audio(batch["audio"])
        recon, _, _ = module.reconstruct(images, sample=False)
    return (recon - images).abs().mean().item()


def test_reconstruction_improves_and_scaling_is_estimated(tmp_path):
    module = tiny_vae_module(scaling_factor="estimate", logmel_l1_weight=0.01)
    batch = tone_batch(4)
    start = _recon_l1(module, batch)
    _fit(module, tmp_path, steps=15)
    end = _recon_l1(module, batch)
    assert end < 0.5 * start, (start, end)
    assert int(module.ae_steps) == 15
    scale = module.estimated_scaling_factor()
    assert scale is not None and scale > 0
    assert module.vae_config()["scaling_factor"] == pytest.approx(scale)


def test_validation_reports_all_terms():
    module = tiny_vae_module()
    module.eval()
    terms = module.loss_terms(*_images_recon_posterior(module))
    assert set(terms) == {"rec", "kl", "logmel_l1"}
    assert all(torch.isfinite(v) for v in terms.values())
    assert module.validation_step(tone_batch(2), 0).ndim == 0


def _images_recon_posterior(module):
    images = module.images_from_audio(tone_batch(2)["audio"])
    recon, posterior, _ = module.reconstruct(images)
    return images, recon, posterior


def test_kl_is_normalised_per_image_element():
    module = tiny_vae_module(reconstruction_loss="mse")
    images, recon, posterior = _images_recon_posterior(module)
    terms = module.loss_terms(images, recon, posterior)
    expected = posterior.kl().mean() / images[0].numel()
    torch.testing.assert_close(terms["kl"], expected)
    torch.testing.assert_close(terms["rec"], torch.nn.functional.mse_loss(recon, images))


def test_adversarial_term_switches_on_at_start_step(tmp_path):
    module = tiny_vae_module(
        adversarial_weight=0.5, adversarial_start_step=2, discriminator_channels=8, discriminator_layers=2
    )
    d_before = [p.detach().clone() for p in module.discriminator.parameters()]
    trainer = _fit(module, tmp_path, steps=6)
    # global_step counts batches (autoencoder steps), as for the vocoder: discriminator steps are not counted
    assert int(module.ae_steps) == 6
    assert trainer.global_step == 6
    assert any(not torch.equal(a, b) for a, b in zip(d_before, module.discriminator.parameters()))
    assert "train/d_loss" in trainer.callback_metrics and "train/gan_weight" in trainer.callback_metrics
    assert len(trainer.optimizers) == 2


def test_discriminator_not_trained_before_start_step(tmp_path):
    module = tiny_vae_module(
        adversarial_weight=0.5, adversarial_start_step=100, discriminator_channels=8, discriminator_layers=2
    )
    d_before = [p.detach().clone() for p in module.discriminator.parameters()]
    trainer = _fit(module, tmp_path, steps=2)
    assert all(torch.equal(a, b) for a, b in zip(d_before, module.discriminator.parameters()))
    assert "train/d_loss" not in trainer.callback_metrics


def test_gan_losses_and_patch_discriminator():
    disc = PatchDiscriminator(3, channels=8, layers=3, norm="group")
    logits = disc(torch.randn(2, 3, 64, 64))
    assert logits.ndim == 4 and logits.shape[1] == 1 and logits.shape[-1] > 1  # one logit per patch
    real, fake = torch.full((4,), 2.0), torch.full((4,), -2.0)
    assert discriminator_loss(real, fake, "hinge") == 0  # confident and right: no hinge loss
    assert generator_loss(fake, "hinge") == 2.0
    assert discriminator_loss(real, fake, "lsgan") == pytest.approx(0.5 * (1.0 + 4.0))
    with pytest.raises(ValueError, match="GAN loss"):
        generator_loss(fake, "wasserstein")


def test_decoder_only_fine_tuning_keeps_the_encoder(tmp_path):
    module = tiny_vae_module(train_encoder=False)
    enc_before = [p.detach().clone() for p in module.vae.encoder.parameters()]
    dec_before = [p.detach().clone() for p in module.vae.decoder.parameters()]
    _fit(module, tmp_path, steps=2)
    assert all(torch.equal(a, b) for a, b in zip(enc_before, module.vae.encoder.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(dec_before, module.vae.decoder.parameters()))


def test_checkpoint_and_export_feed_the_ldm(tmp_path):
    module = tiny_vae_module(scaling_factor="estimate")
    trainer = _fit(module, tmp_path, steps=3)
    ckpt = tmp_path / "vae.ckpt"
    trainer.save_checkpoint(ckpt)
    scale = module.estimated_scaling_factor()
    # the LDM takes the VAE straight from the Lightning checkpoint, with its estimated scale
    ldm = tiny_ldm(vae=str(ckpt))
    assert ldm.vae_scaling_factor == pytest.approx(scale)
    for a, b in zip(ldm.vae.state_dict().values(), module.vae.state_dict().values()):
        assert torch.equal(a, b)
    # and from the exported diffusers folders (module method and checkpoint command agree)
    folder = module.export(str(tmp_path / "exported"))
    from jsonargparse import auto_cli

    # export_vae is a typed, documented function: usable as a CLI subcommand as is
    folder2 = auto_cli(
        export_vae, args=["--checkpoint", str(ckpt), "--output_dir", str(tmp_path / "exported2")], as_positional=False
    )
    for path in (folder, folder2):
        vae = build_vae(path)
        assert vae.config.scaling_factor == pytest.approx(scale)
        for a, b in zip(vae.state_dict().values(), module.vae.state_dict().values()):
            assert torch.equal(a, b)


PERCEPTUAL = {"class_path": "tests.helpers.TinyPerceptual", "init_args": {"channels": 4}}


def test_perceptual_term_is_frozen_weighted_and_kept_out_of_checkpoints(tmp_path):
    from tests.helpers import TinyPerceptual

    module = tiny_vae_module(perceptual=PERCEPTUAL, perceptual_weight=0.5)
    assert "_perceptual_net" not in module.__dict__  # built on first use only
    images, recon, posterior = _images_recon_posterior(module)
    terms = module.loss_terms(images, recon, posterior)
    expected = TinyPerceptual(channels=4)(recon, images).mean()
    torch.testing.assert_close(terms["perceptual"], expected)
    torch.testing.assert_close(module.weighted_reconstruction(terms), terms["rec"] + 0.5 * expected)
    net = module.perceptual_network()
    before = [p.detach().clone() for p in net.parameters()]
    trainer = _fit(module, tmp_path, steps=3)
    assert "train/perceptual" in trainer.callback_metrics
    assert all(not p.requires_grad for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert not any("perceptual" in key for key in module.state_dict())
    optimizer_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not optimizer_params & {id(p) for p in net.parameters()}
    # the checkpoint holds the spec, not the network: loading needs nothing beyond the VAE
    trainer.save_checkpoint(tmp_path / "vae.ckpt")
    loaded = SpectrogramVAE.load_from_checkpoint(tmp_path / "vae.ckpt")
    assert loaded.hparams.perceptual == PERCEPTUAL and "_perceptual_net" not in loaded.__dict__


def test_bad_options_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="reconstruction_loss"):
        tiny_vae_module(reconstruction_loss="huber")
    with pytest.raises(ValueError, match="scaling_factor"):
        tiny_vae_module(scaling_factor="auto")
    with pytest.raises(ValueError, match="discriminator norm"):
        tiny_vae_module(adversarial_weight=0.1, discriminator_norm="instance")
    with pytest.raises(ValueError, match="perceptual must be"):
        tiny_vae_module(perceptual={"net": "vgg"})
    missing = tiny_vae_module(perceptual={"class_path": "no_such_package.LPIPS"})
    with pytest.raises(ImportError, match="'no_such_package.LPIPS' cannot be imported.*pip install lpips"):
        missing.loss_terms(*_images_recon_posterior(missing))
    bad = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ValueError, match="not a SpectrogramVAE checkpoint"):
        build_vae(str(bad))


def test_validation_judges_reconstructions_of_synthetic_captions():
    from tests.vocoder.test_module import _synthetic_batch

    torch.manual_seed(0)
    module = tiny_vae_module(val_griffin_lim={"n_iter": 2})
    batch = _synthetic_batch(seconds=0.6)  # fits the tiny front end's 64 frames of 160 samples
    module.validation_step(batch, 0)
    metric = module.val_alignment
    assert float(metric.clips) == 2 and float(metric.unparseable) == 1 and float(metric.attributes_judged) == 7
    assert "_validation_decoder" in module.__dict__ and "_validation_decoder" not in dict(module.named_modules())
    too_long = tiny_vae_module()
    too_long.validation_step(_synthetic_batch(seconds=1.0), 0)  # longer than n_frames: cropped, not judged
    assert float(too_long.val_alignment.clips) == 0
