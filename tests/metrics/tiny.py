"""Small offline stand-ins shared by the metric and evaluation tests."""

from __future__ import annotations

import torch


def tiny_clap_model():
    """A real ``ClapModel`` (HTSAT + RoBERTa) at a few hundred thousand parameters, random weights."""
    from transformers import ClapConfig, ClapModel

    torch.manual_seed(0)
    config = ClapConfig(
        text_config={
            "vocab_size": 300,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 130,
        },
        audio_config={
            "depths": [1, 1, 1, 1],
            "patch_embeds_hidden_size": 16,
            "num_attention_heads": [1, 1, 1, 1],
            "hidden_size": 128,
        },
        projection_dim=16,
    )
    return ClapModel(config).eval()


def tiny_clap_embedder():
    """The tiny model with the offline byte-level tokenizer and CLAP's feature extractor."""
    from lightning_auffusion.metrics.extractors.clap import ClapEmbedder, offline_tokenizer

    return ClapEmbedder(tiny_clap_model(), offline_tokenizer(), batch_size=4)


def fake_scorer(audio, sample_rate, caption):
    """Judges 'loud' true when the clip's peak exceeds 0.5 and 'long' when it lasts over 1 s."""
    if not caption.startswith("synthetic"):
        return {}
    verdicts = {"event0.loudness": float(abs(audio).max()) > 0.5}
    if "long" in caption:
        verdicts["event0.duration"] = len(audio) / sample_rate > 1.0
    return verdicts
