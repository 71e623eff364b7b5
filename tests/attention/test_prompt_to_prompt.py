"""Token alignment for word swap, word weights, and the controller's edit of the batch rows."""

from __future__ import annotations

import pytest
import torch

from lightning_auffusion.attention.prompt_to_prompt import (
    ReweightController,
    WordSwapController,
    align_tokens,
    swap_mapper,
    token_words,
    word_weights,
)


def test_identical_prompts_align_to_the_identity(ldm_concat):
    mapper = swap_mapper(ldm_concat.conditioner, "a dog barks loudly", "a dog barks loudly")
    assert mapper.shape == (154, 154)
    assert torch.equal(mapper, torch.eye(154))


def test_swapped_word_of_another_length_takes_the_source_words_map(ldm):
    conditioner = ldm.conditioner
    source, target = "a dog barks", "a horse barks"  # the tiny CLIP tokenizer is per character: 3 vs 5 pieces
    tokenizer, length = conditioner.tokenizers[0], conditioner.specs[0].max_length
    src, tgt = token_words(tokenizer, source, length), token_words(tokenizer, target, length)
    assert src == [None, 0, 1, 1, 1, 2, 2, 2, 2, 2, None]
    assert tgt == [None, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, None]
    mapper = swap_mapper(conditioner, source, target)
    torch.testing.assert_close(mapper.sum(0), torch.ones(77))  # every target token is a convex mix of source maps
    for t in range(2, 7):  # "horse" pieces: the mean of the "dog" pieces
        torch.testing.assert_close(mapper[2:5, t], torch.full((3,), 1 / 3))
    assert mapper[0, 0] == 1 and mapper[1, 1] == 1  # start token, "a"
    for offset in range(5):  # "barks" moves two places right, piece by piece
        assert mapper[5 + offset, 7 + offset] == 1
    assert mapper[10, 12] == 1  # end token
    assert mapper[11, 13] == 1 and mapper[74, 76] == 1  # padding to padding, in order


def test_word_swap_needs_one_for_one_words(ldm):
    with pytest.raises(ValueError, match="3 words and the target 4"):
        swap_mapper(ldm.conditioner, "a dog barks", "a big dog barks")


def test_alignment_when_the_source_fills_the_slot():
    source = [None] + [0] * 5 + [None]
    target = [None] + [0] * 3 + [None]
    mapper = align_tokens(source, target, 7)
    torch.testing.assert_close(mapper[1:6, 1], torch.full((5,), 0.2))
    assert mapper[6, 4] == 1  # end token to end token
    assert mapper[6, 5] == 1 and mapper[6, 6] == 1  # target padding maps to the source's last position


def test_word_weights_per_encoder(ldm_concat):
    weights = word_weights(ldm_concat.conditioner, "A dog, barking.", {"barking": 2.5})
    assert weights.shape == (154,)
    clip_pieces = [
        i for i, w in enumerate(token_words(ldm_concat.conditioner.tokenizers[0], "A dog, barking.", 77)) if w == 2
    ]
    assert clip_pieces and all(weights[i] == 2.5 for i in clip_pieces)
    assert (weights[77:] == 2.5).sum() > 0  # the T5 slot is re-weighted too
    assert (weights != 2.5).sum() == (weights == 1).sum()
    with pytest.raises(ValueError, match="not in the prompt"):
        word_weights(ldm_concat.conditioner, "a dog barks", {"cat": 2.0})


def fake_probs(rows: int, heads: int = 2, queries: int = 6, tokens: int = 5) -> torch.Tensor:
    return torch.rand(rows, heads, queries, tokens, generator=torch.Generator().manual_seed(0)).softmax(-1)


def test_controller_edits_only_targets_of_the_conditional_half_inside_the_window(ldm):
    mapper = torch.eye(5)[[1, 0, 2, 3, 4]]  # target token 0 <- source token 1 and vice versa
    controller = WordSwapController(ldm.unet, num_steps=10, mappers=mapper, cross_window=(0.0, 0.5))
    probs = fake_probs(4)  # [uncond source, uncond target, cond source, cond target]
    controller.step = 2
    assert controller.wants("any", True, 6)
    edited = controller.edit("any", True, probs)
    assert torch.equal(edited[:3], probs[:3])
    torch.testing.assert_close(edited[3], probs[2][..., [1, 0, 2, 3, 4]])
    controller.step = 5  # window [0, 0.5) of 10 steps ends before step 5
    assert not controller.wants("any", True, 6)


def test_reweight_controller_scales_the_source_maps(ldm):
    weights = torch.tensor([1.0, 3.0, 1.0, 1.0, 0.5])
    controller = ReweightController(ldm.unet, num_steps=4, weights=weights, classifier_free=False)
    controller.step = 0
    probs = fake_probs(2)
    edited = controller.edit("any", True, probs)
    torch.testing.assert_close(edited[1], probs[0] * weights)
    self_edit = controller.edit("any", False, probs)  # self-attention: copied from the source
    torch.testing.assert_close(self_edit[1], probs[0])


def test_controller_restores_processors(ldm):
    before = dict(ldm.unet.attn_processors)
    with WordSwapController(ldm.unet, num_steps=2, mappers=torch.eye(77)):
        assert all(type(p).__name__ == "ControlledAttnProcessor" for p in ldm.unet.attn_processors.values())
    assert all(ldm.unet.attn_processors[k] is v for k, v in before.items())


def test_identity_edit_on_auffusions_latent_size_changes_nothing_but_rounding():
    """At the 4 x 32 x 128 latent, editing with an identity alignment (cross and self-attention rebuilt from the
    source row through explicit probabilities) gives the plain SDPA output up to float rounding."""
    from tests.attention.test_capture import cfg_inputs, sd_like_unet

    unet = sd_like_unet()
    latents, context = cfg_inputs(batch=1, tokens=8)
    x = torch.cat([latents[:1], latents[:1], latents[1:], latents[1:]])  # [uncond src, uncond tgt, cond src, cond tgt]
    ctx = torch.cat([context[:1], context[:1], context[1:], context[1:]])
    with torch.no_grad():
        plain = unet(x, 700, encoder_hidden_states=ctx).sample
        controller = WordSwapController(
            unet, num_steps=1, mappers=torch.eye(8), cross_window=(0, 1), self_window=(0, 1)
        )
        with controller:
            edited = unet(x, 700, encoder_hidden_states=ctx).sample
    assert controller.step == 0
    torch.testing.assert_close(edited, plain, atol=1e-4, rtol=1e-4)
