"""Text conditioning: frozen text encoders -> per-encoder adapters -> one cross-attention sequence.

For each configured encoder (``EncoderSpec``) a caption becomes the encoder's sequence output
(``last_hidden_state``), padded or truncated to ``max_length`` (77) tokens, then a ``ConditionAdapter``
(Linear d -> cross_attention_dim, LayerNorm) maps it to the U-Net's cross-attention width (with
``token_position_channels`` the encoder output first gets each token's relative position in its caption,
``diffusion.positions``). Several encoders
are concatenated along the sequence axis (CLAP + Flan-T5: 154 x 768). In training each encoder's slot is
dropped to zeros independently with its ``dropout`` rate; all dropped is the unconditional input, which is
also what classifier-free guidance uses (zeros after the adapter, as released).

Padding, as in the released code (``padding="zeros"``): the encoder sees only the caption's own tokens and
the positions after them are zeros *before* the adapter. ``padding="tokens"`` instead pads with the
tokenizer's pad token to ``max_length`` and keeps the encoder's output there (Stable Diffusion's CLIP way).

Audio-conditioned encoders (kind ``clap_audio``, AudioLDM): ``forward(..., audio=...)`` (training, what
``AuffusionLDM`` passes) embeds each clip's waveform with CLAP's audio tower (resampled to 48 kHz, 10 s,
``get_audio_features``); without ``audio`` (sampling) the caption goes through CLAP's text tower
(``get_text_features``). Either way the L2-normalised 512-d joint embedding is one token, zero-padded to
``max_length`` (1 by default), before the adapter. Such an encoder needs no caption in training; every
other encoder refuses a batch with caption-less clips (caption None).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_auffusion.coerce import as_dataclass
from lightning_auffusion.diffusion.encoders import EncoderSpec, build_text_encoder, build_tokenizer, hidden_size
from lightning_auffusion.diffusion.positions import with_token_positions
from lightning_auffusion.errors import UserInputError

log = logging.getLogger(__name__)

CLAP_TEXT_TOKENS = 77  # CLAP's text tower reads at most 77 tokens (laion-clap, AudioLDM)


class ConditionAdapter(nn.Module):
    """Linear(condition_dim -> cross_attention_dim) then LayerNorm(cross_attention_dim).

    Parameter names (``proj``, ``norm``) and ``config`` keys match the released ``condition_adapter_i``
    folders, so their ``condition_adapter.pt`` state dicts load directly.
    """

    def __init__(self, condition_dim: int, cross_attention_dim: int = 768) -> None:
        super().__init__()
        self.config = {"condition_dim": int(condition_dim), "cross_attention_dim": int(cross_attention_dim)}
        self.proj = nn.Linear(condition_dim, cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(hidden))


def fit_sequence(hidden: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad or truncate (batch, seq, d) along the sequence axis to ``length``."""
    seq = hidden.shape[1]
    if seq >= length:
        return hidden[:, :length]
    pad = hidden.new_zeros(hidden.shape[0], length - seq, hidden.shape[2])
    return torch.cat([hidden, pad], dim=1)


