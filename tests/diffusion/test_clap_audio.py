"""AudioLDM-style conditioning (encoder kind clap_audio): CLAP audio embedding in training, text at sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_auffusion.diffusion.encoders import EncoderSpec
from lightning_auffusion.diffusion.sampling import generate
from lightning_auffusion.errors import UserInputError
from tests.helpers import TINY_FRAMES, single_torch_thread, tiny_ldm, tiny_spec, tone_batch  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def spy_branches(model, monkeypatch) -> dict[str, int]:
    """Count the calls of the CLAP model's audio and text branches."""
    clap = model.conditioner.encoders[0]
    calls = {"audio": 0, "text": 0}
    for branch, method in (("audio", "get_audio_features"), ("text", "get_text_features")):
        original = getattr(clap, method)

        def counted(*args, _original=original, _branch=branch, **kwargs):
            calls[_branch] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(clap, method, counted)
    return calls


def test_spec_defaults_to_one_pooled_token():
    spec = tiny_spec("clap_audio")
    assert spec.max_length == 1 and spec.audio_conditioned
    assert EncoderSpec(name="c", kind="clip", config={}).max_length == 77
    with pytest.raises(UserInputError, match="give 'pretrained'"):
        EncoderSpec(name="c", kind="clap_audio")


def test_training_uses_only_the_audio_branch_and_sampling_only_the_text_branch(monkeypatch):
    model = tiny_ldm(("clap_audio",))
    assert model.conditioner.condition_dims == [16] and model.conditioner.sequence_length == 1
    calls = spy_branches(model, monkeypatch)
    loss = model.training_step(tone_batch(2), 0)
    assert torch.isfinite(loss)
    assert calls == {"audio": 1, "text": 0}
    model.validation_step(tone_batch(2), 0)
    assert calls == {"audio": 2, "text": 0}
    out = generate(
        model, ["a dog barks"], num_inference_steps=2, scheduler="ddim", duration_seconds=TINY_FRAMES * 160 / 16000
    )
    assert torch.isfinite(out.audio).all()
    assert calls == {"audio": 2, "text": 1}


def test_audio_and_text_embeddings_share_one_unit_space():
    model = tiny_ldm(("clap_audio",))
    cond = model.conditioner
    batch = tone_batch(2)
    audio = cond.encode_audio(0, batch["audio"], 16000, batch["num_samples"])
    text = cond.encode_hidden(0, ["a dog barks", "rain"])
    assert audio.shape == text.shape == (2, 1, 16)
    assert torch.allclose(audio.norm(dim=-1), torch.ones(2, 1), atol=1e-5)
    assert torch.allclose(text.norm(dim=-1), torch.ones(2, 1), atol=1e-5)
    assert cond.token_labels("a dog barks") == ["clap_audio:<clap>"]


def test_caption_less_clips_train_clap_audio_and_are_refused_by_text_kinds():
    batch = tone_batch(2)
    batch["caption"], batch["captions"] = [None, "a dog barks"], [[], ["a dog barks"]]
    assert torch.isfinite(tiny_ldm(("clap_audio",)).diffusion_loss(batch))
    for kinds in (("clip",), ("clap_audio", "t5")):
        with pytest.raises(
            UserInputError, match=r"1 clip\(s\) of the batch have no caption \(e.g. clip000\).*clap_audio"
        ):
            tiny_ldm(kinds).diffusion_loss(batch)


def test_the_tiny_model_trains():
    torch.manual_seed(0)
    model = tiny_ldm(("clap_audio",), learning_rate=3e-3)
    batch = tone_batch(4)
    optimizer = model.configure_optimizers()

    def fixed_loss() -> torch.Tensor:
        return model.diffusion_loss(batch, generator=torch.Generator().manual_seed(0), drop=False)

    with torch.no_grad():
        before = fixed_loss().item()
    for _ in range(8):
        optimizer.zero_grad()
        loss = fixed_loss()
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = fixed_loss().item()
    assert after < before


