"""``VocoderModule``: HiFi-GAN GAN training at Auffusion's mel settings, with manual optimisation.

Each training step crops a random ``segment_size``-sample window from every clip of the batch (inside its
valid samples), computes its log-mel with the project's front end, and runs one discriminator update
(LSGAN on the multi-period and multi-scale discriminators) followed by one generator update
(mel-L1 x 45 + feature matching x 2 + LSGAN). During the optional warm-up (``discriminator_warmup_steps``
generator steps) the generator trains on the mel loss alone and the discriminators are not updated.

Step counting: Lightning counts every ``optimizer.step()`` of a manually optimised module, which would
make ``global_step`` advance by two per batch. The discriminator step is taken without notifying the
loop, so ``global_step``, ``max_steps``, ``val_check_interval`` and ``ModelCheckpoint(every_n_train_steps)``
all count generator steps; discriminator updates are counted in the ``discriminator_steps`` buffer.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence
from itertools import chain
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule

from lightning_auffusion.audio.mel import LogMelSpectrogram, MelConfig, peak_normalize
from lightning_auffusion.coerce import as_dataclass
from lightning_auffusion.metrics.alignment import AlignmentAccuracy
from lightning_auffusion.optim import step_without_counting
from lightning_auffusion.vocoder.config import DiscriminatorConfig, GeneratorConfig
from lightning_auffusion.vocoder.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from lightning_auffusion.vocoder.generator import HifiGanGenerator
from lightning_auffusion.vocoder.griffin_lim import GriffinLim, GriffinLimConfig
from lightning_auffusion.vocoder.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mel_l1_loss,
)
from lightning_auffusion.vocoder.metrics import LogMelL1Distance, MultiResolutionSTFTDistance
from lightning_auffusion.vocoder.stft_loss import DEFAULT_RESOLUTIONS, multi_resolution_stft_distance

log = logging.getLogger(__name__)
DEFAULT_GRIFFIN_LIM = GriffinLimConfig()  # the validation reference: 32 iterations, fast Griffin-Lim


class VocoderModule(LightningModule):
    """HiFi-GAN generator + multi-period/multi-scale discriminators, trained on waveform segments.

    Args:
        generator: generator architecture and the mel settings it consumes (V1 size at Auffusion's mels).
        discriminators: multi-period / multi-scale discriminator sizes (HiFi-GAN's).
        mel: the log-mel front end computing the generator's input; must agree with ``generator``.
        segment_size: training window in samples (a multiple of the hop).
        peak_normalize: peak-normalise each clip (valid part) to ``mel.peak_level`` before cropping, as the
            Auffusion front end does to the clips whose mels the vocoder will receive.
        learning_rate: AdamW learning rate of the generator.
        discriminator_learning_rate: AdamW learning rate of the discriminators (None: ``learning_rate``).
        adam_betas: AdamW betas.
        weight_decay: AdamW weight decay.
        lr_decay: exponential learning-rate decay factor (both optimizers).
        lr_decay_interval: apply ``lr_decay`` once per "epoch" (HiFi-GAN) or per generator "step".
        mel_loss_weight: weight of the log-mel L1 loss.
        feature_loss_weight: weight of the feature-matching loss.
        adversarial_loss_weight: weight of the generator's LSGAN loss.
        stft_loss_weight: weight of an auxiliary multi-resolution STFT loss on the generator (0: off, the
            HiFi-GAN recipe; speeds up early training, e.g. for the CPU quickstart).
        loss_mel_f_max: upper frequency of the mel used by the loss (None: Nyquist, HiFi-GAN's ``fmax_for_loss``).
        gradient_clip_val: clip each optimizer's gradient norm to this value (None: no clipping).
        discriminator_warmup_steps: generator steps trained on the mel loss alone before the GAN starts.
        val_max_seconds: crop validation clips to this many seconds (None: whole clips).
        val_griffin_lim: Griffin-Lim settings for the validation reference (None: no reference).
        stft_resolutions: (n_fft, hop, window) triples of the multi-resolution STFT distance.
        val_clips_to_return: clips per validation batch returned for sample-logging callbacks.
        init_generator: start from these generator weights (any source ``load_vocoder`` accepts).
        generator_ema_decay: keep an exponential moving average of the generator weights with this decay
            (warmed up as ``min(decay, (1 + n) / (10 + n))`` at generator step ``n``); validation, sample
            logging and export then use the average. None: no average.
        val_alignment_loudness: judge validation clips whose captions follow the synthetic grammar with the
            analyser (this loudness mode) and log ``val/alignment/<accuracy>`` (and ``val/griffin_lim/alignment/...``
            for the Griffin-Lim reference); only clips whose window holds the whole clip (the batch's
            ``complete``) are judged. None: off.
    """

    def __init__(
        self,
        generator: GeneratorConfig | None = None,
        discriminators: DiscriminatorConfig | None = None,
        mel: MelConfig | None = None,
        segment_size: int = 8320,
        peak_normalize: bool = True,
        learning_rate: float = 2e-4,
        discriminator_learning_rate: float | None = None,
        adam_betas: tuple[float, float] = (0.8, 0.99),
        weight_decay: float = 0.01,
        lr_decay: float = 0.999,
        lr_decay_interval: str = "epoch",
        mel_loss_weight: float = 45.0,
        feature_loss_weight: float = 2.0,
        adversarial_loss_weight: float = 1.0,
        stft_loss_weight: float = 0.0,
        loss_mel_f_max: float | None = None,
        gradient_clip_val: float | None = None,
        discriminator_warmup_steps: int = 0,
        val_max_seconds: float | None = None,
        val_griffin_lim: GriffinLimConfig | None = DEFAULT_GRIFFIN_LIM,
        stft_resolutions: Sequence[tuple[int, int, int]] = DEFAULT_RESOLUTIONS,
        val_clips_to_return: int = 4,
        init_generator: str | None = None,
        generator_ema_decay: float | None = None,
        val_alignment_loudness: Literal["relative", "absolute"] | None = "relative",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        gen_cfg = as_dataclass(generator, GeneratorConfig) or GeneratorConfig()
        disc_cfg = as_dataclass(discriminators, DiscriminatorConfig) or DiscriminatorConfig()
        mel_cfg = as_dataclass(mel, MelConfig) or MelConfig()
        gl_cfg = as_dataclass(val_griffin_lim, GriffinLimConfig)
        gen_cfg.check_compatible(mel_cfg, "the training mel settings (`mel`)")
        if segment_size <= 0 or segment_size % mel_cfg.hop_length:
            raise ValueError(
                f"segment_size ({segment_size}) must be a positive multiple of the hop ({mel_cfg.hop_length})"
            )
        if lr_decay_interval not in ("epoch", "step"):
            raise ValueError(f"lr_decay_interval must be 'epoch' or 'step', got {lr_decay_interval!r}")
        if discriminator_warmup_steps < 0:
            raise ValueError("discriminator_warmup_steps must be >= 0")
        if generator_ema_decay is not None and not 0.0 < generator_ema_decay < 1.0:
            raise ValueError(f"generator_ema_decay must be in (0, 1) or None, got {generator_ema_decay}")
        self.save_hyperparameters()
        # store plain dicts so checkpoints load with weights_only=True and stay readable without this code
        self.hparams.generator = gen_cfg.to_dict()
        self.hparams.discriminators = dataclasses.asdict(disc_cfg)
        self.hparams.mel = dataclasses.asdict(mel_cfg)
        self.hparams.val_griffin_lim = None if gl_cfg is None else dataclasses.asdict(gl_cfg)
        self.hparams.stft_resolutions = [list(r) for r in stft_resolutions]
        self.hparams.adam_betas = list(adam_betas)
        self._hparams_initial = copy.deepcopy(self._hparams)  # what loggers record: the same plain values

        self.generator = HifiGanGenerator(gen_cfg)
        self.generator_ema = None
        if generator_ema_decay is not None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.mpd = MultiPeriodDiscriminator(disc_cfg)
        self.msd = MultiScaleDiscriminator(disc_cfg)
        self.mel_config = mel_cfg
        self.logmel = LogMelSpectrogram(mel_cfg)
        self.loss_logmel = LogMelSpectrogram(dataclasses.replace(mel_cfg, f_max=loss_mel_f_max))
        self.griffin_lim = None if gl_cfg is None else GriffinLim(mel_cfg, gl_cfg)
        self.stft_resolutions = tuple(tuple(int(v) for v in r) for r in stft_resolutions)
        self.register_buffer("discriminator_steps", torch.tensor(0, dtype=torch.long))
        self.val_metrics = torch.nn.ModuleDict(self._metric_set(mel_cfg, stft_resolutions))
        self.val_reference_metrics = torch.nn.ModuleDict(self._metric_set(mel_cfg, stft_resolutions) if gl_cfg else {})
        self.val_alignment = torch.nn.ModuleDict()
        if val_alignment_loudness is not None:
            self.val_alignment["vocoder"] = AlignmentAccuracy(loudness=val_alignment_loudness)
            if gl_cfg is not None:
                self.val_alignment["griffin_lim"] = AlignmentAccuracy(loudness=val_alignment_loudness)

    @staticmethod
    def _metric_set(mel: MelConfig, resolutions) -> dict[str, Any]:
        return {"mel_l1": LogMelL1Distance(mel), "mrstft": MultiResolutionSTFTDistance(resolutions)}

    # ------------------------------------------------------------------ data
    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.generator(logmel)

    def compute_logmel(self, audio: torch.Tensor, for_loss: bool = False) -> torch.Tensor:
        """Log-mel in float32 with autocast off (the STFT and log need full precision)."""
        module = self.loss_logmel if for_loss else self.logmel
        if audio.dim() == 3:
            audio = audio[:, 0]
        with torch.autocast(device_type=audio.device.type, enabled=False):
            return module(audio.float())

    def _prepare(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        audio = batch["audio"]
        if audio.dim() != 2:
            raise ValueError(f"batch['audio'] must be (batch, samples) mono audio, got shape {tuple(audio.shape)}")
        audio = audio.float()
        lengths = batch.get("num_samples")
        if lengths is None:
            lengths = torch.full((audio.shape[0],), audio.shape[1], device=audio.device, dtype=torch.long)
        lengths = lengths.to(audio.device).clamp(max=audio.shape[1])
        if self.hparams.peak_normalize:
            audio = peak_normalize(audio, self.mel_config.peak_level)  # padding is zeros: the peak is the valid part's
        return audio, lengths

    def training_segments(self, batch: dict[str, Any]) -> torch.Tensor:
        """A random ``segment_size`` window inside each clip's valid samples (zero-padded when shorter)."""
        audio, lengths = self._prepare(batch)
        size = self.hparams.segment_size
        if audio.shape[1] < size:
            audio = torch.nn.functional.pad(audio, (0, size - audio.shape[1]))
        room = (lengths - size).clamp(min=0) + 1
        starts = (torch.rand(audio.shape[0], device=audio.device) * room).long().clamp(max=audio.shape[1] - size)
        index = starts[:, None] + torch.arange(size, device=audio.device)[None]
        return audio.gather(1, index)

    # ------------------------------------------------------------------ training
    @property
    def generator_steps(self) -> int:
        return self.trainer.global_step if self._trainer is not None else 0

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Clip here: under 16-mixed the precision plugin has just unscaled the gradients (in the training
        step they would still carry the loss scale)."""
        if self.hparams.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.hparams.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def _discriminate(self, audio: torch.Tensor):
        return self.mpd(audio), self.msd(audio)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        h = self.hparams
        real = self.training_segments(batch)[:, None]
        logmel = self.compute_logmel(real)
        fake = self.generator(logmel)
        adversarial = self.generator_steps >= h.discriminator_warmup_steps
        logs: dict[str, torch.Tensor] = {}

        if adversarial:
            self.toggle_optimizer(opt_d)
            (mpd_real, _), (msd_real, _) = self._discriminate(real)
            (mpd_fake, _), (msd_fake, _) = self._discriminate(fake.detach())
            loss_mpd, _, _ = discriminator_loss(mpd_real, mpd_fake)
            loss_msd, _, _ = discriminator_loss(msd_real, msd_fake)
            loss_d = loss_mpd + loss_msd
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            step_without_counting(opt_d)
            self.discriminator_steps += 1
            self.untoggle_optimizer(opt_d)
            logs.update({"train/loss_d": loss_d, "train/loss_d_mpd": loss_mpd, "train/loss_d_msd": loss_msd})

        self.toggle_optimizer(opt_g)
        loss_mel = mel_l1_loss(self.compute_logmel(real, for_loss=True), self.compute_logmel(fake, for_loss=True))
        loss_g = h.mel_loss_weight * loss_mel
        if h.stft_loss_weight:
            loss_stft = multi_resolution_stft_distance(fake, real, self.stft_resolutions).mean()
            loss_g = loss_g + h.stft_loss_weight * loss_stft
            logs["train/loss_stft"] = loss_stft
        if adversarial:
            with torch.no_grad():
                (_, mpd_feats_real), (_, msd_feats_real) = self._discriminate(real)
            (mpd_fake, mpd_feats_fake), (msd_fake, msd_feats_fake) = self._discriminate(fake)
            loss_fm = feature_matching_loss(mpd_feats_real, mpd_feats_fake) + feature_matching_loss(
                msd_feats_real, msd_feats_fake
            )
            loss_adv = generator_adversarial_loss(mpd_fake)[0] + generator_adversarial_loss(msd_fake)[0]
            loss_g = loss_g + h.feature_loss_weight * loss_fm + h.adversarial_loss_weight * loss_adv
            logs.update({"train/loss_fm": loss_fm, "train/loss_adv": loss_adv})
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        steps_before = self.generator_steps
        opt_g.step()
        self._update_generator_ema(steps_before)
        self.untoggle_optimizer(opt_g)

        if h.lr_decay_interval == "step":
            self._step_schedulers()
        logs.update(
            {"train/loss_g": loss_g, "train/loss_mel": loss_mel, "train/lr": torch.tensor(opt_g.param_groups[0]["lr"])}
        )
        self.log_dict({k: v.detach().float() for k, v in logs.items()}, prog_bar=False, batch_size=real.shape[0])
        self.log("train/mel_l1", loss_mel.detach(), prog_bar=True, batch_size=real.shape[0])

    def _step_schedulers(self) -> None:
        """Decay both learning rates; the discriminators' only once they train (not during the warm-up)."""
        schedulers = self.lr_schedulers()
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        for scheduler in schedulers:
            if scheduler is schedulers[-1] and int(self.discriminator_steps) == 0:
                continue
            scheduler.step()

    def on_train_epoch_end(self) -> None:
        if self.hparams.lr_decay_interval == "epoch":
            self._step_schedulers()

    def configure_optimizers(self):
        h = self.hparams
        betas = tuple(h.adam_betas)
        opt_g = torch.optim.AdamW(
            self.generator.parameters(), h.learning_rate, betas=betas, weight_decay=h.weight_decay
        )
        lr_d = h.learning_rate if h.discriminator_learning_rate is None else h.discriminator_learning_rate
        opt_d = torch.optim.AdamW(
            chain(self.mpd.parameters(), self.msd.parameters()), lr_d, betas=betas, weight_decay=h.weight_decay
        )
        sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, gamma=h.lr_decay)
        sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, gamma=h.lr_decay)
        return [opt_g, opt_d], [sched_g, sched_d]

    def setup(self, stage: str) -> None:
        # every stage (validate/test of the initial weights too); a checkpoint given by ckpt_path is restored
        # after setup, so it still wins
        if self.hparams.init_generator:
            from lightning_auffusion.vocoder.checkpoint import load_state_into, load_vocoder

            source = load_vocoder(self.hparams.init_generator, remove_weight_norm=False)
            self.generator.config.check_compatible(
                source.config.mel_config(), f"init_generator {self.hparams.init_generator}"
            )
            load_state_into(self.generator, source.state_dict(), self.hparams.init_generator)
            log.info("generator initialised from %s", self.hparams.init_generator)
            if self.generator_ema is not None:
                self.generator_ema.load_state_dict(self.generator.state_dict())

    @property
    def inference_generator(self) -> HifiGanGenerator:
        """The generator validation and export use: the weight average when one is kept."""
        return self.generator if self.generator_ema is None else self.generator_ema

    @torch.no_grad()
    def _update_generator_ema(self, step: int) -> None:
        """Average in the weights of generator step ``step`` (counted from 0)."""
        if self.generator_ema is None:
            return
        decay = min(self.hparams.generator_ema_decay, (1 + step) / (10 + step))
        for average, current in zip(self.generator_ema.parameters(), self.generator.parameters()):
            average.lerp_(current.detach(), 1.0 - decay)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        audio, lengths = self._prepare(batch)
        full = lengths
        if self.hparams.val_max_seconds is not None:
            keep = int(self.hparams.val_max_seconds * self.mel_config.sample_rate)
            audio, lengths = audio[:, :keep], lengths.clamp(max=keep)
        complete = batch.get("complete")
        complete = (full <= lengths) & (True if complete is None else complete.to(lengths.device))
        logmel = self.compute_logmel(audio)
        generated = self.inference_generator(logmel)[:, 0].float()
        for metric in self.val_metrics.values():
            metric.update(generated, audio, lengths)
        out = {"audio": audio, "generated": generated, "num_samples": lengths, "logmel": logmel}
        judged = {"vocoder": generated}
        if self.griffin_lim is not None:
            with torch.autocast(device_type=audio.device.type, enabled=False):
                reference = self.griffin_lim(logmel.float())
            for metric in self.val_reference_metrics.values():
                metric.update(reference, audio, lengths)
            out["griffin_lim"] = reference
            judged["griffin_lim"] = reference
        if "caption" in batch:
            for name, metric in self.val_alignment.items():
                metric.update_batch(judged[name], lengths, batch["caption"], self.mel_config.sample_rate, complete)
        n = self.hparams.val_clips_to_return
        out = {k: v[:n].detach() for k, v in out.items()}
        out["key"] = list(batch.get("key", [str(i) for i in range(audio.shape[0])]))[:n]
        return out

    def on_validation_epoch_end(self) -> None:
        values = {f"val/{name}": metric.compute() for name, metric in self.val_metrics.items()}
        for name, metric in self.val_reference_metrics.items():
            values[f"val/griffin_lim/{name}"] = metric.compute()
        if "val/griffin_lim/mrstft" in values:
            values["val/mrstft_over_griffin_lim"] = values["val/mrstft"] / values["val/griffin_lim/mrstft"].clamp_min(
                1e-12
            )
        for name, metric in self.val_alignment.items():
            values.update(metric.loggable("val/alignment/" if name == "vocoder" else f"val/{name}/alignment/"))
        for metric in chain(
            self.val_metrics.values(), self.val_reference_metrics.values(), self.val_alignment.values()
        ):
            metric.reset()
        self.log_dict(values, prog_bar=False)
        self.log("val_mrstft", values["val/mrstft"], prog_bar=True)  # slash-free name for checkpoint filenames
