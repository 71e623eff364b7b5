"""Sample logging during fit (rank 0, RNG untouched) and attention figures during predict."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, Dataset

from lightning_auffusion.callbacks.attention_maps import AttentionMapWriter
from lightning_auffusion.callbacks.audio_writer import AudioPredictionWriter
from lightning_auffusion.callbacks.sample_logging import (
    DEMO_PROMPTS,
    SampleLoggingCallback,
    isolated_rng,
    pad_to_common_size,
)
from tests.attention.conftest import STEPS, nonsquare_ldm
from tests.helpers import quiet_trainer, tone_batch

SAMPLING = dict(num_inference_steps=STEPS, duration_seconds=1.0)


class MediaLogger(Logger):
    """Records what would go to W&B (the ``WandbLogger.log_audio`` / ``log_image`` interface)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, int, dict]] = []

    name = "media"
    version = "0"

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_audio(self, key, audios, step=None, **kwargs) -> None:
        self.calls.append(("audio", key, step, {"items": audios, **kwargs}))

    def log_image(self, key, images, step=None, **kwargs) -> None:
        self.calls.append(("image", key, step, {"items": images, **kwargs}))


def draws() -> tuple:
    return torch.rand(3).tolist(), random.random(), float(np.random.rand())


def test_sampling_leaves_the_random_streams_untouched(ldm):
    callback = SampleLoggingCallback(prompts=["a dog barks"], resolutions=(2,), **SAMPLING)
    trainer = SimpleNamespace(global_step=7, loggers=[MediaLogger()], is_global_zero=True)
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    expected = draws()
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    ldm.train()
    grad_flags = {name: p.requires_grad for name, p in ldm.named_parameters()}
    callback.log_samples(trainer, ldm)
    assert draws() == expected
    assert ldm.unet.training  # back in training mode
    # the pipeline shares the module's parts and must not freeze them
    assert {name: p.requires_grad for name, p in ldm.named_parameters()} == grad_flags
    assert any(grad_flags.values())
    ldm.eval()
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    with isolated_rng():
        draws()  # numbers consumed inside do not count outside
    assert draws() == expected


class ToneData(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        batch = tone_batch(1, seconds=1.28)
        return {k: v[0] for k, v in batch.items()}


def fit(callbacks, logger, steps: int = 4):
    from lightning.pytorch import seed_everything

    seed_everything(0)
    model = nonsquare_ldm(("clip",), sampling=SAMPLING)
    trainer = quiet_trainer(
        max_steps=steps,
        logger=logger,
        callbacks=callbacks,
        num_sanity_val_steps=0,
    )
    loader = DataLoader(
        ToneData(),
        batch_size=2,
        collate_fn=lambda items: {
            "audio": torch.stack([i["audio"] for i in items]),
            "caption": [i["caption"] for i in items],
        },
    )
    trainer.fit(model, train_dataloaders=loader)
    return model


def test_fit_logs_every_n_steps_without_changing_training(tmp_path):
    logger = MediaLogger()
    prompts = list(DEMO_PROMPTS[:2])
    callback = SampleLoggingCallback(every_n_steps=2, prompts=prompts, resolutions=(2,), save_dir=str(tmp_path))
    logged = fit([callback], logger)
    keys = [(kind, key, step) for kind, key, step, _ in logger.calls]
    assert keys == [
        (kind, key, step)
        for step in (2, 4)
        for kind, key in (("audio", "samples/audio"), ("image", "samples/spectrogram"), ("image", "samples/attention"))
    ]
    audio = logger.calls[0][3]
    assert audio["caption"] == prompts and audio["sample_rate"] == [16000, 16000]
    assert audio["items"][0].shape == (16000,)
    figure = logger.calls[2][3]["items"][0]
    assert figure.ndim == 3 and figure.shape[-1] == 3 and figure.dtype == np.uint8
    # prompts of different lengths give figures of different sizes; W&B gets them padded to one size
    assert all(item.shape == figure.shape for item in logger.calls[2][3]["items"])
    import wandb  # what WandbLogger.log_audio / log_image build from these items

    wandb.Audio(audio["items"][0], sample_rate=audio["sample_rate"][0], caption=audio["caption"][0])
    wandb.Image(figure, caption=prompts[0])
    saved = sorted(p.name for p in (tmp_path / "step_0000002").iterdir())
    assert "0000_a-dog-is-barking_attention.png" in saved and "0000_a-dog-is-barking.wav" in saved
    # the same run without the callback ends with exactly the same weights: no training randomness was consumed
    plain = fit([], MediaLogger())
    for (name, a), b in zip(logged.unet.named_parameters(), plain.unet.parameters()):
        assert torch.equal(a, b), name


def test_images_are_padded_to_one_size():
    small, tall = np.zeros((2, 3, 3), np.uint8), np.ones((4, 1, 3), np.uint8)
    a, b = pad_to_common_size([small, tall])
    assert a.shape == b.shape == (4, 3, 3)
    assert (a[:2] == 0).all() and (a[2:] == 255).all() and (b[:, :1] == 1).all() and (b[:, 1:] == 255).all()


def test_only_rank_zero_logs(ldm):
    logger = MediaLogger()
    callback = SampleLoggingCallback(every_n_steps=1, prompts=["a dog barks"], **SAMPLING)
    trainer = SimpleNamespace(global_step=3, loggers=[logger], is_global_zero=False)
    callback.on_train_batch_end(trainer, ldm, None, None, 0)
    assert logger.calls == []


def test_predict_writes_attention_figures_beside_the_audio(ldm, tmp_path, monkeypatch):
    from lightning_auffusion.data.prompts import PromptDataModule

    monkeypatch.setattr(ldm, "sampling", {**ldm.sampling, **SAMPLING})
    before = dict(ldm.unet.attn_processors)
    prompts = ["a dog barks", "rain falls", "birds chirp"]
    trainer = quiet_trainer(
        callbacks=[AudioPredictionWriter(str(tmp_path)), AttentionMapWriter(str(tmp_path), resolutions=(1, 2))],
    )
    trainer.predict(ldm, datamodule=PromptDataModule(prompts=prompts, batch_size=2))
    names = {p.name for p in Path(tmp_path).iterdir()}
    for index, slug in enumerate(["a-dog-barks", "rain-falls", "birds-chirp"]):
        assert f"{index:04d}_{slug}.wav" in names and f"{index:04d}_{slug}_attention.png" in names
    assert all(ldm.unet.attn_processors[k] is v for k, v in before.items())
