"""EvaluationCallback inside a real Trainer.fit with a tiny module, a stand-in generator and a recording logger."""

from __future__ import annotations

import types

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from lightning_auffusion.callbacks.evaluation import EvaluationCallback
from lightning_auffusion.evaluation import read_prompts
from tests.helpers import quiet_trainer


class RecordingLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.metrics, self.tables, self.audio = [], [], []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_table(self, key, columns=None, data=None, step=None, **kwargs) -> None:
        self.tables.append((key, columns, data, step))

    def log_audio(self, key, audios, step=None, **kwargs) -> None:
        self.audio.append((key, audios, step, kwargs))


class TinyModule(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.modes_seen = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.layer(batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class SmallTagger(torch.nn.Module):
    """Stands in for Cnn14 (same outputs, cheap): pooled frame energies through fixed random projections."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = types.SimpleNamespace(classes_num=527)
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("emb", torch.randn(64, 2048, generator=generator))
        self.register_buffer("cls", torch.randn(64, 527, generator=generator))

    def forward(self, waveform):
        frames = waveform[:, : waveform.shape[1] // 64 * 64].reshape(waveform.shape[0], 64, -1)
        energy = frames.pow(2).mean(-1).add(1e-6).log()
        return {"embedding": torch.relu(energy @ self.emb), "logits": energy @ self.cls}


@pytest.fixture
def small_tagger(monkeypatch):
    from lightning_auffusion.metrics import suite
    from lightning_auffusion.metrics.extractors.weights import WeightStatus

    status = WeightStatus("Cnn14", False, None, "stand-in")
    monkeypatch.setattr(suite, "load_cnn14", lambda **kw: (SmallTagger(), status))


class ReplayCallback(EvaluationCallback):
    """'Generates' the reference clip of each prompt (looked up by caption), so metrics are known-good."""

    def __init__(self, clips_by_caption: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clips_by_caption = clips_by_caption
        self.seen = []

    def generate_audio(self, pl_module, prompts, seeds):
        self.seen.append((list(seeds), pl_module.training))
        return torch.from_numpy(np.stack([self.clips_by_caption[p] for p in prompts])), 16000


def test_callback_generates_scores_and_logs_during_fit(synthetic_set, tiny_clap_backend, small_tagger, tmp_path):
    captions = read_prompts(synthetic_set["prompts"])
    ref = synthetic_set["reference"]
    clips = {captions[f"clip{i}"]: sf.read(ref / f"clip{i}.wav", dtype="float32")[0] for i in range(4)}
    callback = ReplayCallback(
        clips,
        prompts=str(synthetic_set["prompts"]),
        reference=str(synthetic_set["reference"]),
        every_n_steps=3,
        at_validation_end=True,
        metrics=["kl", "clap", "alignment"],
        weights_dir=str(tmp_path / "none"),
        allow_random_weights=True,
        max_prompts=3,
        seed=5,
        batch_size=2,
        log_audio=2,
    )
    data = DataLoader(TensorDataset(torch.randn(4, 4)), batch_size=2)
    logger = RecordingLogger()
    trainer = quiet_trainer(
        max_epochs=2,
        logger=logger,
        callbacks=[callback],
        devices=1,
        num_sanity_val_steps=1,
        limit_val_batches=1,
    )
    trainer.fit(TinyModule(), data, data)

    steps = [step for step, m in logger.metrics if "eval/kl" in m]
    assert steps == [2, 3, 4]  # validation end (epoch 0), step 3, validation end (epoch 1); not the sanity check
    assert callback.seen[0] == ([5, 6], False) and callback.seen[1] == ([7], False)  # fixed seeds, eval mode
    final = [m for _, m in logger.metrics if "eval/kl" in m][-1]
    assert final["eval/kl"] == pytest.approx(0.0, abs=1e-6)  # generated == reference for every pair
    assert final["eval/random_weights"] == 1.0 and final["eval/generated"] == 3 and final["eval/reference"] == 4
    assert final["eval/alignment_accuracy"] >= 0.75
    assert trainer.callback_metrics["eval/kl"] == pytest.approx(final["eval/kl"])
    keys = [t[0] for t in logger.tables]
    assert keys.count("eval/summary") == 3 and keys.count("eval/clips") == 3
    _, columns, rows, _ = logger.tables[-1]
    assert columns == ["id", "prompt", "clap_cosine", "alignment_accuracy"]
    assert [r[0] for r in rows] == ["clip0", "clip1", "clip2"]
    key, audios, step, kwargs = logger.audio[-1]
    assert key == "eval/audio" and len(audios) == 2 and kwargs["sample_rate"] == [16000, 16000] and step == 4


def test_callback_scores_and_logs_the_stage_ceilings_once(synthetic_set, tmp_path):
    from tests.helpers import tiny_ldm

    captions = read_prompts(synthetic_set["prompts"])
    ref = synthetic_set["reference"]
    clips = {captions[f"clip{i}"]: sf.read(ref / f"clip{i}.wav", dtype="float32")[0] for i in range(4)}
    callback = ReplayCallback(
        clips,
        prompts=str(synthetic_set["prompts"]),
        reference=str(ref),
        metrics=["alignment"],
        max_prompts=4,
        batch_size=2,
        log_audio=0,
    )
    logger = RecordingLogger()
    trainer = types.SimpleNamespace(
        global_rank=0,
        world_size=1,
        global_step=7,
        is_global_zero=True,
        logger=logger,
        strategy=types.SimpleNamespace(root_device=torch.device("cpu")),
        callback_metrics={},
    )
    module = tiny_ldm()
    callback.run(trainer, module)
    assert set(callback.ceiling_results) == {"ceiling_vocoder", "ceiling_vae_vocoder"}
    ((_, scalars),) = logger.metrics
    for row in ("ceiling_vocoder", "ceiling_vae_vocoder"):
        assert 0.0 <= scalars[f"eval/{row}/alignment_accuracy"] <= 1.0 and scalars[f"eval/{row}/generated"] == 4
    assert scalars["eval/alignment_source_accuracy"] == 1.0  # the replayed reference clips
    summary = next(t for t in logger.tables if t[0] == "eval/summary")
    assert summary[1][:2] == ["step", "row"] and [r[1] for r in summary[2]] == ["generated", *callback.ceiling_results]
    assert any(t[0] == "eval/alignment_breakdown" for t in logger.tables)
    first = dict(callback.ceiling_results)
    trainer.global_step = 8
    callback.run(trainer, module)  # the LDM trains only its U-Net: the ceilings are not rendered again
    assert callback.ceiling_results == first and "eval/ceiling_vocoder/alignment_accuracy" in logger.metrics[-1][1]


def test_sampling_settings_left_unset_are_the_modules_own_and_the_rng_is_untouched(monkeypatch, synthetic_set):
    """What ``generate`` and ``evaluate`` use for the module (its config's ``sampling`` block), so the clips scored
    in the loop have the length the model was trained on; a setting given to the callback wins."""
    from lightning_auffusion.diffusion import sampling as sampling_mod
    from tests.helpers import tiny_ldm

    calls = []

    def fake_generate(module, prompts, **kwargs):
        calls.append(kwargs)
        torch.rand(3)  # draws from the global stream, as a sampler may
        return types.SimpleNamespace(audio=torch.zeros(len(prompts), 1600), sample_rate=16000)

    monkeypatch.setattr(sampling_mod, "generate", fake_generate)
    module = tiny_ldm(
        sampling={"scheduler": "ddim", "num_inference_steps": 3, "guidance_scale": 2.0, "duration_seconds": 0.1}
    )
    trainer = types.SimpleNamespace(
        global_rank=0,
        world_size=1,
        global_step=1,
        is_global_zero=True,
        logger=RecordingLogger(),
        strategy=types.SimpleNamespace(root_device=torch.device("cpu")),
        callback_metrics={},
    )
    own = EvaluationCallback(prompts=str(synthetic_set["prompts"]), metrics=["alignment"], max_prompts=1, log_audio=0)
    state = torch.get_rng_state()
    own.run(trainer, module)
    assert torch.equal(torch.get_rng_state(), state)  # training's random stream is left as it was
    given = EvaluationCallback(
        prompts=str(synthetic_set["prompts"]), metrics=["alignment"], max_prompts=1, log_audio=0, guidance_scale=5.0
    )
    given.run(trainer, module)
    expected = {"scheduler": "ddim", "num_inference_steps": 3, "guidance_scale": 2.0, "duration_seconds": 0.1}
    assert {k: calls[0][k] for k in expected} == expected
    assert {k: calls[1][k] for k in expected} == {**expected, "guidance_scale": 5.0}
