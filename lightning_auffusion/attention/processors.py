"""Attention processors (diffusers' processor API) that expose the attention probabilities.

Two processors wrap a layer's original processor (``base``) and only take over while they are asked to:

* :class:`RecordingAttnProcessor` hands the probabilities ``softmax(Q K^T / sqrt(d))`` of a chosen
  cross-attention layer to a sink (an :class:`~lightning_auffusion.attention.capture.AttentionRecorder`).
  When ``base`` is diffusers' default ``AttnProcessor2_0``, the layer's OUTPUT is produced by
  ``F.scaled_dot_product_attention`` with exactly its operations (same projections, same reshapes, same
  kernel) and the probabilities are a separate product of the same query and key; with any other ``base``
  (xformers, plain math, ...) ``base`` itself produces the output and the projections are recomputed for
  the probabilities. Either way a run with recording on is bit-identical to one with it off. When the
  sink is inactive the call goes straight to ``base``.
* :class:`ControlledAttnProcessor` lets a controller (prompt-to-prompt word swap or re-weighting) edit the
  probabilities; on the steps/layers it edits, the output is computed explicitly as ``probs @ V``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor2_0


@dataclass
class _Projected:
    """Query/key/value of one attention call, in (batch, heads, tokens, head_dim) layout."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor | None
    residual: torch.Tensor
    batch_size: int
    spatial: tuple[int, int, int] | None  # (channels, height, width) when the input was a 4-D feature map


def project(attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None) -> _Projected:
    """The input half of ``AttnProcessor2_0``: norms, projections, head split, mask preparation."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    spatial = None
    if hidden_states.ndim == 4:
        b, c, h, w = hidden_states.shape
        spatial = (c, h, w)
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    batch_size, context_len = context.shape[0], context.shape[1]
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, context_len, batch_size)
        attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.to_k(encoder_hidden_states)
    value = attn.to_v(encoder_hidden_states)
    head_dim = key.shape[-1] // attn.heads
    query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return _Projected(query, key, value, attention_mask, residual, batch_size, spatial)


def finish(attn, p: _Projected, heads_out: torch.Tensor) -> torch.Tensor:
    """The output half of ``AttnProcessor2_0``: merge heads, output projection, residual, rescale."""
    heads, head_dim = heads_out.shape[1], heads_out.shape[-1]
    out = heads_out.transpose(1, 2).reshape(p.batch_size, -1, heads * head_dim).to(p.query.dtype)
    out = attn.to_out[0](out)
    out = attn.to_out[1](out)
    if p.spatial is not None:
        c, h, w = p.spatial
        out = out.transpose(-1, -2).reshape(p.batch_size, c, h, w)
    if attn.residual_connection:
        out = out + p.residual
    return out / attn.rescale_output_factor


def sdpa_output(attn, p: _Projected) -> torch.Tensor:
    """Attention output exactly as ``AttnProcessor2_0`` computes it (SDPA with its default scale)."""
    heads_out = F.scaled_dot_product_attention(
        p.query, p.key, p.value, attn_mask=p.mask, dropout_p=0.0, is_causal=False
    )
    return finish(attn, p, heads_out)


def probabilities(p: _Projected) -> torch.Tensor:
    """``softmax(Q K^T / sqrt(head_dim) + mask)`` in float32: (batch, heads, queries, keys).

    The scale is SDPA's default (the one the layer output actually uses), not ``attn.scale``.
    """
    query, key = p.query.float(), p.key.float()
    scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(query.shape[-1]))
    if p.mask is not None:
        mask = p.mask
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    return scores.softmax(dim=-1)


def explicit_output(attn, p: _Projected, probs: torch.Tensor) -> torch.Tensor:
    """Layer output from explicit probabilities (batch, heads, queries, keys): ``probs @ V``."""
    heads_out = torch.matmul(probs.to(p.value.dtype), p.value)
    return finish(attn, p, heads_out)


def _call_base(base, attn, hidden_states, encoder_hidden_states, attention_mask, temb, args, kwargs):
    return base(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


class ProbabilitySink(Protocol):
    """What a :class:`RecordingAttnProcessor` reports to (implemented by ``AttentionRecorder``)."""

    active: bool

    def record(self, layer: str, probs: torch.Tensor) -> None: ...


class RecordingAttnProcessor:
    """Records the cross-attention probabilities of one layer while ``sink.active``; otherwise defers to ``base``."""

    def __init__(self, layer: str, sink: ProbabilitySink, base: Any) -> None:
        self.layer = layer
        self.sink = sink
        self.base = base

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        if not self.sink.active or encoder_hidden_states is None:
            return _call_base(self.base, attn, hidden_states, encoder_hidden_states, attention_mask, temb, args, kwargs)
        p = project(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if type(self.base) is AttnProcessor2_0:
            out = sdpa_output(attn, p)  # shares the projections with the probabilities
        else:  # another kernel (xformers, math, ...): let it produce the output, exactly as without recording
            out = _call_base(self.base, attn, hidden_states, encoder_hidden_states, attention_mask, temb, args, kwargs)
        with torch.no_grad():
            self.sink.record(self.layer, probabilities(p))
        return out


class AttentionEditor(Protocol):
    """What a :class:`ControlledAttnProcessor` asks (implemented by the prompt-to-prompt controllers)."""

    def wants(self, layer: str, is_cross: bool, num_queries: int) -> bool: ...

    def edit(self, layer: str, is_cross: bool, probs: torch.Tensor) -> torch.Tensor: ...


class ControlledAttnProcessor:
    """Computes the layer with explicit, editable probabilities on the calls the editor wants; else ``base``."""

    def __init__(self, layer: str, editor: AttentionEditor, base: Any, is_cross: bool) -> None:
        self.layer = layer
        self.editor = editor
        self.base = base
        self.is_cross = is_cross

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        num_queries = (
            hidden_states.shape[-1] * hidden_states.shape[-2] if hidden_states.ndim == 4 else hidden_states.shape[1]
        )
        if not self.editor.wants(self.layer, self.is_cross, num_queries):
            return _call_base(self.base, attn, hidden_states, encoder_hidden_states, attention_mask, temb, args, kwargs)
        p = project(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        probs = self.editor.edit(self.layer, self.is_cross, probabilities(p))
        return explicit_output(attn, p, probs)
