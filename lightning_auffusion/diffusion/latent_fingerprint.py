"""Fingerprints that tie pre-encoded latent shards to the model that may train on them.

``latent`` hashes what decides a clip's VAE posterior: the VAE's config and weights (as float32) and the
front end (mel and image settings, peak normalisation). ``text`` hashes the frozen text encoders' specs
(kind, source, tokenizer, max_length, padding) and weights, which decide their stored outputs.
``encode`` writes both into every latent shard; ``AuffusionLDM`` refuses latents whose ``latent``
fingerprint is not its own, and ignores stored text outputs whose ``text`` fingerprint is not its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import torch

FINGERPRINT_VERSION = 1
TEXT_SPEC_FIELDS = (
    "kind",
    "pretrained",
    "config",
    "tokenizer",
    "max_length",
    "subfolder",
    "tokenizer_subfolder",
    "padding",
)


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def module_weights_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's parameters and buffers by name, as float32 (the same whatever dtype it runs in)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def latent_fingerprint(vae: torch.nn.Module, frontend: Any) -> str:
    """Fingerprint of the VAE (config + weights) and the audio front end (``AuffusionFrontend``)."""
    config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    return _digest(
        {
            "version": FINGERPRINT_VERSION,
            "vae_config": config,
            "vae_weights": module_weights_digest(vae),
            "mel": asdict(frontend.mel_config),
            "image": asdict(frontend.image.config),
            "image_range": [
                frontend.image.lo.flatten().tolist(),
                frontend.image.scale.flatten().tolist(),
            ],  # stats_file's values
            "peak_normalize": bool(frontend.peak_normalize),
        }
    )


def text_fingerprint(spec: Any, encoder: torch.nn.Module) -> str:
    """Fingerprint of one frozen text encoder: its spec (tokenizer, max_length, padding, ...) and weights."""
    fields = asdict(spec)
    return _digest(
        {
            "version": FINGERPRINT_VERSION,
            "weights": module_weights_digest(encoder),
            **{k: fields.get(k) for k in TEXT_SPEC_FIELDS},
        }
    )


def vae_downsampling(vae: torch.nn.Module) -> int:
    """Image pixels per latent pixel of a diffusers ``AutoencoderKL`` (8 for SD-1.5: 1 latent frame = 8 mel frames)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)
