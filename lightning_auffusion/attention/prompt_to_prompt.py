"""Prompt-to-prompt control of the cross-attention: word swap and attention re-weighting.

Both edits generate a *source* row and one or more *target* rows from the same initial noise in one batch.
While a step lies inside a window (a ``[start, end)`` fraction of the denoising steps), the target rows'
attention probabilities are rebuilt from the source row's:

* word swap: ``target = source @ M`` over the token axis, with ``M`` aligning the source prompt's tokens to
  the target prompt's (identity for unchanged words, the swapped word's map for its replacement, averaged
  when the two words tokenize to different lengths); self-attention is copied from the source inside its
  own window at the coarser layers (prompt-to-prompt's structure preservation);
* re-weighting: ``target = source * w`` with ``w`` the chosen words' weights (1 elsewhere).

With concatenated encoders (e.g. CLAP + T5) the alignment is done per encoder, each over its own slot of
the conditioning sequence. Only the conditional half of a classifier-free batch is edited.
Defaults follow prompt-to-prompt's examples: cross-attention window [0, 0.8), self-attention [0, 0.4).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import partial

import torch

from lightning_auffusion.attention.capture import PatchesAttention, attention_layers, layer_downsampling
from lightning_auffusion.attention.processors import ControlledAttnProcessor

PAD = "pad"
_WORD = re.compile(r"\S+")
_STRIP = re.compile(r"^\W+|\W+$")


# ------------------------------------------------------------------------------------------ token <-> word
def normalize_word(word: str) -> str:
    """Lower case without leading/trailing punctuation: "Barking," -> "barking"."""
    return _STRIP.sub("", word).lower()


def prompt_words(prompt: str) -> list[str]:
    return [m.group(0) for m in _WORD.finditer(prompt)]


def _fallback_word_ids(tokenizer, prompt: str, ids: list[int]) -> list[int | None]:
    """Slow tokenizers (no offsets): find each word's pieces, in order, in the prompt's ids."""
    owners: list[int | None] = [None] * len(ids)
    cursor = 0
    for w, word in enumerate(prompt_words(prompt)):
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        for start in range(cursor, len(ids) - len(pieces) + 1):
            if pieces and ids[start : start + len(pieces)] == pieces:
                owners[start : start + len(pieces)] = [w] * len(pieces)
                cursor = start + len(pieces)
                break
    return owners


def token_words(tokenizer, prompt: str, max_length: int) -> list[int | None]:
    """Word index (0-based, whitespace-separated words) of each token the encoder sees; None for special
    tokens. Tokenized exactly as the conditioner does for one caption (truncated to ``max_length``)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(prompt, truncation=True, max_length=max_length, return_offsets_mapping=True)
        spans = [(m.start(), m.end()) for m in _WORD.finditer(prompt)]
        owners: list[int | None] = []
        for start, end in enc["offset_mapping"]:
            if end <= start:
                owners.append(None)
                continue
            owners.append(next((w for w, (a, b) in enumerate(spans) if a <= start < b), None))
        return owners
    ids = tokenizer(prompt, truncation=True, max_length=max_length)["input_ids"]
    return _fallback_word_ids(tokenizer, prompt, ids)


def _encoders(conditioner) -> list[tuple[object, int]]:
    """(tokenizer, slot length) of each encoder, in conditioning order."""
    return [(tok, spec.max_length) for spec, tok in zip(conditioner.specs, conditioner.tokenizers)]


# ------------------------------------------------------------------------------------------ word swap
def _gap_positions(owners: list[int | None]) -> dict[tuple[int, int], int]:
    """(words seen before, rank) -> position, for the tokens that belong to no word (special tokens)."""
    table, seen, ranks = {}, -1, {}
    for pos, w in enumerate(owners):
        if w is not None:
            seen = max(seen, w)
            continue
        rank = ranks.get(seen, 0)
        table[(seen, rank)] = pos
        ranks[seen] = rank + 1
    return table


