"""ClapPretraining (contrastive audio-text training of a small ClapModel) and export-clap."""

from __future__ import annotations

import lightning
import pytest
import torch

from lightning_auffusion.clap.module import ClapPretraining, export_clap, retrieval_accuracy
from lightning_auffusion.errors import UserInputError
from tests.helpers import single_torch_thread, tiny_encoder_config, tiny_tokenizer_dir, tone_batch  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_torch_thread")
CAPTIONS = ["a loud high sine beep", "quiet pink noise", "a low square tone", "white noise bursts"]


def tiny_module(**overrides) -> ClapPretraining:
    torch.manual_seed(0)
    options = dict(
        config=tiny_encoder_config("clap_audio"),
        tokenizer=tiny_tokenizer_dir("clap_audio"),
        sample_rate=16000,
        learning_rate=3e-4,
    )
    return ClapPretraining(**{**options, **overrides})


def test_retrieval_accuracy_on_constructed_pairs():
    emb = torch.eye(4)
    assert {k: float(v) for k, v in retrieval_accuracy(emb, emb).items()} == {
        "text_to_audio_r1": 1.0,
        "audio_to_text_r1": 1.0,
    }
    shifted = retrieval_accuracy(emb, emb.roll(1, dims=0))
    assert float(shifted["text_to_audio_r1"]) == 0.0 and float(shifted["audio_to_text_r1"]) == 0.0
    one_wrong = torch.eye(4)
    one_wrong[3] = one_wrong[2]  # clip 3 looks like clip 2: its caption retrieves clip 2 (the first best)
    assert float(retrieval_accuracy(torch.eye(4), one_wrong)["text_to_audio_r1"]) == 0.75


def test_the_tiny_model_learns_to_pair_its_clips_and_makes_each_clips_features_once(monkeypatch):
    module = tiny_module()
    batch = tone_batch(4, captions=CAPTIONS)
    batch["key"] = [f"clip{i}" for i in range(4)]
    optimizer = module.configure_optimizers()
    calls = {"n": 0}
    original = module.features.__call__

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(type(module.features), "__call__", lambda self, *a, **k: counted(*a, **k))
    losses = []
    for step in range(40):
        loss = module.training_step(batch, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert calls["n"] == 1  # whole clips, cached by key
    assert sum(losses[-5:]) < sum(losses[:5])  # from chance (ln 4) towards pairing each caption with its clip
    module.eval()
    with torch.no_grad():
        out = module.model(**module.inputs(batch), return_loss=True)
    assert float(retrieval_accuracy(out.text_embeds, out.audio_embeds)["text_to_audio_r1"]) == 1.0
    batch["caption"] = [None, *CAPTIONS[1:]]
    with pytest.raises(UserInputError, match="needs a caption for every clip"):
        module.inputs(batch)


def test_export_writes_a_folder_that_a_clap_audio_encoder_loads(tmp_path):
    from lightning_auffusion.diffusion.conditioning import TextConditioner, pooled_embedding
    from lightning_auffusion.diffusion.encoders import EncoderSpec

    module = tiny_module().eval()
    ckpt = tmp_path / "clap.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": lightning.__version__,
        },
        ckpt,
    )
    folder = export_clap(str(ckpt), str(tmp_path / "export"))
    conditioner = TextConditioner(
        [EncoderSpec(name="clap_audio", kind="clap_audio", pretrained=folder)], cross_attention_dim=8
    )
    text = conditioner.encode_hidden(0, ["quiet pink noise"])
    with torch.no_grad():
        tokens = module.tokenizer(["quiet pink noise"], return_tensors="pt")
        expected = torch.nn.functional.normalize(pooled_embedding(module.model.get_text_features(**tokens)), dim=-1)
    assert torch.allclose(text[:, 0], expected, atol=1e-5)
    batch = tone_batch(2)
    audio = conditioner.encode_audio(0, batch["audio"], 16000, batch["num_samples"])
    assert audio.shape == (2, 1, 16) and torch.isfinite(audio).all()

    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(UserInputError, match="not a ClapPretraining checkpoint"):
        export_clap(str(tmp_path / "other.ckpt"), str(tmp_path / "x"))


def test_a_tokenizer_larger_than_the_text_vocabulary_is_refused_in_one_line():
    config = tiny_encoder_config("clap_audio")
    config["text_config"] = {**config["text_config"], "vocab_size": 10}
    with pytest.raises(UserInputError, match="vocab_size"):
        tiny_module(config=config)


def test_text_init_starts_the_text_tower_as_the_pretrained_minilm_and_export_keeps_it(tmp_path):
    from lightning_auffusion.clap.module import pretrained_text

    config = tiny_encoder_config("clap_audio")
    config["text_config"] = {"hidden_dropout_prob": 0.0}
    module = ClapPretraining(config=config, text_init="minilm", freeze_text=True).eval()
    bert = pretrained_text("minilm").eval()
    tokens = module.tokenizer(["a loud sine beep, then quiet pink noise", "rain"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = module.model.text_model(**tokens).last_hidden_state
        theirs = bert(**tokens).last_hidden_state
    mask = tokens["attention_mask"].bool()
    assert torch.allclose(ours[mask], theirs[mask], atol=1e-4)  # same weights, positions shifted past the padding
    assert not any(p.requires_grad for p in module.model.text_model.parameters())
    assert all(p.requires_grad for p in module.model.text_projection.parameters())
    assert module.hparams["config"]["text_config"]["hidden_size"] == 384
    ckpt = tmp_path / "clap.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    from transformers import ClapModel

    exported = ClapModel.from_pretrained(export_clap(str(ckpt), str(tmp_path / "export"))).eval()
    with torch.no_grad():
        again = exported.text_model(**tokens).last_hidden_state
    assert torch.allclose(again[mask], theirs[mask], atol=1e-4)
    with pytest.raises(UserInputError, match="could not load text_init"):
        ClapPretraining(config=config, text_init=str(tmp_path / "nowhere"))