# ------------------------------------------------------------------------------------------ data module
@pytest.fixture(scope="module")
def uncaptioned_shards(tmp_path_factory):
    """Three 1 s tones sharded with keep_uncaptioned: one has no caption, one an empty one."""
    from lightning_auffusion.data.shards import shard

    root = tmp_path_factory.mktemp("uncaptioned")
    (root / "audio").mkdir()
    rows = [{"file": "a.wav", "caption": "a high tone"}, {"file": "b.wav"}, {"file": "c.wav", "caption": " "}]
    for i, row in enumerate(rows):
        t = np.arange(16000) / 16000
        sf.write(
            root / "audio" / row["file"], (0.5 * np.sin(2 * np.pi * (300 + 200 * i) * t)).astype(np.float32), 16000
        )
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dropped = shard(str(root / "audio"), str(manifest), "dropped", out_root=str(root), workers=0, progress=False)
    kept = shard(
        str(root / "audio"), str(manifest), "kept", out_root=str(root), workers=0, progress=False, keep_uncaptioned=True
    )
    assert dropped["totals"]["clips"] == 1 and kept["totals"]["clips"] == 3
    return root / "kept" / "index.json"


def data_module(index, **kwargs):
    from lightning_auffusion.data.datamodule import AudioShardDataModule

    options = dict(
        train_shards=str(index),
        val_shards=str(index),
        batch_size=3,
        val_batch_size=3,
        num_workers=0,
        segment_seconds=TINY_FRAMES * 160 / 16000,
        val_segment_seconds=TINY_FRAMES * 160 / 16000,
        batches_per_epoch=1,
        shuffle_buffer=0,
        seed=0,
    )
    options.update(kwargs)
    return AudioShardDataModule(**options)


def test_caption_less_clips_pass_the_data_module_only_when_kept(uncaptioned_shards):
    batch = next(iter(data_module(uncaptioned_shards, keep_uncaptioned=True).val_dataloader()))
    captions = dict(zip(batch["key"], batch["caption"]))
    assert captions == {"a": "a high tone", "b": None, "c": None}
    assert torch.isfinite(tiny_ldm(("clap_audio",)).diffusion_loss(batch))
    with pytest.raises(UserInputError, match="no caption.*'clip' \\(clip\\)"):
        tiny_ldm(("clip",)).diffusion_loss(batch)
    skipped = list(data_module(uncaptioned_shards).val_dataloader())
    assert [k for b in skipped for k in b["key"]] == ["a"]


def test_mixup_mixes_the_audio_with_beta_weights(uncaptioned_shards):
    from lightning_auffusion.data.pipeline import MixupClips, mix_clips

    first = {
        "key": "x",
        "audio": np.ones(4, np.float32),
        "num_samples": 4,
        "caption": "one",
        "captions": ["one"],
        "metadata": {},
        "complete": True,
    }
    second = {
        "key": "y",
        "audio": np.full(2, 3.0, np.float32),
        "num_samples": 2,
        "caption": None,
        "captions": [],
        "metadata": {},
        "complete": True,
    }
    mixed = mix_clips(first, second, 0.75)
    np.testing.assert_allclose(mixed["audio"], [1.5, 1.5, 0.75, 0.75])
    assert mixed["key"] == "x+y" and mixed["caption"] == "one" and mixed["metadata"]["mixup"]["lam"] == 0.75
    assert mix_clips(first, second, 0.25)["caption"] is None
    with pytest.raises(UserInputError, match="mixup_alpha"):
        MixupClips(0.5, 0.0)
    batch = next(iter(data_module(uncaptioned_shards, keep_uncaptioned=True, mixup_probability=1.0).train_dataloader()))
    assert sum("+" in key for key in batch["key"]) == 2  # every clip after the first is mixed with the one before
    assert torch.isfinite(tiny_ldm(("clap_audio",)).diffusion_loss(batch))
