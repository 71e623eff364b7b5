"""CLAP embeddings for the CLAP score: transformers' ``ClapModel`` (laion/clap-htsat-unfused).

Audio: mono, resampled to 48 kHz, cut to its first 480000 samples (10 s) or padded to them
(``pad_mode="repeatpad"``: repeated whole then zero padded, as laion-clap and ``ClapFeatureExtractor``
do; ``"zero"``: zero padded), then ``ClapFeatureExtractor`` (64 Slaney mels, 1024-point window, hop 480,
dB) and ``get_audio_features``. Text: the model's tokenizer (77 tokens at most) and
``get_text_features``. Both embeddings are L2-normalised.

Weights: a folder ``clap-htsat-unfused/`` (``save_pretrained`` layout) in the weights directory, else the
Hugging Face cache. With random weights (``allow_random``) the full-size default ``ClapConfig`` is built
and text is tokenised by a byte-level tokenizer made offline (``offline_tokenizer``), since the real
vocabulary is part of the missing download; such scores only show that the pipeline runs.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_auffusion.audio.resample import resample
from lightning_auffusion.metrics.extractors.weights import (
    WEIGHT_FILES,
    MissingWeightsError,
    WeightStatus,
    locate_weights,
    missing_message,
)

log = logging.getLogger(__name__)

CLAP_SAMPLE_RATE = 48000
CLAP_SAMPLES = 480000
TEXT_MAX_LENGTH = 77


def offline_tokenizer():
    """A RoBERTa-style byte-level tokenizer (256 byte symbols + specials, no merges) built without downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import RobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]))
    return RobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        model_max_length=512,
    )


def default_feature_extractor():
    """``ClapFeatureExtractor`` with laion/clap-htsat-unfused's settings, built locally."""
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(
        feature_size=64,
        sampling_rate=CLAP_SAMPLE_RATE,
        hop_length=480,
        max_length_s=10,
        fft_window_size=1024,
        frequency_min=50,
        frequency_max=14000,
        truncation="rand_trunc",
        padding="repeatpad",
    )


def prepare_clap_audio(audio: np.ndarray | Tensor, sample_rate: int, pad_mode: str = "repeatpad") -> Tensor:
    """Audio (T,) or (channels, T) -> float32 (480000,) at 48 kHz."""
    x = torch.as_tensor(np.asarray(audio) if not isinstance(audio, Tensor) else audio).float()
    if x.dim() == 2:
        x = x.mean(dim=0)
    if sample_rate != CLAP_SAMPLE_RATE:
        x = resample(x, sample_rate, CLAP_SAMPLE_RATE)
    x = x[:CLAP_SAMPLES]
    n = x.shape[-1]
    if n < CLAP_SAMPLES:
        if pad_mode == "repeatpad" and n > 0:
            x = x.repeat(CLAP_SAMPLES // n)
        elif pad_mode not in ("repeatpad", "zero"):
            raise ValueError(f"pad_mode must be 'repeatpad' or 'zero', got {pad_mode!r}")
        x = F.pad(x, (0, CLAP_SAMPLES - x.shape[-1]))
    return x


def _pooled(output) -> Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output whose pooler_output is the embedding (5)."""
    return output if isinstance(output, Tensor) else output.pooler_output


class ClapEmbedder:
    """Audio and text CLAP embeddings from a ``ClapModel``, its tokenizer and feature extractor."""

    backend = "transformers"

    def __init__(
        self,
        model,
        tokenizer,
        feature_extractor=None,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        pad_mode: str = "repeatpad",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor or default_feature_extractor()
        self.batch_size = int(batch_size)
        self.pad_mode = pad_mode

    @torch.no_grad()
    def audio_embeddings(self, clips: list[Tensor]) -> Tensor:
        """Clips already prepared by ``prepare_clap_audio`` -> (N, D) unit vectors."""
        out = []
        for start in range(0, len(clips), self.batch_size):
            chunk = [c.double().cpu().numpy() for c in clips[start : start + self.batch_size]]
            inputs = self.feature_extractor(chunk, sampling_rate=CLAP_SAMPLE_RATE, return_tensors="pt")
            features = inputs["input_features"].to(self.device, dtype=next(self.model.parameters()).dtype)
            emb = _pooled(self.model.get_audio_features(input_features=features))
            out.append(F.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.model.config.projection_dim)

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> Tensor:
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=TEXT_MAX_LENGTH,
                return_tensors="pt",
            )
            emb = _pooled(
                self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
            )
            out.append(F.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.model.config.projection_dim)


def _from_folder(folder: str | os.PathLike, local_only: bool = True):
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    model = ClapModel.from_pretrained(str(folder), local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=local_only)
    try:
        extractor = ClapFeatureExtractor.from_pretrained(str(folder), local_files_only=local_only)
    except OSError:
        extractor = default_feature_extractor()
    return model, tokenizer, extractor


def load_clap(
    path: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    download: bool = False,
    allow_random: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    pad_mode: str = "repeatpad",
    random_config=None,
) -> tuple[ClapEmbedder, WeightStatus]:
    """A ``ClapEmbedder`` with laion/clap-htsat-unfused from the weights folder or the HF cache.

    ``random_config`` (a ``ClapConfig``) sets the architecture of the random-weights fallback; default: full size.
    """
    entry = WEIGHT_FILES["clap_htsat_unfused"]
    try:
        folder = locate_weights("clap_htsat_unfused", path=path, weights_dir=weights_dir, download=download)
        parts = _from_folder(folder)
        status = WeightStatus("CLAP", True, str(folder))
    except MissingWeightsError as missing:
        try:  # a copy already in the Hugging Face cache
            parts = _from_folder(entry.hub_repo)
            status = WeightStatus("CLAP", True, f"Hugging Face cache ({entry.hub_repo})")
        except (OSError, ValueError):
            if not allow_random:
                raise missing from None
            log.warning(
                "%s -> CLAP runs with random weights; its scores are not comparable with published ones",
                missing_message(entry, entry.default_path(weights_dir)).splitlines()[0],
            )
            from transformers import ClapConfig, ClapModel

            parts = (ClapModel(random_config or ClapConfig()), offline_tokenizer(), default_feature_extractor())
            status = WeightStatus("CLAP", False, None, f"{entry.filename}/ not found; byte-level stand-in tokenizer")
    model, tokenizer, extractor = parts
    return ClapEmbedder(model, tokenizer, extractor, device, batch_size, pad_mode), status
