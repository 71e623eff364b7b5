import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger

from lightning_auffusion.callbacks.vocoder_samples import VocoderSamplesCallback
from lightning_auffusion.vocoder import load_vocoder
from lightning_auffusion.vocoder.module import VocoderModule
from tests.helpers import quiet_trainer

from .helpers import ToneDataModule, tiny_discriminator_config, tiny_generator_config


def make_module(**overrides) -> VocoderModule:
    args = dict(
        generator=tiny_generator_config(),
        discriminators=tiny_discriminator_config(),
        segment_size=1600,
        val_griffin_lim={"n_iter": 2},
        stft_resolutions=[[256, 64, 256]],
    )
    args.update(overrides)
    return VocoderModule(**args)


def make_trainer(tmp_path, **overrides) -> L.Trainer:
    args = dict(
        devices=1,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    args.update(overrides)
    return quiet_trainer(**args)


def adam_steps(optimizer) -> int:
    return int(next(iter(optimizer.state.values()))["step"])


def test_max_steps_counts_generator_steps_and_discriminator_steps_separately(tmp_path):
    torch.manual_seed(0)
    module = make_module()
    trainer = make_trainer(tmp_path, max_steps=4)
    trainer.fit(module, ToneDataModule(n_train=8, batch_size=2))  # 4 batches = one epoch
    opt_g, opt_d = trainer.optimizers
    assert trainer.global_step == 4
    assert adam_steps(opt_g) == 4 and adam_steps(opt_d) == 4
    assert int(module.discriminator_steps) == 4
    # one epoch ended: both learning rates decayed once (HiFi-GAN's per-epoch decay)
    assert opt_g.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.999)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.999)
    for key in ("train/loss_d", "train/loss_fm", "train/loss_adv", "train/loss_mel"):
        assert math.isfinite(float(trainer.callback_metrics[key]))


def test_discriminator_warmup_trains_the_generator_alone(tmp_path):
    torch.manual_seed(0)
    module = make_module(discriminator_warmup_steps=3, lr_decay_interval="step")
    trainer = make_trainer(tmp_path, max_steps=5)
    trainer.fit(module, ToneDataModule(n_train=8, batch_size=2))
    opt_g, opt_d = trainer.optimizers
    assert trainer.global_step == 5 and adam_steps(opt_g) == 5
    assert adam_steps(opt_d) == 2 and int(module.discriminator_steps) == 2  # generator steps 3 and 4 (0-based)
    # per-step decay; the discriminators' schedule starts when they do
    assert opt_g.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.999**5)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.999**2)


class _Capture(Callback):
    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.d_steps = int(pl_module.discriminator_steps)
        self.states = [{k: v.clone() for k, v in next(iter(o.state.values())).items()} for o in trainer.optimizers]
        self.sched = [s.scheduler.state_dict() for s in trainer.lr_scheduler_configs]