class TextConditioner(nn.Module):
    """Captions -> (batch, sum of max_length, cross_attention_dim) cross-attention states.

    ``encoders`` are frozen (always in eval mode, no gradients) except the trainable ``scratch`` ones, which
    train with the ``adapters`` (``trainable_encoders``). With ``cache_embeddings`` each frozen encoder's
    output for a caption is computed once and kept on the CPU (pre-adapter, so the cache stays valid while the
    adapters train); a trainable encoder is always run.
    """

    def __init__(
        self,
        encoders: list[EncoderSpec | dict],
        cross_attention_dim: int = 768,
        cache_embeddings: bool = False,
    ) -> None:
        super().__init__()
        specs = [as_dataclass(e, EncoderSpec) for e in encoders]
        if not specs:
            raise UserInputError("the conditioning needs at least one text encoder")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise UserInputError(f"encoder names must be unique, got {names}")
        self.specs = specs
        self.cross_attention_dim = int(cross_attention_dim)
        self.cache_embeddings = cache_embeddings
        self.encoders = nn.ModuleList(build_text_encoder(s) for s in specs)
        self.tokenizers = [build_tokenizer(s) for s in specs]
        self.condition_dims = [hidden_size(m) for m in self.encoders]
        self.adapters = nn.ModuleList(
            ConditionAdapter(d + s.token_position_channels, self.cross_attention_dim)
            for d, s in zip(self.condition_dims, specs)
        )
        self.register_buffer(
            "drop_rates", torch.tensor([s.dropout for s in specs], dtype=torch.float32), persistent=False
        )
        self._cache: list[dict[str, torch.Tensor]] = [{} for _ in specs]
        self._truncation_reported: set[int] = set()

    # ------------------------------------------------------------------ geometry
    @property
    def num_encoders(self) -> int:
        return len(self.specs)

    @property
    def sequence_length(self) -> int:
        return sum(s.max_length for s in self.specs)

    def slots(self) -> list[slice]:
        """Sequence slice of each encoder in the concatenated output."""
        out, start = [], 0
        for spec in self.specs:
            out.append(slice(start, start + spec.max_length))
            start += spec.max_length
        return out

    def spec_dicts(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.specs]

    # ------------------------------------------------------------------ frozen encoders
    def trainable_encoders(self) -> list[nn.Module]:
        return [m for s, m in zip(self.specs, self.encoders) if s.trainable]

    def train(self, mode: bool = True) -> TextConditioner:
        super().train(mode)
        for spec, encoder in zip(self.specs, self.encoders):
            if not spec.trainable:
                encoder.eval()  # frozen: their dropout layers never switch on
        return self

    def _tokenize(self, index: int, captions: list[str]) -> dict[str, torch.Tensor]:
        spec = self.specs[index]
        padding = "max_length" if spec.padding == "tokens" and not spec.audio_conditioned else "longest"
        tokens = self.tokenizers[index](
            list(captions), padding=padding, truncation=True, max_length=self._token_limit(index), return_tensors="pt"
        )
        if index not in self._truncation_reported:
            self._report_truncation(index, captions, tokens["attention_mask"])
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def _token_limit(self, index: int) -> int:
        """Tokens the encoder reads per caption: ``max_length``, or CLAP's 77 for a pooled (audio-kind) encoder."""
        spec = self.specs[index]
        return CLAP_TEXT_TOKENS if spec.audio_conditioned else spec.max_length

    def _report_truncation(self, index: int, captions: list[str], mask: torch.Tensor) -> None:
        """Warn (once per encoder) when a caption had more tokens than ``max_length`` and was cut."""
        spec, limit = self.specs[index], self._token_limit(index)
        full = [c for c, n in zip(captions, mask.sum(dim=1).tolist()) if n >= limit]  # maybe cut
        if not full:
            return
        lengths = [len(ids) for ids in self.tokenizers[index](full, truncation=False)["input_ids"]]
        cut = [n for n in lengths if n > limit]
        if cut:
            self._truncation_reported.add(index)
            log.warning(
                "encoder %r: %d of %d prompts are longer than max_length %d (up to %d tokens) and were cut; "
                "raise max_length or shorten them (further cuts are not reported)",
                spec.name,
                len(cut),
                len(captions),
                limit,
                max(cut),
            )

    def _run_encoder(self, index: int, captions: list[str]) -> list[torch.Tensor]:
        """Encoder output per caption: (tokens, d), only the caption's tokens for padding 'zeros'; with
        gradients for a trainable encoder only."""
        spec, model = self.specs[index], self.encoders[index]
        tokens = self._tokenize(index, captions)
        device = next(model.parameters()).device
        inputs = {k: v.to(device) for k, v in tokens.items()}
        if spec.audio_conditioned:
            with torch.no_grad():
                emb = pooled_embedding(model.get_text_features(**inputs))
            return list(F.normalize(emb.float(), dim=-1).unsqueeze(1).unbind(0))
        with torch.set_grad_enabled(spec.trainable and torch.is_grad_enabled()):
            hidden = model(**inputs).last_hidden_state
        if spec.padding == "tokens":
            return list(hidden.unbind(0))
        lengths = tokens["attention_mask"].sum(dim=1).tolist()
        return [h[:n] for h, n in zip(hidden.unbind(0), lengths)]

    def encode_hidden(self, index: int, captions: list[str]) -> torch.Tensor:
        """Encoder ``index``'s frozen output for ``captions``, (batch, max_length, d), zero-padded."""
        spec = self.specs[index]
        if self.cache_embeddings and not spec.trainable:
            cache = self._cache[index]
            missing = list(dict.fromkeys(c for c in captions if c not in cache))
            if missing:
                for caption, hidden in zip(missing, self._run_encoder(index, missing)):
                    cache[caption] = hidden.detach().to("cpu")
            device = self.adapters[index].proj.weight.device
            per_caption = [cache[c].to(device) for c in captions]
        else:
            per_caption = self._run_encoder(index, captions)
        width = self.condition_dims[index]
        rows = [fit_sequence(h.reshape(1, -1, width), spec.max_length) for h in per_caption]
        return torch.cat(rows, dim=0)

    @torch.no_grad()
    def encode_audio(
        self, index: int, audio: torch.Tensor, sample_rate: int, num_samples: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Audio-kind encoder ``index``'s CLAP audio embedding of each clip, (batch, max_length, d), zero-padded.

        ``audio`` (batch, samples) at ``sample_rate`` is resampled to 48 kHz by the project's resampler; each
        clip's first ``num_samples`` (its valid part, all when None) is repeat-padded or cut to 10 s as CLAP expects.
        """
        from lightning_auffusion.audio.resample import resample
        from lightning_auffusion.metrics.extractors.clap import CLAP_SAMPLE_RATE, prepare_clap_audio

        spec, model = self.specs[index], self.encoders[index]
        if audio.dim() != 2:
            raise UserInputError(
                f"encoder {spec.name!r}: audio must be (batch, samples), got shape {tuple(audio.shape)}"
            )
        wave = resample(audio.detach().float().cpu(), int(sample_rate), CLAP_SAMPLE_RATE)
        lengths = [wave.shape[-1]] * wave.shape[0]
        if num_samples is not None:
            lengths = [max(1, -(-int(n) * CLAP_SAMPLE_RATE // int(sample_rate))) for n in num_samples.tolist()]
        clips = [prepare_clap_audio(row[:n], CLAP_SAMPLE_RATE).double().numpy() for row, n in zip(wave, lengths)]
        features = self._feature_extractor()(clips, sampling_rate=CLAP_SAMPLE_RATE, return_tensors="pt")[
            "input_features"
        ]
        param = next(model.parameters())
        emb = pooled_embedding(model.get_audio_features(input_features=features.to(param.device, param.dtype)))
        rows = F.normalize(emb.float(), dim=-1).unsqueeze(1)
        return fit_sequence(rows, spec.max_length)

    def _feature_extractor(self) -> Any:
        """CLAP's feature extractor with laion/clap-htsat-unfused's settings, built locally once."""
        if getattr(self, "_clap_features", None) is None:
            from lightning_auffusion.metrics.extractors.clap import default_feature_extractor

            self._clap_features = default_feature_extractor()
        return self._clap_features

    @property
    def audio_conditioned(self) -> bool:
        """Some encoder embeds the clip's audio in training (kind ``clap_audio``)."""
        return any(s.audio_conditioned for s in self.specs)

    def check_captions(self, captions: list[str | None], keys: list[str] | None = None, audio: bool = False) -> None:
        """Refuse caption-less clips (caption None, as the data module gives them with ``keep_uncaptioned``) when
        an encoder would read their caption: every text encoder, and an audio-kind one too without ``audio``."""
        missing = [i for i, c in enumerate(captions) if c is None]
        if not missing:
            return
        readers = [s for s in self.specs if not (audio and s.audio_conditioned)]
        if not readers:
            return
        names = ", ".join(f"{s.name!r} ({s.kind})" for s in readers)
        which = keys[missing[0]] if keys else f"#{missing[0]}"
        raise UserInputError(
            f"{len(missing)} clip(s) of the batch have no caption (e.g. {which}), but encoder(s) {names} condition "
            "on the caption: only kind 'clap_audio' trains on caption-less clips (it embeds their audio); use it "
            "alone, or set the data module's keep_uncaptioned false"
        )

    def clear_cache(self) -> None:
        self._cache = [{} for _ in self.specs]

    @property
    def cache_size(self) -> int:
        """Captions held in the embedding cache (summed over encoders)."""
        return sum(len(c) for c in self._cache)

    # ------------------------------------------------------------------ conditioning
    def forward(
        self,
        captions: list[str | None],
        drop_mask: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        sample_rate: int | None = None,
        num_samples: torch.Tensor | None = None,
        keys: list[str] | None = None,
        precomputed: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(batch, sequence_length, cross_attention_dim); ``drop_mask[b, i]`` zeros encoder i's slot of sample b.

        With ``audio`` (batch, samples) at ``sample_rate`` (training), audio-kind encoders embed the audio and
        ignore the captions (None allowed); every other encoder reads ``captions``. ``precomputed`` maps a frozen
        encoder's name to its stored output for ``captions`` ((batch, max_length, d), as ``encode_hidden`` gives
        it, e.g. from latent shards), used instead of running it.
        """
        if isinstance(captions, str):
            raise TypeError("captions must be a list of strings, got a single string")
        batch = len(captions)
        if drop_mask is not None and tuple(drop_mask.shape) != (batch, self.num_encoders):
            raise UserInputError(
                f"drop_mask must have shape ({batch}, {self.num_encoders}), got {tuple(drop_mask.shape)}"
            )
        if audio is not None and (sample_rate is None or audio.shape[0] != batch):
            raise UserInputError(
                f"audio conditioning needs sample_rate and one clip per caption, got {tuple(audio.shape)} for {batch}"
            )
        self.check_captions(list(captions), keys, audio=audio is not None)
        slots = []
        for index, adapter in enumerate(self.adapters):
            spec = self.specs[index]
            if audio is not None and spec.audio_conditioned:
                hidden = self.encode_audio(index, audio, int(sample_rate), num_samples)
            elif precomputed is not None and spec.name in precomputed and not spec.trainable:
                hidden = fit_sequence(precomputed[spec.name].to(adapter.proj.weight.device), spec.max_length)
            else:
                hidden = self.encode_hidden(index, captions)
            hidden = with_token_positions(hidden, spec.token_position_channels)
            emb = adapter(hidden.to(adapter.proj.weight.dtype))
            if drop_mask is not None:
                keep = ~drop_mask[:, index].to(device=emb.device, dtype=torch.bool)
                emb = torch.where(keep.view(batch, 1, 1), emb, torch.zeros_like(emb))
            slots.append(emb)
        return torch.cat(slots, dim=1)

    def sample_drop_mask(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Bool (batch, num_encoders): True where that encoder is dropped, independently per encoder."""
        rates = self.drop_rates.detach().to("cpu")
        draws = torch.rand(batch_size, self.num_encoders, generator=generator)
        return draws < rates

    def unconditional(self, batch_size: int) -> torch.Tensor:
        """The unconditional input: zeros (batch, sequence_length, cross_attention_dim)."""
        weight = self.adapters[0].proj.weight
        return torch.zeros(
            batch_size, self.sequence_length, self.cross_attention_dim, device=weight.device, dtype=weight.dtype
        )

    def token_labels(self, caption: str) -> list[str]:
        """One label per sequence position, ``"<encoder name>:<token piece>"``; padding is ``"<name>:<pad>"``."""
        labels: list[str] = []
        for index, spec in enumerate(self.specs):
            if spec.audio_conditioned:  # one pooled joint-space vector
                labels.extend([f"{spec.name}:<clap>"] + [f"{spec.name}:<pad>"] * (spec.max_length - 1))
                continue
            tokens = self._tokenize(index, [caption])
            ids = tokens["input_ids"][0].tolist()
            mask = tokens["attention_mask"][0].tolist()
            pieces = self.tokenizers[index].convert_ids_to_tokens(ids)
            row = [f"{spec.name}:{p}" if m else f"{spec.name}:<pad>" for p, m in zip(pieces, mask)]
            row = row[: spec.max_length] + [f"{spec.name}:<pad>"] * (spec.max_length - len(row))
            labels.extend(row)
        return labels


def pooled_embedding(output: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output holding it as ``pooler_output`` (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def default_encoders() -> list[EncoderSpec]:
    """Released Auffusion's conditioning: CLIP ViT-L/14 text encoder, 77 tokens, 10% dropout."""
    return [EncoderSpec(name="clip", kind="clip", pretrained="openai/clip-vit-large-patch14")]


__all__ = [
    "ConditionAdapter",
    "TextConditioner",
    "default_encoders",
    "fit_sequence",
]
