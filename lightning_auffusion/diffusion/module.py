"""``AuffusionLDM``: fine-tune a Stable Diffusion U-Net on spectrogram-image latents, as Auffusion does.

One training step: waveform -> spectrogram image (the audio front end) -> frozen VAE posterior sample
x 0.18215 -> DDPM noise at a uniform random timestep -> U-Net conditioned on the text encoders' adapted
sequence (each encoder dropped independently, 10% by default) -> MSE against the noise. Only the U-Net
(and the small condition adapters, ``train_adapters``) train; VAE, text encoders and vocoder are frozen.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lightning_auffusion.audio import AuffusionFrontend, ImageConfig, MelConfig
from lightning_auffusion.coerce import as_dataclass
from lightning_auffusion.diffusion.conditioning import TextConditioner, default_encoders
from lightning_auffusion.diffusion.ema import EMAConfig, make_ema, move_ema, swapped_in
from lightning_auffusion.diffusion.encoders import EncoderSpec
from lightning_auffusion.diffusion.latent_cache import LatentCache, fingerprint
from lightning_auffusion.diffusion.lora import LoRAConfig, add_lora, is_lora_key, lora_hparams
from lightning_auffusion.diffusion.loss_weighting import check_switches, min_snr_weights, offset_noise, weighted_mse
from lightning_auffusion.diffusion.positions import (
    check_position_channels,
    with_frame_positions,
)
from lightning_auffusion.diffusion.sampling import DEFAULT_SAMPLING
from lightning_auffusion.diffusion.schedulers import build_noise_scheduler
from lightning_auffusion.diffusion.unet_factory import (
    SD15_REPO,
    SD15_VAE_SCALING_FACTOR,
    build_unet,
    build_vae,
    prepare_unet,
)
from lightning_auffusion.errors import MissingInputError, UserInputError

log = logging.getLogger(__name__)

FROZEN_PREFIXES = ("vae.", "conditioner.encoders.", "vocoder.")
Generators = torch.Generator | list[torch.Generator] | None


def _as_list(generator: Generators) -> list[torch.Generator]:
    return generator if isinstance(generator, list) else [generator]


def randn_rows(shape: torch.Size, generator: Generators, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal noise of ``shape``; with a list of generators, row ``i`` drawn from generator ``i``."""
    if not isinstance(generator, list):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    return torch.stack([torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]).to(
        device
    )


def load_frozen_vocoder(path: str) -> torch.nn.Module:
    """The HiFi-GAN generator of a trained vocoder at ``path``, in eval mode with no gradients."""
    from lightning_auffusion.vocoder.checkpoint import load_vocoder

    vocoder = load_vocoder(path)
    vocoder.eval()
    vocoder.requires_grad_(False)
    return vocoder


