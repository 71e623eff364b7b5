"""The ``scratch`` text encoder: a small transformer with no pretrained language knowledge, trained with the U-Net.

Its tokenizer is built locally: a word-level vocabulary (lower-cased words and punctuation marks, plus
``[PAD]`` and ``[UNK]``) taken from a word list, a text file, or by default from the synthetic caption
grammar (``lightning_auffusion.synth.attributes``: several thousand rendered captions, train and held-out
combinations, and the speech templates). The vocabulary is deterministic, so a checkpoint rebuilds the same
tokenizer. Unlike the frozen Hugging Face encoders its parameters train (they are in the module's trainable
parameters and its checkpoints) and its output is never cached.

Options (the ``config`` of an ``EncoderSpec`` with ``kind: scratch``): ``vocabulary`` (list of words, a
file path, or null for the synthetic grammar), ``hidden_size`` (128), ``num_layers`` (2), ``num_heads`` (4),
``intermediate_size`` (4 x hidden), ``max_position_embeddings`` (128), ``dropout`` (0.0).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_auffusion.errors import MissingInputError, UserInputError

SPECIALS = ("[PAD]", "[UNK]")
_TOKEN_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
ARCHITECTURE_KEYS = (
    "hidden_size",
    "num_layers",
    "num_heads",
    "intermediate_size",
    "max_position_embeddings",
    "dropout",
)


def words(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks."""
    return _TOKEN_RE.findall(text.lower())


@functools.lru_cache(maxsize=4)
def synthetic_vocabulary(captions: int = 4000, seed: int = 0) -> tuple[str, ...]:
    """Every word of ``captions`` rendered captions of the synthetic grammar (train and held-out) and of its
    speech templates, sorted."""
    from lightning_auffusion.synth import attributes as grammar

    rng = np.random.default_rng(seed)
    found: set[str] = set()
    for i in range(captions):
        found.update(words(grammar.render_caption(grammar.sample_events(rng, heldout=bool(i % 2)), rng)))
    for text in (*grammar.SPEECH_PHRASES, *grammar._SPEECH_TEMPLATES, *grammar.SPEAKERS, "female", "male"):
        found.update(words(re.sub(r"\{[^}]*\}", " ", text)))
    return tuple(sorted(found))


def build_vocabulary(source: list[str] | str | None) -> tuple[str, ...]:
    """The word list: given, read from a file (its words, in order of first appearance), or the grammar's."""
    if source is None:
        return synthetic_vocabulary()
    if isinstance(source, str):
        path = Path(source)
        if not path.is_file():
            raise MissingInputError(f"scratch encoder: vocabulary file {source!r} not found (a text file of words)")
        return tuple(dict.fromkeys(words(path.read_text(encoding="utf-8"))))
    return tuple(dict.fromkeys(w for item in source for w in words(str(item))))


class WordTokenizer:
    """Word-level tokenizer with the call signature the conditioner uses from Hugging Face tokenizers."""

    def __init__(self, vocabulary: tuple[str, ...] | list[str]) -> None:
        self.tokens = list(SPECIALS) + [w for w in vocabulary if w not in SPECIALS]
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.pad_token_id, self.unk_token_id = 0, 1

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(w, self.unk_token_id) for w in words(text)] or [self.unk_token_id]

    def __call__(
        self,
        texts: list[str],
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        """Hugging Face's conventions: ``padding`` False / "longest" / "max_length", ``return_tensors`` None
        (lists of ids, unpadded unless asked) or "pt"."""
        rows = [self.encode(t) for t in texts]
        if truncation and max_length is not None:
            rows = [r[:max_length] for r in rows]
        if padding in ("longest", True) or (padding == "max_length" and max_length is None):
            width = max(len(r) for r in rows)
        elif padding == "max_length":
            width = max(max_length, max(len(r) for r in rows))
        else:
            width = None
        if width is None:
            if return_tensors == "pt":
                raise ValueError("scratch tokenizer: tensors need padding when the rows differ in length")
            return {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        if return_tensors == "pt":
            return {"input_ids": ids, "attention_mask": mask}
        return {"input_ids": ids.tolist(), "attention_mask": mask.tolist()}

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.tokens[i] if 0 <= i < len(self.tokens) else "[UNK]" for i in ids]


class ScratchTextEncoder(nn.Module):
    """Token + position embeddings, a pre-norm transformer encoder, a final LayerNorm; randomly initialised."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        intermediate_size: int | None = None,
        max_position_embeddings: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise UserInputError(
                f"scratch encoder: hidden_size {hidden_size} must be a multiple of num_heads {num_heads}"
            )
        self.config = SimpleNamespace(
            hidden_size=int(hidden_size),
            vocab_size=int(vocab_size),
            max_position_embeddings=int(max_position_embeddings),
        )
        self.token_embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_position_embeddings, hidden_size)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            intermediate_size or 4 * hidden_size,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Any:
        length = input_ids.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"scratch encoder: {length} tokens, more than max_position_embeddings "
                f"{self.config.max_position_embeddings}"
            )
        positions = torch.arange(length, device=input_ids.device)
        hidden = self.token_embedding(input_ids) + self.position_embedding(positions)[None]
        padding = None if attention_mask is None else attention_mask == 0
        hidden = self.norm(self.layers(hidden, src_key_padding_mask=padding))
        return SimpleNamespace(last_hidden_state=hidden)


def build_scratch(config: dict[str, Any] | None) -> tuple[ScratchTextEncoder, WordTokenizer]:
    """The encoder and its tokenizer from an ``EncoderSpec.config`` of kind ``scratch``."""
    options = dict(config or {})
    unknown = sorted(set(options) - set(ARCHITECTURE_KEYS) - {"vocabulary"})
    if unknown:
        raise UserInputError(
            f"scratch encoder: unknown config keys {unknown}; known: vocabulary, {', '.join(ARCHITECTURE_KEYS)}"
        )
    tokenizer = WordTokenizer(build_vocabulary(options.pop("vocabulary", None)))
    return ScratchTextEncoder(len(tokenizer), **options), tokenizer