def test_resume_restores_both_optimizers_schedulers_and_step(tmp_path):
    torch.manual_seed(0)
    ckpt_dir = tmp_path / "ckpt"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, every_n_train_steps=2, save_top_k=-1, save_last=True, filename="{step}"
    )
    trainer = make_trainer(tmp_path, max_steps=4, enable_checkpointing=True, callbacks=[checkpoint])
    trainer.fit(make_module(), ToneDataModule(n_train=6, batch_size=2))  # 3 batches per epoch
    # checkpoint intervals count generator steps
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["last.ckpt", "step=2.ckpt", "step=4.ckpt"]
    saved = torch.load(ckpt_dir / "step=2.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2 and len(saved["optimizer_states"]) == 2 and len(saved["lr_schedulers"]) == 2
    assert int(saved["state_dict"]["discriminator_steps"]) == 2

    capture = _Capture()
    resumed = make_trainer(tmp_path, max_steps=6, callbacks=[capture])
    module = make_module()
    resumed.fit(module, ToneDataModule(n_train=6, batch_size=2), ckpt_path=ckpt_dir / "step=2.ckpt")
    assert capture.step == 2 and capture.d_steps == 2
    for restored, stored in zip(capture.states, saved["optimizer_states"]):
        stored_state = next(iter(stored["state"].values()))
        assert int(restored["step"]) == 2
        assert torch.equal(restored["exp_avg"], stored_state["exp_avg"])
        assert torch.equal(restored["exp_avg_sq"], stored_state["exp_avg_sq"])
    assert capture.sched == saved["lr_schedulers"]
    assert resumed.global_step == 6 and int(module.discriminator_steps) == 6
    assert [adam_steps(o) for o in resumed.optimizers] == [6, 6]


def test_bf16_mixed_precision_step(tmp_path):
    torch.manual_seed(0)
    module = make_module()
    trainer = make_trainer(tmp_path, max_steps=2, precision="bf16-mixed")
    trainer.fit(module, ToneDataModule(n_train=4, batch_size=2))
    assert trainer.global_step == 2 and int(module.discriminator_steps) == 2
    assert all(p.dtype == torch.float32 for p in module.parameters())  # mixed: weights stay float32
    assert math.isfinite(float(trainer.callback_metrics["train/loss_g"]))


class _MediaLogger(Logger):
    def __init__(self):
        super().__init__()
        self.audio, self.images, self.metrics = [], [], {}

    name, version = "media", 0

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_audio(self, key, audios, step=None, **kwargs):
        self.audio.append((key, audios, step, kwargs))

    def log_image(self, key, images, step=None, **kwargs):
        self.images.append((key, images, step, kwargs))


def test_validation_metrics_griffin_lim_reference_and_sample_logging(tmp_path):
    torch.manual_seed(0)
    logger = _MediaLogger()
    samples = VocoderSamplesCallback(num_clips=2, save_dir=str(tmp_path / "samples"))
    trainer = make_trainer(
        tmp_path, max_steps=2, logger=logger, callbacks=[samples], limit_val_batches=2, val_check_interval=2
    )
    module = make_module(stft_loss_weight=1.0)
    trainer.fit(module, ToneDataModule(n_train=4, n_val=3, batch_size=2))
    metrics = trainer.callback_metrics
    for key in (
        "val/mel_l1",
        "val/mrstft",
        "val/griffin_lim/mel_l1",
        "val/griffin_lim/mrstft",
        "val/mrstft_over_griffin_lim",
        "train/loss_stft",
    ):
        assert math.isfinite(float(metrics[key])), key
    ratio = float(metrics["val/mrstft"]) / float(metrics["val/griffin_lim/mrstft"])
    assert float(metrics["val/mrstft_over_griffin_lim"]) == pytest.approx(ratio, rel=1e-5)
    # the untrained vocoder is far worse than Griffin-Lim: the reference is meaningful
    assert float(metrics["val/mrstft"]) > float(metrics["val/griffin_lim/mrstft"])

    ((key, audios, step, kwargs),) = logger.audio
    assert key == "vocoder/audio" and step == 2 and len(audios) == 6  # 2 clips x (real, vocoder, griffin-lim)
    assert kwargs["caption"][:3] == ["tone0 real", "tone0 vocoder", "tone0 griffin-lim"]
    assert len(audios[0]) == 3000  # clip 0 has 3000 valid samples: padding is not logged
    assert len(logger.images) == 1 and logger.images[0][1][0].ndim == 3
    written = sorted(p.name for p in (tmp_path / "samples" / "step_00000002").iterdir())
    assert "tone0_vocoder.wav" in written and "tone1_griffin-lim.png" in written


def test_lightning_checkpoint_loads_as_inference_generator(tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, max_steps=1)
    module = make_module()
    trainer.fit(module, ToneDataModule(n_train=2, batch_size=2))
    trainer.save_checkpoint(tmp_path / "v.ckpt")
    vocoder = load_vocoder(tmp_path / "v.ckpt")
    mel = torch.randn(1, 256, 6)
    with torch.no_grad():
        assert torch.allclose(vocoder(mel), module.generator.eval()(mel), atol=1e-6)
    assert vocoder.config.hop_size == 160 and vocoder.config.num_mels == 256 and vocoder.config.sampling_rate == 16000
    restored = VocoderModule.load_from_checkpoint(tmp_path / "v.ckpt", weights_only=True)
    assert restored.generator.config == module.generator.config


class _WeightsSpy(Callback):
    """Records the generator's weights after every generator step."""

    def __init__(self) -> None:
        self.snapshots = []

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.snapshots.append([p.detach().clone() for p in module.generator.parameters()])


def test_generator_weight_average_is_validated_and_exported(tmp_path):
    from lightning_auffusion.vocoder.export import export_vocoder

    torch.manual_seed(0)
    decay = 0.6
    module = make_module(generator_ema_decay=decay, discriminator_warmup_steps=10)
    start = [p.detach().clone() for p in module.generator_ema.parameters()]
    spy = _WeightsSpy()
    trainer = make_trainer(tmp_path, max_steps=4, callbacks=[spy])
    trainer.fit(module, ToneDataModule(n_train=8, batch_size=2))
    # the recurrence: average <- average + (1 - d_n) (weights after step n), d_n = min(decay, (1 + n) / (10 + n))
    expected = start
    for n, weights in enumerate(spy.snapshots):
        d = min(decay, (1 + n) / (10 + n))
        expected = [e + (1 - d) * (w - e) for e, w in zip(expected, weights)]
    for e, a in zip(expected, module.generator_ema.parameters()):
        torch.testing.assert_close(a, e)
    assert not any(p.requires_grad for p in module.generator_ema.parameters())
    assert not torch.equal(next(module.generator_ema.parameters()), next(module.generator.parameters()))
    assert module.inference_generator is module.generator_ema
    # checkpoints carry the average; export and load_vocoder take it unless told otherwise
    trainer.save_checkpoint(tmp_path / "v.ckpt")
    mel = torch.randn(1, 256, 6)
    with torch.no_grad():
        averaged = module.generator_ema.eval()(mel)
        trained = module.generator.eval()(mel)
        assert torch.allclose(load_vocoder(tmp_path / "v.ckpt")(mel), averaged, atol=1e-6)
        export_vocoder(str(tmp_path / "v.ckpt"), out_dir=str(tmp_path / "ema"))
        export_vocoder(str(tmp_path / "v.ckpt"), out_dir=str(tmp_path / "raw"), use_ema=False)
        assert torch.allclose(load_vocoder(tmp_path / "ema")(mel), averaged, atol=1e-6)
        assert torch.allclose(load_vocoder(tmp_path / "raw")(mel), trained, atol=1e-6)
    restored = VocoderModule.load_from_checkpoint(tmp_path / "v.ckpt", weights_only=True)
    for a, b in zip(restored.generator_ema.parameters(), module.generator_ema.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="generator_ema_decay"):
        make_module(generator_ema_decay=1.0)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="num_mels / n_mels"):
        make_module(mel={"n_mels": 80})
    with pytest.raises(ValueError, match="segment_size"):
        make_module(segment_size=1000)
    with pytest.raises(ValueError, match="lr_decay_interval"):
        make_module(lr_decay_interval="week")