class AuffusionLDM(LightningModule):
    """Latent diffusion on Auffusion's (3, 256, 1024) spectrogram images.

    Args:
        unet: SD-1.5 diffusers layout (hub id or local directory; subfolder unet), a U-Net folder, or a
            dict of UNet2DConditionModel config kwargs (random weights; preset: sd15 for SD's config).
        vae: the same kinds of source (subfolder vae), or a .ckpt of SpectrogramVAE. Frozen.
        encoders: the text encoders (EncoderSpec fields); default CLIP ViT-L/14 as released.
        cache_text_embeddings: keep each caption's frozen encoder output (CPU) instead of re-encoding it.
        train_adapters: the condition adapters train with the U-Net (they start from random weights).
        mel: log-mel settings of the audio front end (MelConfig; default Auffusion's 16 kHz, 256 mels).
        image: spectrogram <-> image mapping of the front end (ImageConfig; default Auffusion's).
        n_frames: spectrogram frames per training clip (1024 = 10.24 s at hop 160); None keeps each clip's length.
        peak_normalize: peak-normalise each clip before the log-mel, as Auffusion does.
        vocoder: path of a trained vocoder (vocoder .ckpt or exported folder); frozen, for sampling.
        waveform_decoder: how sampled log-mels become audio: vocoder (the vocoder above; Griffin-Lim, with a
            warning, when none is given) or griffin_lim (always, as the Riffusion baseline does).
        griffin_lim_iters: Griffin-Lim iterations when it decodes.
        noise_scheduler: DDPM training-schedule overrides (dict) or a layout with scheduler/; SD-1.5's by default.
        vae_scaling_factor: latent scale; None takes the VAE config's scaling_factor (0.18215 for SD).
        sample_posterior: sample the VAE posterior (as SD training does) instead of taking its mean.
        cache_latents: cache each un-cropped clip's VAE posterior by its key (see diffusion.latent_cache).
        learning_rate: learning rate of the default optimiser, AdamW, constant (3e-5 as released).
        weight_decay: weight decay of the default optimiser (0.01).
        optimizer: an optimiser replacing the default (optimizer: class_path: torch.optim.AdamW in the config).
        lr_scheduler: a learning-rate scheduler (lr_scheduler: class_path: ... in the config); none by default.
        lr_scheduler_interval: when lr_scheduler steps: every optimiser step or every epoch.
        use_ema: keep an EMA of the U-Net, used for validation (see ema_for_validation), sampling and export.
        ema_config: EMA decay settings (EMAConfig; decay 0.9999, power 2/3 as released).
        ema_for_validation: with use_ema, validate and sample during training with the EMA weights.
        attention: attention kernel: sdpa (PyTorch scaled-dot-product), xformers (pip install xformers) or math.
        gradient_checkpointing: recompute U-Net activations in the backward pass (less memory, slower).
        channels_last: U-Net in channels-last memory format (faster convolutions on recent GPUs).
        compile: torch.compile the U-Net.
        compile_mode: torch.compile mode (default, reduce-overhead, max-autotune); None: torch's default.
        sampling: defaults for predict and the sampling callbacks (scheduler, num_inference_steps,
            guidance_scale, seed, duration_seconds).
        save_frozen_weights: keep the frozen VAE/encoder/vocoder weights in checkpoints (False: smaller
            checkpoints; the frozen parts are rebuilt from their sources when the checkpoint is loaded).
        validation_seed: seed of the noise, timesteps and posterior samples of the validation loss.
        frame_position_channels: sine/cosine channels of each latent frame's position in the clip appended to the
            U-Net input (diffusion.positions; the U-Net's in_channels = latent channels + this). 0: none,
            as released; small U-Nets (the CPU quickstart) use them to place consecutive events in time.
        lora: LoRA fine-tuning (diffusion.lora.LoRAConfig: rank, alpha, target_modules, dropout, init): the U-Net is
            frozen and only its adapters train; checkpoints keep the adapters and the U-Net's source (and the base
            weights only when unet is a config dict). None: full fine-tune, as released.
        snr_gamma: Min-SNR-gamma loss weighting (5.0 in the paper); None: plain MSE, as released.
        noise_offset: offset noise, noise + noise_offset * randn(B, C, 1, 1) (0.05-0.1 usual); 0: off, as released.
    """

    def __init__(
        self,
        unet: str | dict[str, Any] = SD15_REPO,
        vae: str | dict[str, Any] = SD15_REPO,
        encoders: list[EncoderSpec] | None = None,
        cache_text_embeddings: bool = False,
        train_adapters: bool = True,
        mel: MelConfig | None = None,
        image: ImageConfig | None = None,
        n_frames: int | None = 1024,
        peak_normalize: bool = True,
        vocoder: str | None = None,
        waveform_decoder: Literal["vocoder", "griffin_lim"] = "vocoder",
        griffin_lim_iters: int = 32,
        noise_scheduler: dict[str, Any] | str | None = None,
        vae_scaling_factor: float | None = None,
        sample_posterior: bool = True,
        cache_latents: bool = False,
        learning_rate: float = 3e-5,
        weight_decay: float = 1e-2,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["step", "epoch"] = "step",
        use_ema: bool = False,
        ema_config: EMAConfig | None = None,
        ema_for_validation: bool = True,
        attention: Literal["sdpa", "xformers", "math"] = "sdpa",
        gradient_checkpointing: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
        sampling: dict[str, Any] | None = None,
        save_frozen_weights: bool = True,
        validation_seed: int = 0,
        frame_position_channels: int = 0,
        lora: LoRAConfig | None = None,
        snr_gamma: float | None = None,
        noise_offset: float = 0.0,
    ) -> None:
        super().__init__()
        check_position_channels(frame_position_channels)
        check_switches(snr_gamma, noise_offset)
        lora = as_dataclass(lora, LoRAConfig)
        if lora is not None and use_ema:
            raise UserInputError(
                "use_ema with lora is not supported (the EMA would copy the whole frozen U-Net): set model use_ema: false"
            )
        specs = [as_dataclass(e, EncoderSpec) for e in (encoders if encoders is not None else default_encoders())]
        mel = as_dataclass(mel, MelConfig)
        image = as_dataclass(image, ImageConfig)
        ema_config = as_dataclass(ema_config, EMAConfig) or EMAConfig()
        if waveform_decoder not in ("vocoder", "griffin_lim"):
            raise UserInputError(f"waveform_decoder must be 'vocoder' or 'griffin_lim', got {waveform_decoder!r}")
        if griffin_lim_iters < 1:
            raise UserInputError(f"griffin_lim_iters must be >= 1, got {griffin_lim_iters}")
        if lr_scheduler_interval not in ("step", "epoch"):
            raise UserInputError(f"lr_scheduler_interval must be 'step' or 'epoch', got {lr_scheduler_interval!r}")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        # plain containers in the saved hyper-parameters (readable hparams.yaml, loadable checkpoints)
        self.hparams["encoders"] = [asdict(s) for s in specs]
        self.hparams["mel"] = asdict(mel) if mel is not None else None
        self.hparams["image"] = asdict(image) if image is not None else None
        self.hparams["ema_config"] = asdict(ema_config)
        self.hparams["lora"] = lora_hparams(lora)

        self.frontend = AuffusionFrontend(mel, image, n_frames=n_frames, peak_normalize=peak_normalize)
        self.vae = build_vae(vae)
        self.vae.eval()
        self.vae.requires_grad_(False)
        self.unet = prepare_unet(
            build_unet(unet),
            attention=attention,
            gradient_checkpointing=gradient_checkpointing,
            channels_last=channels_last,
            compile=compile,
            compile_mode=compile_mode,
        )
        if lora is not None:
            add_lora(self.unet, lora)
        latent_channels = int(getattr(self.vae.config, "latent_channels", 4))
        if int(self.unet.config.in_channels) != latent_channels + frame_position_channels:
            raise ValueError(
                f"the U-Net takes {self.unet.config.in_channels} input channels, but the VAE gives {latent_channels} latent "
                f"channels and frame_position_channels is {frame_position_channels}: set unet in_channels to "
                f"{latent_channels + frame_position_channels}"
            )
        self.conditioner = TextConditioner(
            specs, cross_attention_dim=int(self.unet.config.cross_attention_dim), cache_embeddings=cache_text_embeddings
        )
        self.conditioner.adapters.requires_grad_(train_adapters)
        self.vocoder = load_frozen_vocoder(vocoder) if vocoder else None
        self.noise_scheduler = build_noise_scheduler(noise_scheduler)
        if vae_scaling_factor is None:
            vae_scaling_factor = getattr(self.vae.config, "scaling_factor", None) or SD15_VAE_SCALING_FACTOR
        self.vae_scaling_factor = float(vae_scaling_factor)
        self.sampling = {**DEFAULT_SAMPLING, **(sampling or {})}
        self.ema = make_ema(self.unet, ema_config) if use_ema else None
        self.latent_cache = LatentCache() if cache_latents else None
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self._ema_validation: contextlib.ExitStack | None = None

    # ------------------------------------------------------------------ trainable parts
    def trainable_modules(self) -> list[torch.nn.Module]:
        parts: list[torch.nn.Module] = [self.unet, *self.conditioner.trainable_encoders()]
        if self.hparams.train_adapters:
            parts.append(self.conditioner.adapters)
        return parts

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        params = [p for m in self.trainable_modules() for p in m.parameters()]
        if self.hparams.lora is not None:  # the frozen base U-Net stays out of the optimiser
            params = [p for p in params if p.requires_grad]
        return params

    def train(self, mode: bool = True) -> AuffusionLDM:
        super().train(mode)
        self.vae.eval()  # frozen parts never switch to training behaviour
        if self.vocoder is not None:
            self.vocoder.eval()
        return self

    # ------------------------------------------------------------------ audio -> latents
    def images_from_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) waveform -> (B, 3, n_mels, n_frames) image; the front end always runs in float32."""
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return self.frontend(audio.float())

    @torch.no_grad()
    def posterior_parameters(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen VAE's posterior (mean and log-variance stacked, (B, 2C, h, w)) of ``images``."""
        return self.vae.encode(images.to(self.vae.dtype)).latent_dist.parameters

    def latents_from_posterior(self, parameters: torch.Tensor, generator: Generators = None) -> torch.Tensor:
        mean, logvar = parameters.float().chunk(2, dim=1)
        if not self.hparams.sample_posterior:
            return mean * self.vae_scaling_factor
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        noise = randn_rows(mean.shape, generator, mean.device, mean.dtype)
        return (mean + std * noise) * self.vae_scaling_factor

    @property
    def latent_fingerprint(self) -> str:
        """Fingerprint of the frozen VAE and front end (diffusion.latent_fingerprint), computed once."""
        if getattr(self, "_latent_fingerprint", None) is None:
            from lightning_auffusion.diffusion.latent_fingerprint import latent_fingerprint

            self._latent_fingerprint = latent_fingerprint(self.vae, self.frontend)
        return self._latent_fingerprint

    def check_latent_batch(self, batch: dict[str, Any]) -> None:
        """Refuse pre-encoded latents (``encode``) made with another VAE or front end than this model's."""
        prints = set(batch.get("fingerprint") or [""])
        if prints != {self.latent_fingerprint}:
            shown = ", ".join(sorted(p[:12] or "none" for p in prints))
            raise UserInputError(
                f"latent shards (fingerprint {shown}) were encoded with another VAE or front end than this model's "
                f"({self.latent_fingerprint[:12]}): re-encode them with this model's vae/mel/image settings "
                "(python -m lightning_auffusion encode --ldm_config <this config> ...) or train from the audio shards"
            )

    def precomputed_text(self, batch: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """The batch's stored frozen-encoder outputs whose encoder spec matches this model's, by encoder name."""
        stored = batch.get("text")
        if not stored:
            return None
        from lightning_auffusion.diffusion.latent_fingerprint import text_fingerprint

        prints = batch.get("text_fingerprints") or {}
        if getattr(self, "_text_fingerprints", None) is None:  # frozen encoders: hashed once
            self._text_fingerprints = {
                s.name: text_fingerprint(s, m)
                for s, m in zip(self.conditioner.specs, self.conditioner.encoders)
                if not s.trainable
            }
        usable = {name: stored[name] for name in stored if prints.get(name) == self._text_fingerprints.get(name, "")}
        if len(usable) < len(stored) and not getattr(self, "_text_mismatch_reported", False):
            self._text_mismatch_reported = True
            log.warning(
                "stored text outputs of encoder(s) %s do not match this model's encoders and are recomputed",
                sorted(set(stored) - set(usable)),
            )
        return usable or None

    def posterior_from_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        """VAE posterior parameters of the batch: given directly (latent shards, after the fingerprint check) or
        computed from its audio, from the latent cache where possible."""
        if "posterior" in batch:
            self.check_latent_batch(batch)
            return batch["posterior"].to(self.device, torch.float32)
        audio = batch["audio"]
        if self.latent_cache is None or "key" not in batch or "num_samples" not in batch:
            return self.posterior_parameters(self.images_from_audio(audio))
        keys = list(batch["key"])
        prints = fingerprint(audio)
        eligible = LatentCache.cacheable(batch["num_samples"], audio.shape[-1])
        found = self.latent_cache.lookup(keys, prints, eligible)
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            fresh = self.posterior_parameters(self.images_from_audio(audio[todo]))
            for j, i in enumerate(todo):
                found[i] = fresh[j]
                if eligible[i]:
                    self.latent_cache.store(keys[i], prints[i], fresh[j])
        return torch.stack([f.to(audio.device, torch.float32) for f in found])

    # ------------------------------------------------------------------ loss
    def diffusion_loss(self, batch: dict[str, Any], generator: Generators = None, drop: bool = True) -> torch.Tensor:
        """Epsilon (or v) MSE of the U-Net on one batch; ``drop`` applies the conditioning dropout.

        ``generator`` may be one per sample (a list): each sample's draws then depend on its own generator only,
        so the loss of a sample is the same whatever batch (or rank) it is in."""
        batch_size = len(batch["caption"])
        latents = self.latents_from_posterior(self.posterior_from_batch(batch), generator)
        cpu_gen = None
        if generator is not None:
            seeds = [int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device)) for g in _as_list(generator)]
            cpu_gen = torch.Generator().manual_seed(seeds[0])
        drop_mask = self.conditioner.sample_drop_mask(batch_size, generator=cpu_gen) if drop else None
        audio_kwargs = {}
        if self.conditioner.audio_conditioned:  # AudioLDM: condition on the clip's own audio, not its caption
            if "audio" not in batch:
                raise UserInputError(
                    "clap_audio conditioning embeds each clip's audio: train it from audio shards, not latent shards"
                )
            audio_kwargs = dict(
                audio=batch["audio"], sample_rate=self.frontend.sample_rate, num_samples=batch.get("num_samples")
            )
        keys = list(batch["key"]) if "key" in batch else None
        cond = self.conditioner(
            list(batch["caption"]),
            drop_mask=drop_mask,
            keys=keys,
            precomputed=self.precomputed_text(batch),
            **audio_kwargs,
        )
        noise = randn_rows(latents.shape, generator, latents.device, latents.dtype)
        # the offset noise draws from the first generator when each row has its own (validation)
        noise = offset_noise(
            noise, self.hparams.noise_offset, generator[0] if isinstance(generator, list) else generator
        )
        steps = self.noise_scheduler.config.num_train_timesteps
        if isinstance(generator, list):
            timesteps = torch.cat([torch.randint(0, steps, (1,), generator=g, device=g.device) for g in generator]).to(
                latents.device
            )
        else:
            timesteps = torch.randint(0, steps, (batch_size,), generator=generator, device=latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        elif self.noise_scheduler.config.prediction_type == "epsilon":
            target = noise
        else:
            raise UserInputError(
                f"training supports epsilon or v_prediction, not {self.noise_scheduler.config.prediction_type!r}"
            )
        if self.hparams.channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        noisy = with_frame_positions(noisy, self.hparams.frame_position_channels)
        pred = self.unet(noisy, timesteps, encoder_hidden_states=cond).sample
        weights = None
        if self.hparams.snr_gamma is not None:
            weights = min_snr_weights(
                self.noise_scheduler.alphas_cumprod,
                timesteps,
                self.hparams.snr_gamma,
                self.noise_scheduler.config.prediction_type,
            )
        return weighted_mse(pred, target, weights)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.diffusion_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["caption"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        generator = self.validation_generators(batch, batch_idx)
        loss = self.diffusion_loss(batch, generator=generator, drop=False)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["caption"]), sync_dist=True)
        return loss

    def validation_generators(self, batch: dict[str, Any], batch_idx: int) -> Generators:
        """One generator per sample seeded from ``validation_seed`` and the clip's key (so ``val/loss``, reduced
        over ranks, is the same for any number of ranks and any batch size), or one per batch without keys."""
        if "key" not in batch:
            return torch.Generator(device=self.device).manual_seed(self.hparams.validation_seed + batch_idx)
        return [
            torch.Generator(device=self.device).manual_seed(self.hparams.validation_seed + zlib.crc32(str(k).encode()))
            for k in batch["key"]
        ]

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0, dataloader_idx: int = 0) -> Any:
        from lightning_auffusion.diffusion.sampling import generate

        prompts = batch["prompt"]
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        settings = dict(self.sampling)
        if batch.get("seed") is not None:  # per-prompt seeds from PromptDataModule: independent of the batching
            seeds = batch["seed"]
            settings["seed"] = [int(seeds)] * len(prompts) if isinstance(seeds, int) else [int(s) for s in seeds]
        return generate(self, prompts, **settings)

    # ------------------------------------------------------------------ EMA
    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """Within the block ``self.unet`` holds the EMA weights (no-op without EMA)."""
        with swapped_in(self.ema, self.unet):
            yield

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.step(self.unet.parameters())

    def _move_ema(self) -> None:
        if self.ema is not None:
            move_ema(self.ema, self.device)

    def on_fit_start(self) -> None:
        self._move_ema()

    def on_predict_start(self) -> None:
        self._move_ema()

    def on_validation_epoch_start(self) -> None:
        if self.ema is not None and self.hparams.ema_for_validation and self._ema_validation is None:
            self._ema_validation = contextlib.ExitStack()
            self._ema_validation.enter_context(self.ema_weights())

    def on_validation_epoch_end(self) -> None:
        if self._ema_validation is not None:
            self._ema_validation.close()
            self._ema_validation = None

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None:
            checkpoint["ema_state"] = self.ema.state_dict()
        if not self.hparams.save_frozen_weights:
            state = checkpoint["state_dict"]
            trained = tuple(f"conditioner.encoders.{i}." for i, s in enumerate(self.conditioner.specs) if s.trainable)
            for key in [k for k in state if k.startswith(FROZEN_PREFIXES) and not k.startswith(trained)]:
                del state[key]
        if self.hparams.lora is not None and not isinstance(self.hparams.unet, dict):
            # the base U-Net is rebuilt from its source (hub id or path) on load; a random-init (dict) base is kept
            for key in [k for k in checkpoint["state_dict"] if k.startswith("unet.") and not is_lora_key(k)]:
                del checkpoint["state_dict"][key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict")
        if state is not None:  # frozen parts left out of the checkpoint: keep the ones rebuilt from their sources
            lora = self.hparams.lora is not None
            for key, value in self.state_dict().items():
                rebuilt = key.startswith(FROZEN_PREFIXES) or (lora and key.startswith("unet.") and not is_lora_key(key))
                if rebuilt and key not in state:
                    state[key] = value
        if self.ema is None:
            return
        if "ema_state" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema_state"])
        else:
            log.warning("checkpoint has no EMA state: the EMA restarts from the loaded U-Net weights")
            self._restart_ema_after_load = True

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        if getattr(self, "_restart_ema_after_load", False):
            self.ema = make_ema(self.unet, EMAConfig(**self.hparams.ema_config))
            self._restart_ema_after_load = False
        return result

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        params = self.trainable_parameters()
        if self.optimizer_factory is not None:
            optimizer = self.optimizer_factory(params)
        else:
            optimizer = torch.optim.AdamW(params, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay)
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.lr_scheduler_interval},
        }


def load_ldm_checkpoint(checkpoint: str, map_location: Any = "cpu", vocoder: str | None = None) -> AuffusionLDM:
    """An ``AuffusionLDM`` from a Lightning ``.ckpt``, read with ``weights_only=True`` (never unpickled in full);
    ``vocoder`` replaces its own vocoder when given."""
    import pickle
    from pathlib import Path

    from lightning_auffusion.errors import UnsafeCheckpointError
    from lightning_auffusion.safe_load import convert_hint

    if not Path(checkpoint).is_file():
        raise MissingInputError(f"checkpoint {checkpoint} not found (a .ckpt written by `fit` with an LDM config)")
    try:
        module = AuffusionLDM.load_from_checkpoint(checkpoint, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise UnsafeCheckpointError(
            f"refused to load checkpoint {checkpoint}: it holds objects beyond tensors and plain types and "
            f"unpickling it could run code; {convert_hint(checkpoint)}"
        ) from None
    if vocoder is not None:
        module.vocoder = load_frozen_vocoder(vocoder)
    return module
