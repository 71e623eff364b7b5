"""The 'scratch' text encoder: locally built vocabulary, trained jointly with the U-Net (gradients, optimiser,
checkpoints), never cached, and next to a frozen encoder in a concatenation."""

from __future__ import annotations

import pytest
import torch

from lightning_auffusion.diffusion.conditioning import EncoderSpec, TextConditioner
from lightning_auffusion.diffusion.scratch_encoder import (
    WordTokenizer,
    build_vocabulary,
    synthetic_vocabulary,
)
from tests.helpers import quiet_trainer, single_torch_thread, tiny_ldm, tiny_spec  # noqa: F401 - fixture

SCRATCH = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "max_position_embeddings": 80}


def scratch_spec(**kw) -> EncoderSpec:
    return EncoderSpec(name="scratch", kind="scratch", config=dict(SCRATCH), **kw)


def test_vocabulary_covers_the_synthetic_grammar_and_tokenizer_pads_like_hugging_face():
    import numpy as np

    from lightning_auffusion.synth.attributes import render_caption, sample_events

    vocab = synthetic_vocabulary()
    assert {"sine", "beeping", "loud", "followed", "by"} <= set(vocab)
    tokenizer = WordTokenizer(vocab)
    rng = np.random.default_rng(123)
    for _ in range(50):  # fresh captions, a seed the vocabulary was not built from: no unknown words
        caption = render_caption(sample_events(rng, heldout=True), rng)
        assert tokenizer.unk_token_id not in tokenizer.encode(caption), caption
    out = tokenizer(
        ["a loud sine beep", "zorblax"], padding="longest", truncation=True, max_length=3, return_tensors="pt"
    )
    assert out["input_ids"].shape == (2, 3) and out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["input_ids"][1, 0] == tokenizer.unk_token_id
    assert tokenizer(["a b"], padding="max_length", max_length=6, return_tensors="pt")["input_ids"].shape == (1, 6)
    assert [len(r) for r in tokenizer(["a loud sine beep", "zorblax"])["input_ids"]] == [4, 1]  # as HF: unpadded
    assert build_vocabulary(["Dog barks", "dog!"]) == ("dog", "barks", "!")


def test_scratch_encoder_gets_gradients_and_is_not_cached():
    torch.manual_seed(0)
    conditioner = TextConditioner([scratch_spec(max_length=8)], cross_attention_dim=12, cache_embeddings=True)
    conditioner.train()
    assert conditioner.encoders[0].training
    out = conditioner(["a loud sine beep", "soft pink noise"])
    assert out.shape == (2, 8, 12)
    out.pow(2).mean().backward()
    grads = [p.grad for p in conditioner.encoders[0].parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert conditioner.encoders[0].token_embedding.weight.grad.abs().sum() > 0
    assert conditioner.cache_size == 0


@pytest.mark.usefixtures("single_torch_thread")
def test_ldm_trains_the_scratch_encoder_jointly_and_checkpoints_it(tmp_path):

    from lightning_auffusion.diffusion.module import AuffusionLDM
    from tests.helpers import ToneDataModule

    model = tiny_ldm(
        encoders=[scratch_spec(max_length=8), tiny_spec("clip")], save_frozen_weights=False, cache_text_embeddings=True
    )
    scratch, clip = model.conditioner.encoders
    trainable = {id(p) for p in model.trainable_parameters()}
    assert all(id(p) in trainable for p in scratch.parameters())
    assert not any(id(p) in trainable for p in clip.parameters()) and not any(
        p.requires_grad for p in clip.parameters()
    )
    before = {k: v.clone() for k, v in scratch.state_dict().items()}
    clip_before = {k: v.clone() for k, v in clip.state_dict().items()}
    trainer = quiet_trainer(
        max_steps=2,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=ToneDataModule(clips=2, batch_size=2))
    assert any(not torch.equal(before[k], v) for k, v in scratch.state_dict().items())  # it learned
    assert all(torch.equal(clip_before[k], v) for k, v in clip.state_dict().items())  # frozen one did not
    path = tmp_path / "scratch.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    assert any(k.startswith("conditioner.encoders.0.") for k in state)  # the trained encoder is kept
    assert not any(k.startswith("conditioner.encoders.1.") for k in state)  # the frozen one left out
    loaded = AuffusionLDM.load_from_checkpoint(path, map_location="cpu")
    for key, value in scratch.state_dict().items():
        assert torch.equal(loaded.conditioner.encoders[0].state_dict()[key], value)


def test_scratch_specs_fail_clearly():
    with pytest.raises(ValueError, match="unknown config keys"):
        TextConditioner([EncoderSpec(name="s", kind="scratch", config={"hidden": 3})], cross_attention_dim=8)
    with pytest.raises(FileNotFoundError, match="vocabulary file"):
        TextConditioner([EncoderSpec(name="s", kind="scratch", config={"vocabulary": "/nope.txt"})])


def test_the_released_layout_refuses_a_scratch_encoder_before_writing(tmp_path):
    from lightning_auffusion.diffusion.interop import export_released

    model = tiny_ldm(encoders=[scratch_spec(max_length=8)])
    with pytest.raises(ValueError, match="'scratch' encoder"):
        export_released(model, tmp_path / "export")
    assert not (tmp_path / "export").exists()