def align_tokens(source: list[int | None], target: list[int | None], length: int) -> torch.Tensor:
    """(length, length) matrix M with ``target_map = source_map @ M`` for one encoder slot."""
    mapper = torch.zeros(length, length)
    src_words: dict[int, list[int]] = {}
    tgt_words: dict[int, list[int]] = {}
    for pos, w in enumerate(source):
        if w is not None:
            src_words.setdefault(w, []).append(pos)
    for pos, w in enumerate(target):
        if w is not None:
            tgt_words.setdefault(w, []).append(pos)
    src_gaps, tgt_gaps = _gap_positions(source), _gap_positions(target)
    for t, w in enumerate(target):
        if w is not None:
            src_pos, tgt_pos = src_words.get(w, []), tgt_words[w]
            if not src_pos:  # the source was truncated before this word: keep the target's own position
                mapper[min(t, length - 1), t] = 1.0
            elif len(src_pos) == len(tgt_pos):
                mapper[src_pos[tgt_pos.index(t)], t] = 1.0
            else:
                mapper[src_pos, t] = 1.0 / len(src_pos)
    for (gap, rank), t in tgt_gaps.items():
        candidates = [pos for (g, r), pos in src_gaps.items() if g == gap]
        s = src_gaps.get((gap, rank), candidates[-1] if candidates else min(t, len(source) - 1))
        mapper[s, t] = 1.0
    n_src, n_tgt = len(source), len(target)
    for t in range(n_tgt, length):  # padding: pad -> pad in order (the last real source token if none)
        s = n_src + (t - n_tgt)
        mapper[min(s, length - 1) if n_src < length else length - 1, t] = 1.0
    return mapper


def swap_mapper(conditioner, source_prompt: str, target_prompt: str) -> torch.Tensor:
    """(S, S) alignment over the whole conditioning sequence (block-diagonal, one block per encoder)."""
    n_src, n_tgt = len(prompt_words(source_prompt)), len(prompt_words(target_prompt))
    if n_src != n_tgt:
        raise ValueError(
            f"word swap replaces words one for one, but the source prompt has {n_src} words and the target "
            f"{n_tgt}: {source_prompt!r} -> {target_prompt!r}. Swap single words (e.g. 'huge' -> 'small')"
        )
    blocks = [
        align_tokens(token_words(tok, source_prompt, length), token_words(tok, target_prompt, length), length)
        for tok, length in _encoders(conditioner)
    ]
    return torch.block_diag(*blocks)


# ------------------------------------------------------------------------------------------ re-weighting
def word_weights(conditioner, prompt: str, words: dict[str, float]) -> torch.Tensor:
    """(S,) per-token factor: ``words[w]`` on every token of each occurrence of word ``w``, else 1."""
    if not words:
        raise ValueError("reweight needs at least one word -> weight, e.g. {'barking': 2.0}")
    in_prompt = [normalize_word(w) for w in prompt_words(prompt)]
    wanted = {normalize_word(k): float(v) for k, v in words.items()}
    missing = [k for k in wanted if k not in in_prompt]
    if missing:
        raise ValueError(f"words {missing} are not in the prompt {prompt!r}; its words are {in_prompt}")
    rows = []
    for tok, length in _encoders(conditioner):
        row = torch.ones(length)
        for pos, w in enumerate(token_words(tok, prompt, length)):
            if w is not None and in_prompt[w] in wanted:
                row[pos] = wanted[in_prompt[w]]
        rows.append(row)
    return torch.cat(rows)


# ------------------------------------------------------------------------------------------ controllers
def _window(value: Sequence[float], what: str) -> tuple[float, float]:
    start, end = (float(v) for v in value)
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(
            f"{what} must be a [start, end) fraction of the steps with 0 <= start <= end <= 1, got {value}"
        )
    return start, end


