"""Text conditioning: shapes per encoder kind and lists of them, padding, dropout statistics, cache, freezing."""

from __future__ import annotations

import pytest
import torch

from lightning_auffusion.diffusion.conditioning import ConditionAdapter, TextConditioner
from lightning_auffusion.diffusion.encoders import EncoderSpec
from tests.helpers import (
    TEST_CAPTIONS,
    TINY_WIDTH,
    single_torch_thread,  # noqa: F401 (fixture)
    tiny_conditioner,
    tiny_spec,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

MINILM_WIDTH = 384


@pytest.fixture(scope="module")
def all_kinds():
    """One conditioner holding every kind: CLIP, CLAP text, T5 (tiny, random) and the real MiniLM."""
    return tiny_conditioner(("clip", "clap", "t5", "minilm"), cross_attention_dim=48)


@pytest.mark.parametrize("kind", ["clip", "clap", "t5", "minilm"])
def test_single_encoder_shapes(kind):
    cond = tiny_conditioner((kind,), cross_attention_dim=48)
    out = cond(TEST_CAPTIONS[:3])
    assert out.shape == (3, 77, 48)
    assert cond.sequence_length == 77
    width = MINILM_WIDTH if kind == "minilm" else TINY_WIDTH[kind]
    assert cond.condition_dims == [width]
    assert cond.adapters[0].proj.in_features == width and cond.adapters[0].proj.out_features == 48
    assert torch.isfinite(out).all()


def test_encoder_list_concatenates_along_sequence(all_kinds):
    out = all_kinds(TEST_CAPTIONS)
    assert out.shape == (4, 4 * 77, 48)
    assert all_kinds.condition_dims == [TINY_WIDTH["clip"], TINY_WIDTH["clap"], TINY_WIDTH["t5"], MINILM_WIDTH]
    # each slot is that encoder's adapted output alone
    for index, slot in enumerate(all_kinds.slots()):
        alone = all_kinds.adapters[index](all_kinds.encode_hidden(index, TEST_CAPTIONS))
        torch.testing.assert_close(out[:, slot], alone)


def test_clap_plus_t5_is_154_tokens():
    cond = tiny_conditioner(("clap", "t5"), cross_attention_dim=768)
    assert cond(TEST_CAPTIONS[:2]).shape == (2, 154, 768)


def test_zero_padding_as_released_and_batch_invariance():
    cond = tiny_conditioner(("t5",))
    hidden = cond.encode_hidden(0, TEST_CAPTIONS)
    n_tokens = cond._tokenize(0, [TEST_CAPTIONS[0]])["attention_mask"].sum().item()
    assert hidden[0, n_tokens:].abs().max() == 0  # zeros after the caption, before the adapter
    assert hidden[0, :n_tokens].abs().sum(-1).min() > 0
    # a caption's sequence does not depend on the other captions of its batch (as encoding it alone)
    for i, caption in enumerate(TEST_CAPTIONS):
        torch.testing.assert_close(cond.encode_hidden(0, [caption])[0], hidden[i], atol=1e-5, rtol=1e-5)


def test_token_padding_mode_keeps_encoder_output():
    cond = tiny_conditioner(("clip",), padding="tokens")
    hidden = cond.encode_hidden(0, TEST_CAPTIONS[:2])
    assert hidden.shape == (2, 77, TINY_WIDTH["clip"])
    assert hidden[:, -1].abs().sum() > 0  # pad-token positions carry the encoder's output


def test_long_captions_are_truncated_to_max_length():
    cond = tiny_conditioner(("clap",), max_length=16)
    out = cond(["a very long caption " * 20, "short"])
    assert out.shape == (2, 16, 32)
    assert len(cond.token_labels("a very long caption " * 20)) == 16


def test_drop_mask_zeros_the_slot_and_all_dropped_is_unconditional(all_kinds):
    batch = len(TEST_CAPTIONS)
    mask = torch.zeros(batch, 4, dtype=torch.bool)
    mask[0, 1] = True  # caption 0 loses its CLAP slot only
    mask[2] = True  # caption 2 loses everything
    full = all_kinds(TEST_CAPTIONS)
    out = all_kinds(TEST_CAPTIONS, drop_mask=mask)
    slots = all_kinds.slots()
    assert out[0, slots[1]].abs().max() == 0
    torch.testing.assert_close(out[0, slots[0]], full[0, slots[0]])
    torch.testing.assert_close(out[0, slots[2]], full[0, slots[2]])
    torch.testing.assert_close(out[1], full[1])
    assert torch.equal(out[2], all_kinds.unconditional(1)[0])
    uncond = all_kinds.unconditional(3)
    assert uncond.shape == (3, 4 * 77, 48) and uncond.abs().max() == 0


def test_dropout_statistics_match_configured_rates():
    specs = [tiny_spec("clip", dropout=0.1), tiny_spec("t5", dropout=0.3), tiny_spec("clap", dropout=0.0)]
    cond = TextConditioner(specs, cross_attention_dim=16)
    n = 40000
    mask = cond.sample_drop_mask(n, generator=torch.Generator().manual_seed(1)).float()
    rates = mask.mean(0)
    # binomial standard error at n = 40000 is <= 0.0023: allow 4 sigma
    assert abs(rates[0].item() - 0.1) < 0.01
    assert abs(rates[1].item() - 0.3) < 0.01
    assert rates[2].item() == 0.0
    # independent per encoder: joint drop rate is the product, all-dropped of the first two = 0.03
    both = (mask[:, 0] * mask[:, 1]).mean().item()
    assert abs(both - 0.03) < 0.004
    corr = torch.corrcoef(mask[:, :2].T)[0, 1].item()
    assert abs(corr) < 0.02
    # the same generator seed gives the same mask
    again = cond.sample_drop_mask(n, generator=torch.Generator().manual_seed(1)).float()
    assert torch.equal(mask, again)


def test_single_encoder_default_rate_is_ten_percent():
    cond = tiny_conditioner(("clip",))
    rate = cond.sample_drop_mask(40000, generator=torch.Generator().manual_seed(3)).float().mean().item()
    assert abs(rate - 0.1) < 0.01


def test_token_labels(all_kinds):
    labels = all_kinds.token_labels("a dog barks")
    assert len(labels) == all_kinds.sequence_length == 308
    assert labels[0] == "clip:<|startoftext|>" and labels[1] == "clip:a</w>"
    assert labels[76] == "clip:<pad>"
    assert labels[77] == "clap:<s>"
    assert labels[3 * 77 : 3 * 77 + 4] == ["minilm:[CLS]", "minilm:a", "minilm:dog", "minilm:bark"]
    assert all(lbl.split(":", 1)[0] in {"clip", "clap", "t5", "minilm"} for lbl in labels)


def test_cache_gives_identical_output_and_encodes_each_caption_once():
    cond = tiny_conditioner(("t5", "clip"))
    reference = cond(TEST_CAPTIONS)
    cond.cache_embeddings = True
    calls = {"n": 0}
    original = cond._run_encoder

    def counting(index, captions):
        calls["n"] += len(captions)
        return original(index, captions)

    cond._run_encoder = counting
    first = cond(TEST_CAPTIONS + TEST_CAPTIONS[:2])
    second = cond(TEST_CAPTIONS[::-1])
    assert calls["n"] == 2 * len(TEST_CAPTIONS)  # each unique caption once per encoder
    assert cond.cache_size == 2 * len(TEST_CAPTIONS)
    torch.testing.assert_close(first[:4], reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, reference.flip(0), atol=1e-5, rtol=1e-5)


def test_encoders_frozen_adapters_train():
    cond = tiny_conditioner(("clip", "t5"))
    cond.train()
    assert all(not m.training for m in cond.encoders)
    assert all(not p.requires_grad for p in cond.encoders.parameters())
    out = cond(TEST_CAPTIONS[:2])
    out.square().mean().backward()
    assert all(p.grad is not None for p in cond.adapters.parameters())
    assert all(p.grad is None for p in cond.encoders.parameters())


def test_adapter_matches_released_parameter_names():
    adapter = ConditionAdapter(1024, 768)
    assert set(adapter.state_dict()) == {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}
    assert adapter.config == {"condition_dim": 1024, "cross_attention_dim": 768}


def test_bad_specs_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        EncoderSpec(name="x", kind="bert")
    with pytest.raises(ValueError, match="give 'pretrained'"):
        EncoderSpec(name="x", kind="t5")
    with pytest.raises(ValueError, match="dropout must be in"):
        EncoderSpec(name="x", kind="minilm", dropout=1.5)
    with pytest.raises(ValueError, match="unique"):
        TextConditioner([tiny_spec("clip"), tiny_spec("clip")])
    with pytest.raises(FileNotFoundError, match="no directory"):
        TextConditioner([EncoderSpec(name="x", kind="clip", pretrained=str(tmp_path / "missing"))])
    with pytest.raises(ValueError, match="needs 'tokenizer'"):
        TextConditioner(
            [
                EncoderSpec(
                    name="x", kind="t5", config={"d_model": 8, "num_layers": 1, "num_heads": 1, "d_kv": 8, "d_ff": 8}
                )
            ]
        )
    cond = tiny_conditioner(("clip",))
    with pytest.raises(ValueError, match="drop_mask must have shape"):
        cond(TEST_CAPTIONS[:2], drop_mask=torch.zeros(3, 1, dtype=torch.bool))


def test_encoders_load_from_local_directories(tmp_path):
    """A saved encoder + tokenizer directory is a valid ``pretrained`` (the released text_encoder_i layout)."""
    cond = tiny_conditioner(("clap",))
    path = tmp_path / "text_encoder_0"
    cond.encoders[0].save_pretrained(path)
    cond.tokenizers[0].save_pretrained(path)
    again = TextConditioner([EncoderSpec(name="clap", kind="clap", pretrained=str(path))], cross_attention_dim=32)
    again.adapters.load_state_dict(cond.adapters.state_dict())
    torch.testing.assert_close(again(TEST_CAPTIONS), cond(TEST_CAPTIONS))