def test_training_segments_stay_inside_valid_samples():
    torch.manual_seed(0)
    module = make_module(peak_normalize=False)
    audio = torch.zeros(3, 8000)
    audio[:2, :2000] = 1.0  # valid part: ones; padding: zeros
    audio[2, :1000] = 1.0
    segments = module.training_segments({"audio": audio, "num_samples": torch.tensor([2000, 2000, 1000])})
    assert segments.shape == (3, 1600)
    assert torch.all(segments[:2] == 1.0)  # 1600-sample windows inside 2000 valid samples
    assert segments[2].sum() == 1000  # a clip shorter than the window is taken from its start


@pytest.mark.parametrize("stage", ["fit", "validate"])
def test_init_generator_starts_from_given_weights(tmp_path, stage):
    from lightning_auffusion.vocoder import HifiGanGenerator, save_hifigan_generator

    torch.manual_seed(1)
    source = HifiGanGenerator(tiny_generator_config())
    save_hifigan_generator(source, tmp_path / "init" / "g_0")
    module = make_module(init_generator=str(tmp_path / "init" / "g_0"))
    module.setup(stage)  # validating the initial weights (no checkpoint) must see them too
    mel = torch.randn(1, 256, 5)
    with torch.no_grad():
        assert torch.allclose(module.generator(mel), source(mel), atol=1e-6)


class _ClipSpy(VocoderModule):
    def on_before_optimizer_step(self, optimizer):
        super().on_before_optimizer_step(optimizer)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.norms = getattr(self, "norms", []) + [
            torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()
        ]


def test_gradient_clipping_applies_to_both_optimizers(tmp_path):
    torch.manual_seed(0)
    module = _ClipSpy(
        generator=tiny_generator_config(),
        discriminators=tiny_discriminator_config(),
        segment_size=1600,
        val_griffin_lim=None,
        gradient_clip_val=1e-3,
    )
    make_trainer(tmp_path, max_steps=2).fit(module, ToneDataModule(n_train=4, batch_size=2))
    assert len(module.norms) == 4  # discriminator + generator, two steps
    assert max(module.norms) <= 1e-3 * (1 + 1e-4)


def _synthetic_batch(seconds: float = 1.0, sample_rate: int = 16000):
    import numpy as np

    from lightning_auffusion.synth.attributes import render_caption
    from lightning_auffusion.synth.generator import render_clip

    events = [
        {"source": "sine", "pitch": "medium", "pattern": "continuous", "loudness": "loud"},
        {"source": "brown", "pattern": "continuous", "loudness": "quiet"},
    ]
    caption = render_caption(events, np.random.default_rng(0))
    clip = torch.from_numpy(render_clip(events, sample_rate, seconds, np.random.default_rng(1))[0]).float()
    n = clip.numel()
    return {
        "audio": torch.stack([clip, clip, clip]),
        "num_samples": torch.tensor([n, n, n]),
        "caption": [caption, caption, "a dog barks"],
        "key": ["a", "b", "c"],
        "complete": torch.tensor([True, False, True]),
    }


def test_validation_judges_synthetic_captions_of_whole_clips():
    torch.manual_seed(0)
    module = make_module()
    module.validation_step(_synthetic_batch(), 0)
    for name in ("vocoder", "griffin_lim"):
        metric = module.val_alignment[name]
        assert float(metric.clips) == 2 and float(metric.unparseable) == 1  # the cut window is left out
        assert float(metric.attributes_judged) == 7
    assert module.val_alignment["vocoder"].loggable("val/alignment/")  # what on_validation_epoch_end logs
    assert make_module().val_alignment["vocoder"].loggable("val/alignment/") == {}  # nothing judged yet
    cropped = make_module(val_max_seconds=0.5)  # the crop cuts every clip: none is judged
    cropped.validation_step(_synthetic_batch(), 0)
    assert float(cropped.val_alignment["vocoder"].clips) == 0
    assert len(make_module(val_alignment_loudness=None).val_alignment) == 0