class AttentionEditController(PatchesAttention, ABC):
    """Installs :class:`ControlledAttnProcessor` on every attention layer of ``unet`` while in its context,
    counts U-Net calls to know the step, and rebuilds target rows from the source row inside the windows.

    Row 0 of the (conditional) batch is the source; rows 1..n are targets. ``num_steps`` is the number of
    U-Net calls of the run (``len(scheduler.timesteps)`` for a full run).
    """

    def __init__(
        self,
        unet,
        num_steps: int,
        cross_window: Sequence[float] = (0.0, 0.8),
        self_window: Sequence[float] = (0.0, 0.4),
        self_min_downsampling: int = 2,
        classifier_free: bool = True,
    ) -> None:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.unet = unet
        self.num_steps = int(num_steps)
        self.cross_window = _window(cross_window, "cross_window")
        self.self_window = _window(self_window, "self_window")
        self.self_min_downsampling = int(self_min_downsampling)
        self.classifier_free = classifier_free
        self.step = -1
        self._factors: dict[str, int] = {}

    # -- installation
    def __enter__(self) -> AttentionEditController:
        wrappers = {}
        for cross in (True, False):
            for name in attention_layers(self.unet, cross=cross):
                self._factors[name] = layer_downsampling(self.unet, name)
                wrappers[name] = partial(ControlledAttnProcessor, name, self, is_cross=cross)
        self._patch(wrappers, self._count)
        self.step = -1
        return self

    def __exit__(self, *exc) -> None:
        self._unpatch()

    def _count(self, module, args) -> None:
        self.step += 1

    def _in(self, window: tuple[float, float]) -> bool:
        return window[0] * self.num_steps <= self.step < window[1] * self.num_steps

    # -- AttentionEditor protocol
    def wants(self, layer: str, is_cross: bool, num_queries: int) -> bool:
        if is_cross:
            return self._in(self.cross_window)
        return self._factors.get(layer, 1) >= self.self_min_downsampling and self._in(self.self_window)

    def edit(self, layer: str, is_cross: bool, probs: torch.Tensor) -> torch.Tensor:
        first = probs.shape[0] // 2 if self.classifier_free else 0
        source = probs[first]
        count = probs.shape[0] - first - 1
        targets = self.edit_cross(source, count) if is_cross else source.unsqueeze(0).expand(count, *source.shape)
        probs = probs.clone()
        probs[first + 1 :] = targets.to(probs.dtype)
        return probs

    @abstractmethod
    def edit_cross(self, source: torch.Tensor, count: int) -> torch.Tensor:
        """Target rows' cross-attention (count, heads, queries, tokens) from the source's (heads, queries, tokens)."""


class WordSwapController(AttentionEditController):
    """Targets take the source's cross-attention, re-indexed through ``mappers`` (targets, S, S)."""

    def __init__(self, unet, num_steps: int, mappers: torch.Tensor, **kwargs) -> None:
        super().__init__(unet, num_steps, **kwargs)
        self.mappers = mappers if mappers.dim() == 3 else mappers.unsqueeze(0)

    def edit_cross(self, source: torch.Tensor, count: int) -> torch.Tensor:
        if count != self.mappers.shape[0]:
            raise ValueError(f"{count} target rows in the batch but {self.mappers.shape[0]} token alignments")
        mappers = self.mappers.to(device=source.device, dtype=source.dtype)
        return torch.einsum("hqs,nst->nhqt", source, mappers)


class ReweightController(AttentionEditController):
    """Targets take the source's cross-attention scaled per token by ``weights`` (targets, S)."""

    def __init__(self, unet, num_steps: int, weights: torch.Tensor, **kwargs) -> None:
        super().__init__(unet, num_steps, **kwargs)
        self.weights = weights if weights.dim() == 2 else weights.unsqueeze(0)

    def edit_cross(self, source: torch.Tensor, count: int) -> torch.Tensor:
        if count != self.weights.shape[0]:
            raise ValueError(f"{count} target rows in the batch but {self.weights.shape[0]} weight vectors")
        weights = self.weights.to(device=source.device, dtype=source.dtype)
        return source.unsqueeze(0) * weights[:, None, None, :]
