"""``SpectrogramVAE``: train or fine-tune an ``AutoencoderKL`` on Auffusion's spectrogram images.

Loss = reconstruction (L1 or MSE on the image) + ``kl_weight`` x KL + ``logmel_l1_weight`` x L1 in the
log-mel domain (+ ``perceptual_weight`` x a frozen perceptual distance such as LPIPS, named by
``perceptual``) (+ ``adversarial_weight`` x PatchGAN term from ``adversarial_start_step``, adaptively
balanced against the reconstruction gradient at the decoder's last layer, as latent-diffusion VAEs are
trained). The KL is the per-sample sum over latent elements divided by the image's element count, so
``kl_weight`` has the meaning it has in Stable Diffusion's VAE recipe (1e-6) relative to a per-pixel
reconstruction mean.

``train_encoder: false`` fine-tunes only the decoder, which keeps the latent space (and so any U-Net
trained on it, e.g. SD-1.5's) valid. ``scaling_factor: estimate`` measures 1 / std of the latents during
training and writes it into the VAE config (what the LDM multiplies latents by); ``keep`` leaves the
config's value (0.18215 for SD's VAE).
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import asdict
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable

from lightning_auffusion.audio import AuffusionFrontend, ImageConfig, MelConfig
from lightning_auffusion.coerce import as_dataclass
from lightning_auffusion.diffusion.unet_factory import SD15_REPO, build_vae
from lightning_auffusion.diffusion.vae_losses import (
    GAN_LOSSES,
    PatchDiscriminator,
    adaptive_gan_weight,
    discriminator_loss,
    generator_loss,
)
from lightning_auffusion.errors import UserInputError
from lightning_auffusion.metrics.alignment import AlignmentAccuracy
from lightning_auffusion.optim import step_without_counting
from lightning_auffusion.vocoder.griffin_lim import GriffinLim, GriffinLimConfig

log = logging.getLogger(__name__)


class SpectrogramVAE(LightningModule):
    """AutoencoderKL on spectrogram images (waveform batches go through the Auffusion front end).

    Args:
        vae: diffusers layout/hub id (subfolder ``vae``), a VAE folder, a config dict (random weights), or a
            ``.ckpt`` of this module to continue from.
        mel, image, n_frames, peak_normalize: the audio front end (defaults = Auffusion).
        reconstruction_loss: "l1" or "mse" on the [-1, 1] image.
        kl_weight: weight of the KL term (Stable Diffusion's VAE: 1e-6).
        logmel_l1_weight: weight of an L1 term on the decoded log-mel (natural-log units).
        perceptual: a frozen perceptual distance as ``{"class_path": ..., "init_args": {...}}``, called as
            ``net(reconstruction, image)`` on the [-1, 1] 3-channel images and averaged, e.g.
            ``{"class_path": "lpips.LPIPS", "init_args": {"net": "vgg"}}`` (``pip install lpips``; it fetches
            its backbone weights on first use). Built on first use, kept out of checkpoints; None = off.
        perceptual_weight: weight of the perceptual term (Stable Diffusion's VAE recipe: 1.0).
        adversarial_weight: 0 disables the discriminator; otherwise the PatchGAN weight.
        adversarial_start_step: autoencoder step from which the GAN terms switch on.
        adaptive_adversarial_weight: scale the GAN term by the gradient-norm ratio at the decoder output layer.
        gan_loss: "hinge", "vanilla" or "lsgan".
        discriminator_channels, discriminator_layers, discriminator_norm: the PatchGAN.
        learning_rate, betas: Adam for autoencoder and discriminator (unless ``optimizer`` /
            ``discriminator_optimizer`` callables are given); ``discriminator_learning_rate`` None = same.
        sample_posterior: decode a posterior sample (True) or its mean.
        train_encoder: False trains only the decoder (keeps the latent space).
        scaling_factor: "estimate" (1 / running std of the latents) or "keep" (the VAE config's value).
        scaling_momentum: momentum of the running latent statistics.
        gradient_clip_val: clip the autoencoder's gradient norm (manual optimisation ignores the Trainer's).
        gradient_checkpointing: trade compute for memory in the VAE.
        val_alignment_loudness: judge validation reconstructions of clips whose captions follow the synthetic
            grammar with the analyser (this loudness mode), decoded to audio by ``val_vocoder`` or Griffin-Lim,
            and log ``val/alignment/<accuracy>``; only clips whose window holds the whole clip (the batch's
            ``complete``) and fits the front end's ``n_frames`` are judged. None: off.
        val_vocoder: the vocoder for that judgement (any source ``load_vocoder`` accepts; kept out of
            checkpoints); None: Griffin-Lim with ``val_griffin_lim``.
        val_griffin_lim: Griffin-Lim settings when no ``val_vocoder`` is given.
    """

    def __init__(
        self,
        vae: str | dict[str, Any] = SD15_REPO,
        mel: MelConfig | None = None,
        image: ImageConfig | None = None,
        n_frames: int | None = 1024,
        peak_normalize: bool = True,
        reconstruction_loss: str = "l1",
        kl_weight: float = 1e-6,
        logmel_l1_weight: float = 0.0,
        perceptual: dict[str, Any] | None = None,
        perceptual_weight: float = 1.0,
        adversarial_weight: float = 0.0,
        adversarial_start_step: int = 50001,
        adaptive_adversarial_weight: bool = True,
        gan_loss: str = "hinge",
        discriminator_channels: int = 64,
        discriminator_layers: int = 3,
        discriminator_norm: str = "batch",
        learning_rate: float = 4.5e-6,
        betas: tuple[float, float] = (0.5, 0.9),
        discriminator_learning_rate: float | None = None,
        optimizer: OptimizerCallable | None = None,
        discriminator_optimizer: OptimizerCallable | None = None,
        sample_posterior: bool = True,
        train_encoder: bool = True,
        scaling_factor: str = "keep",
        scaling_momentum: float = 0.99,
        gradient_clip_val: float | None = None,
        gradient_checkpointing: bool = False,
        val_alignment_loudness: Literal["relative", "absolute"] | None = "relative",
        val_vocoder: str | None = None,
        val_griffin_lim: GriffinLimConfig | None = None,
    ) -> None:
        super().__init__()
        if reconstruction_loss not in ("l1", "mse"):
            raise UserInputError(f"reconstruction_loss must be 'l1' or 'mse', got {reconstruction_loss!r}")
        if gan_loss not in GAN_LOSSES:
            raise UserInputError(f"gan_loss must be one of {GAN_LOSSES}, got {gan_loss!r}")
        if scaling_factor not in ("estimate", "keep"):
            raise UserInputError(f"scaling_factor must be 'estimate' or 'keep', got {scaling_factor!r}")
        if perceptual is not None and not isinstance(perceptual.get("class_path"), str):
            raise UserInputError(
                f"perceptual must be {{'class_path': 'package.Class', 'init_args': {{...}}}}, got {perceptual!r}"
            )
        mel = as_dataclass(mel, MelConfig)
        image = as_dataclass(image, ImageConfig)
        val_griffin_lim = as_dataclass(val_griffin_lim, GriffinLimConfig) or GriffinLimConfig()
        self.save_hyperparameters(ignore=["optimizer", "discriminator_optimizer"])
        self.hparams["val_griffin_lim"] = asdict(val_griffin_lim)
        self.hparams["mel"] = asdict(mel) if mel is not None else None
        self.hparams["image"] = asdict(image) if image is not None else None
        self.automatic_optimization = False
        self.frontend = AuffusionFrontend(mel, image, n_frames=n_frames, peak_normalize=peak_normalize)
        self.vae = build_vae(vae)
        if gradient_checkpointing:
            self.vae.enable_gradient_checkpointing()
        if not train_encoder:
            self.vae.encoder.requires_grad_(False)
            if getattr(self.vae, "quant_conv", None) is not None:
                self.vae.quant_conv.requires_grad_(False)
        self.discriminator = (
            PatchDiscriminator(
                self.vae.config.out_channels, discriminator_channels, discriminator_layers, discriminator_norm
            )
            if adversarial_weight > 0
            else None
        )
        self.optimizer_factory = optimizer
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.register_buffer("ae_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("latent_mean", torch.zeros(()))
        self.register_buffer("latent_var", torch.ones(()))
        self.register_buffer("latent_stats_ready", torch.zeros((), dtype=torch.bool))
        self.val_alignment = (
            None if val_alignment_loudness is None else AlignmentAccuracy(loudness=val_alignment_loudness)
        )

    # ------------------------------------------------------------------ forward pieces
    def images_from_audio(self, audio: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return self.frontend(audio.float())

    def reconstruct(self, images: torch.Tensor, sample: bool | None = None) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """(reconstruction, posterior, latent) of ``images``."""
        sample = self.hparams.sample_posterior if sample is None else sample
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.hparams.train_encoder):
            posterior = self.vae.encode(images).latent_dist
        z = posterior.sample() if sample else posterior.mode()
        return self.vae.decode(z).sample, posterior, z

    def perceptual_network(self) -> torch.nn.Module | None:
        """The frozen perceptual network (built on first call; not a submodule, so not in checkpoints)."""
        spec = self.hparams.perceptual
        if spec is None or not self.hparams.perceptual_weight:
            return None
        net = self.__dict__.get("_perceptual_net")
        if net is None:
            module_name, _, class_name = spec["class_path"].rpartition(".")
            try:
                cls = getattr(importlib.import_module(module_name), class_name)
            except (ImportError, AttributeError, ValueError) as error:
                raise ImportError(
                    f"perceptual class_path {spec['class_path']!r} cannot be imported ({error}); install its package "
                    "(e.g. `pip install lpips`) or set perceptual: null"
                ) from error
            net = cls(**dict(spec.get("init_args") or {}))
            net.eval().requires_grad_(False)
            self.__dict__["_perceptual_net"] = net  # bypasses nn.Module registration on purpose
        return net

    def loss_terms(self, images: torch.Tensor, recon: torch.Tensor, posterior: Any) -> dict[str, torch.Tensor]:
        recon32, images32 = recon.float(), images.float()
        if self.hparams.reconstruction_loss == "l1":
            rec = (recon32 - images32).abs().mean()
        else:
            rec = F.mse_loss(recon32, images32)
        pixels = images[0].numel()
        kl = posterior.kl().float().mean() / pixels
        terms = {"rec": rec, "kl": kl}
        if self.hparams.logmel_l1_weight > 0 or not self.training:
            with torch.autocast(device_type=images.device.type, enabled=False):
                terms["logmel_l1"] = (
                    (self.frontend.image_to_logmel(recon32) - self.frontend.image_to_logmel(images32)).abs().mean()
                )
        net = self.perceptual_network()
        if net is not None:
            net.to(images.device)
            terms["perceptual"] = net(recon32, images32).float().mean()
        return terms

    def weighted_reconstruction(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reconstruction + weighted log-mel L1 + weighted perceptual term (what the GAN weight balances against)."""
        hp = self.hparams
        nll = terms["rec"]
        if "logmel_l1" in terms and hp.logmel_l1_weight:
            nll = nll + hp.logmel_l1_weight * terms["logmel_l1"]
        if "perceptual" in terms:
            nll = nll + hp.perceptual_weight * terms["perceptual"]
        return nll

    def _update_latent_stats(self, z: torch.Tensor) -> None:
        z = z.detach().float()
        mean, var = z.mean(), z.var()
        if not bool(self.latent_stats_ready):
            self.latent_mean.copy_(mean)
            self.latent_var.copy_(var)
            self.latent_stats_ready.fill_(True)
        else:
            m = self.hparams.scaling_momentum
            self.latent_mean.mul_(m).add_((1 - m) * mean)
            self.latent_var.mul_(m).add_((1 - m) * var)

    def estimated_scaling_factor(self) -> float | None:
        if not bool(self.latent_stats_ready):
            return None
        return float(1.0 / self.latent_var.clamp_min(1e-12).sqrt())

    def gan_active(self) -> bool:
        return self.discriminator is not None and int(self.ae_steps) >= self.hparams.adversarial_start_step

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        optimizers = self.optimizers()
        opt_ae, opt_d = optimizers if isinstance(optimizers, (list, tuple)) else (optimizers, None)
        images = self.images_from_audio(batch["audio"])
        recon, posterior, z = self.reconstruct(images)
        self._update_latent_stats(z)
        terms = self.loss_terms(images, recon, posterior)
        hp = self.hparams
        nll = self.weighted_reconstruction(terms)
        loss = nll + hp.kl_weight * terms["kl"]
        gan_on = self.gan_active()
        if gan_on:
            fake_logits = self.discriminator(recon)
            g_loss = generator_loss(fake_logits, hp.gan_loss)
            weight = torch.tensor(hp.adversarial_weight, device=loss.device)
            if hp.adaptive_adversarial_weight:
                weight = weight * adaptive_gan_weight(nll, g_loss, self.vae.decoder.conv_out.weight)
            loss = loss + weight * g_loss
            terms["g_adv"], terms["gan_weight"] = g_loss, weight
        opt_ae.zero_grad()
        self.manual_backward(loss)
        if hp.gradient_clip_val:
            self.clip_gradients(opt_ae, gradient_clip_val=hp.gradient_clip_val, gradient_clip_algorithm="norm")
        opt_ae.step()
        if gan_on:
            real_logits = self.discriminator(images.detach())
            fake_logits = self.discriminator(recon.detach())
            d_loss = discriminator_loss(real_logits, fake_logits, hp.gan_loss)
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            step_without_counting(opt_d)  # global_step counts batches (autoencoder steps), as for the vocoder
            terms["d_loss"] = d_loss
        self.ae_steps += 1
        batch_size = images.shape[0]
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        for name, value in terms.items():
            self.log(f"train/{name}", torch.as_tensor(value).detach().float(), batch_size=batch_size)
        scale = self.estimated_scaling_factor()
        if scale is not None and hp.scaling_factor == "estimate":
            self.log("train/latent_scaling_factor", scale, batch_size=batch_size)
        return loss.detach()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images = self.images_from_audio(batch["audio"])
        recon, posterior, _ = self.reconstruct(images, sample=False)
        terms = self.loss_terms(images, recon, posterior)
        loss = self.weighted_reconstruction(terms) + self.hparams.kl_weight * terms["kl"]
        batch_size = images.shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=True)
        for name, value in terms.items():
            self.log(f"val/{name}", value, batch_size=batch_size, sync_dist=True)
        if self.val_alignment is not None and "caption" in batch:
            self._judge_reconstructions(batch, recon)
        return loss

    def validation_decoder(self) -> torch.nn.Module:
        """Log-mel -> audio for the validation alignment: ``val_vocoder`` or Griffin-Lim (built on first use,
        not a submodule, so not in checkpoints)."""
        decoder = self.__dict__.get("_validation_decoder")
        if decoder is None:
            if self.hparams.val_vocoder:
                from lightning_auffusion.vocoder.checkpoint import load_vocoder

                decoder = load_vocoder(self.hparams.val_vocoder).eval().requires_grad_(False)
                decoder.config.check_compatible(self.frontend.mel_config, "the VAE's mel front end")
            else:
                decoder = GriffinLim(self.frontend.mel_config, GriffinLimConfig(**self.hparams.val_griffin_lim))
            self.__dict__["_validation_decoder"] = decoder  # bypasses nn.Module registration on purpose
        return decoder

    @torch.no_grad()
    def _judge_reconstructions(self, batch: dict[str, Any], recon: torch.Tensor) -> None:
        audio = batch["audio"]
        lengths = batch.get("num_samples")
        lengths = torch.full((audio.shape[0],), audio.shape[1]) if lengths is None else lengths.cpu()
        complete = batch.get("complete")
        complete = torch.ones(audio.shape[0], dtype=torch.bool) if complete is None else complete.cpu()
        if self.frontend.n_frames is not None:  # the front end crops longer clips to n_frames
            complete = complete & (lengths <= self.frontend.n_frames * self.frontend.hop_length)
        if not bool(complete.any()):
            return
        decoder = self.validation_decoder().to(recon.device)
        with torch.autocast(device_type=recon.device.type, enabled=False):
            logmel = self.frontend.image_to_logmel(recon.float().clamp(-1.0, 1.0))
            waves = decoder(logmel)
        waves = waves.squeeze(1) if waves.dim() == 3 else waves
        self.val_alignment.update_batch(waves.float(), lengths, batch["caption"], self.frontend.sample_rate, complete)

    def on_validation_epoch_end(self) -> None:
        if self.val_alignment is not None:
            values = self.val_alignment.loggable("val/alignment/")
            if values:
                self.log_dict(values)
            self.val_alignment.reset()

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.vae.parameters() if p.requires_grad]
        if self.optimizer_factory is not None:
            opt_ae = self.optimizer_factory(params)
        else:
            opt_ae = torch.optim.Adam(params, lr=hp.learning_rate, betas=tuple(hp.betas))
        if self.discriminator is None:
            return opt_ae
        d_params = list(self.discriminator.parameters())
        if self.discriminator_optimizer_factory is not None:
            opt_d = self.discriminator_optimizer_factory(d_params)
        else:
            opt_d = torch.optim.Adam(
                d_params, lr=hp.discriminator_learning_rate or hp.learning_rate, betas=tuple(hp.betas)
            )
        return [opt_ae, opt_d]

    # ------------------------------------------------------------------ checkpoints and export
    def vae_config(self) -> dict[str, Any]:
        """The VAE's diffusers config, with the estimated ``scaling_factor`` when so configured."""
        config = dict(self.vae.config)
        config.pop("_use_default_values", None)  # else from_config would reset those keys to their defaults
        scale = self.estimated_scaling_factor()
        if self.hparams.scaling_factor == "estimate" and scale is not None:
            config["scaling_factor"] = scale
        return config

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vae_config"] = self.vae_config()

    def export(self, output_dir: str) -> str:
        """Write the VAE as a diffusers ``AutoencoderKL`` folder (``save_pretrained``) and return its path."""
        scale = self.vae_config().get("scaling_factor")
        if scale is not None and scale != self.vae.config.get("scaling_factor"):
            self.vae.register_to_config(scaling_factor=scale)
        os.makedirs(output_dir, exist_ok=True)
        self.vae.save_pretrained(output_dir, safe_serialization=True)
        log.info("wrote VAE (scaling factor %s) to %s", self.vae.config.get("scaling_factor"), output_dir)
        return output_dir


def export_vae(checkpoint: str, output_dir: str = "outputs/vae") -> str:
    """Export a ``SpectrogramVAE`` Lightning checkpoint to a diffusers ``AutoencoderKL`` folder.

    Args:
        checkpoint: the ``.ckpt`` written by ``fit --config conf/vae/...yaml``.
        output_dir: destination folder (config.json + weights), loadable as the LDM's ``vae``.
    """
    from lightning_auffusion.diffusion.unet_factory import vae_from_lightning_checkpoint

    vae = vae_from_lightning_checkpoint(checkpoint)
    os.makedirs(output_dir, exist_ok=True)
    vae.save_pretrained(output_dir, safe_serialization=True)
    return output_dir
