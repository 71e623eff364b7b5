"""``python -m lightning_auffusion encode``: audio shards -> latent shards (the frozen VAE's posterior per clip).

Layout of ``<out_root>/<name>/`` (see ``data_shards/README.md``):

* ``<name>-NNNNNN.tar``: one per input shard, in input order. Per clip ``<key>.posterior.npy`` (float16
  ``(2C, h, w)``: the posterior's mean and log-variance stacked, as diffusers' ``latent_dist.parameters``),
  ``<key>.json`` (``captions``, ``latent_frames``, the fingerprints and the audio shard's metadata) and, with
  ``text_embeddings``, ``<key>.text_<encoder>.npy`` (float16 ``(captions, max_length, d)``: each caption's
  frozen encoder output as the conditioner hands it to its adapter, zero-padded);
* ``parts/<name>-NNNNNN.json``: the record of each finished shard (written last, atomically);
* ``index.json``: settings, fingerprints and every finished shard, rebuilt by each rank when it is done.

Each clip is encoded whole (up to the audio shard's 30 s): the waveform is zero-padded to ``n_frames``
frames (the training window, exactly as the audio data module pads a short clip), and a longer clip's
spectrogram is padded with silence to a multiple of the VAE's downsampling, so a clip that fits the window
has the very posterior the audio path computes, and a longer one is cropped later in latent frames.

Work is split by shard: input shard ``i`` is rank ``i % world_size``'s (``--rank``/``--world_size``, or
``RANK``/``WORLD_SIZE`` as torchrun and SLURM set them). A shard is written to ``*.tar.partial`` and renamed
when complete, so a re-run (or another rank) skips every shard whose record and file are present.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lightning_auffusion.audio import AuffusionFrontend, ImageConfig, MelConfig
from lightning_auffusion.audio.frontend import fit_frames
from lightning_auffusion.coerce import as_dataclass
from lightning_auffusion.data.rebuild import resumable_index
from lightning_auffusion.diffusion.encoders import EncoderSpec
from lightning_auffusion.diffusion.latent_fingerprint import latent_fingerprint, text_fingerprint, vae_downsampling
from lightning_auffusion.errors import MissingInputError, UserInputError

log = logging.getLogger(__name__)

LATENT_FORMAT = "latent-shards-1"
MODEL_KEYS = ("vae", "mel", "image", "peak_normalize", "n_frames", "encoders")


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def model_settings(ldm_config: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The VAE / front-end / encoder settings: ``model.init_args`` of an LDM fit config, then ``overrides``."""
    settings: dict[str, Any] = {}
    if ldm_config is not None:
        import yaml

        if not Path(ldm_config).is_file():
            raise MissingInputError(
                f"ldm_config {ldm_config} not found (an LDM fit config, e.g. conf/ldm/auffusion.yaml)"
            )
        data = yaml.safe_load(Path(ldm_config).read_text(encoding="utf-8")) or {}
        model = data.get("model", {}) if isinstance(data, dict) else {}
        settings = dict(model.get("init_args", model) if isinstance(model, dict) else {})
        if not settings:
            raise UserInputError(
                f"{ldm_config} has no model.init_args: give an LDM fit config (e.g. conf/ldm/auffusion.yaml)"
            )
    settings = {k: v for k, v in settings.items() if k in MODEL_KEYS}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


class LatentEncoder:
    """The frozen pieces ``encode`` runs: front end, VAE and (optionally) the text conditioner's encoders."""

    def __init__(self, settings: dict[str, Any], text_embeddings: bool, device: torch.device) -> None:
        from lightning_auffusion.diffusion.conditioning import TextConditioner, default_encoders
        from lightning_auffusion.diffusion.unet_factory import SD15_REPO, build_vae

        self.device = device
        mel = as_dataclass(settings.get("mel"), MelConfig)
        image = as_dataclass(settings.get("image"), ImageConfig)
        self.n_frames = int(settings.get("n_frames") or 1024)
        self.frontend = AuffusionFrontend(
            mel, image, n_frames=None, peak_normalize=settings.get("peak_normalize", True)
        )
        self.vae = build_vae(settings.get("vae", SD15_REPO)).to(device).eval().requires_grad_(False)
        self.factor = vae_downsampling(self.vae)
        if self.n_frames % self.factor:
            raise UserInputError(f"n_frames {self.n_frames} is not a multiple of the VAE's downsampling {self.factor}")
        self.fingerprint = latent_fingerprint(self.vae, self.frontend)
        self.conditioner = None
        self.text: dict[str, str] = {}
        if text_embeddings:
            specs = [as_dataclass(e, EncoderSpec) for e in (settings.get("encoders") or default_encoders())]
            frozen = [s for s in specs if s.kind != "scratch"]
            if not frozen:
                raise UserInputError(
                    "text_embeddings: true needs a frozen text encoder (kind scratch trains with the U-Net)"
                )
            self.conditioner = TextConditioner(frozen).to(device).eval()
            self.text = {s.name: text_fingerprint(s, m) for s, m in zip(frozen, self.conditioner.encoders)}

    @property
    def window_samples(self) -> int:
        return self.n_frames * self.frontend.hop_length

    @torch.no_grad()
    def posterior(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Float16 ``(2C, h, w)`` posterior parameters of each waveform (all of the same padded length)."""
        length = max(self.window_samples, max(w.shape[0] for w in waves))
        audio = torch.zeros(len(waves), length)
        for i, w in enumerate(waves):
            audio[i, : w.shape[0]] = torch.from_numpy(w)
        logmel = self.frontend.waveform_to_logmel(audio)
        frames = self.n_frames if length == self.window_samples else -(-logmel.shape[-1] // self.factor) * self.factor
        images = self.frontend.logmel_to_image(fit_frames(logmel, frames, self.frontend.mel_config.log_floor))
        params = self.vae.encode(images.to(self.device, self.vae.dtype)).latent_dist.parameters
        return list(params.float().cpu().numpy().astype(np.float16))

    @torch.no_grad()
    def text_outputs(self, captions: list[str]) -> dict[str, np.ndarray]:
        """Per encoder name: float16 ``(captions, max_length, d)``, what the conditioner gives its adapter."""
        assert self.conditioner is not None
        return {
            spec.name: self.conditioner.encode_hidden(i, list(captions)).float().cpu().numpy().astype(np.float16)
            for i, spec in enumerate(self.conditioner.specs)
        }


def _length_key(encoder: LatentEncoder, num_samples: int) -> int:
    return max(encoder.window_samples, num_samples)


def encode_shard(encoder: LatentEncoder, url: str, out_path: Path, batch_size: int) -> dict[str, Any]:
    """Encode every clip of audio shard ``url`` into latent shard ``out_path``; returns its record."""
    import webdataset as wds

    from lightning_auffusion.data.pipeline import iterate_shard_samples

    clips = list(iterate_shard_samples(url, sample_rate=encoder.frontend.sample_rate))
    posteriors: dict[int, np.ndarray] = {}
    buckets: dict[int, list[int]] = {}

    def flush(length: int) -> None:
        todo = buckets.pop(length)
        for i, p in zip(todo, encoder.posterior([clips[i]["audio"] for i in todo])):
            posteriors[i] = p

    for i, clip in enumerate(clips):
        length = _length_key(encoder, clip["audio"].shape[0])
        buckets.setdefault(length, []).append(i)
        if len(buckets[length]) >= batch_size:
            flush(length)
    for length in list(buckets):
        flush(length)

    partial = out_path.with_name(out_path.name + ".partial")
    with open(partial, "wb") as fh, wds.TarWriter(fh, encoder=False, format="PAX_FORMAT", mtime=0.0) as sink:
        for i, clip in enumerate(clips):
            record = {
                **clip["metadata"],
                "captions": clip["captions"],
                "latent_frames": int(posteriors[i].shape[-1]),
                "latent_fingerprint": encoder.fingerprint,
            }
            sample = {"__key__": clip["key"], "posterior.npy": _npy(posteriors[i])}
            if encoder.conditioner is not None:
                record["text_fingerprints"] = dict(encoder.text)
                for name, hidden in encoder.text_outputs(clip["captions"]).items():
                    sample[f"text_{name}.npy"] = _npy(hidden)
            sample["json"] = json.dumps(record, ensure_ascii=False).encode("utf-8")
            sink.write(sample)
    os.replace(partial, out_path)
    return {"file": out_path.name, "source": url, "count": len(clips), "bytes": out_path.stat().st_size}


def _finished(out_dir: Path, part: Path, fingerprint: dict[str, Any]) -> bool:
    if not part.is_file():
        return False
    record = json.loads(part.read_text(encoding="utf-8"))
    path = out_dir / record["file"]
    return record.get("fingerprint") == fingerprint and path.is_file() and path.stat().st_size == record["bytes"]


def write_index(out_dir: Path, header: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """index.json from the finished shards' part records (any rank may write it; the last one is complete)."""
    shards = []
    for i, name in enumerate(files):
        part = out_dir / "parts" / f"{Path(name).stem}.json"
        if _finished(out_dir, part, header["fingerprint"]):
            shards.append({"shard": i, **json.loads(part.read_text(encoding="utf-8"))})
    index = {
        **header,
        "num_shards": len(files),
        "complete": len(shards) == len(files),
        "shards": shards,
        "totals": {"shards": len(shards), "clips": sum(s["count"] for s in shards)},
    }
    _write_json(out_dir / "index.json", index)
    return index


def encode(
    shards: str,
    name: str,
    out_root: str = "data_shards",
    ldm_config: str | None = None,
    vae: str | dict[str, Any] | None = None,
    mel: MelConfig | None = None,
    image: ImageConfig | None = None,
    peak_normalize: bool | None = None,
    n_frames: int | None = None,
    encoders: list[EncoderSpec] | None = None,
    text_embeddings: bool = False,
    batch_size: int = 8,
    device: str = "auto",
    rank: int | None = None,
    world_size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode audio shards (written by ``shard``) into latent shards for training the LDM without the VAE.

    Args:
        shards: the audio shards: a shard folder, its index.json, a glob or brace pattern.
        name: output folder name: ``<out_root>/<name>/`` with ``<name>-NNNNNN.tar`` (one per input shard).
        out_root: root folder of the shard folders.
        ldm_config: an LDM fit config whose model.init_args give vae, mel, image, peak_normalize, n_frames
            and encoders (the arguments below override it); without it, Auffusion's defaults (SD-1.5 VAE).
        vae: VAE source (hub id, folder, SpectrogramVAE .ckpt or config dict), as AuffusionLDM's ``vae``.
        mel: log-mel settings of the front end (MelConfig).
        image: spectrogram <-> image mapping (ImageConfig).
        peak_normalize: peak-normalise each clip before the log-mel.
        n_frames: the training window in mel frames (shorter clips are padded to it, as the audio path does).
        encoders: the text encoders (EncoderSpec fields), for text_embeddings.
        text_embeddings: also store the frozen text encoders' outputs for every caption.
        batch_size: clips of the same padded length encoded together.
        device: auto, cpu, cuda, cuda:1, ... (auto: this rank's LOCAL_RANK GPU when CUDA is available).
        rank: this process's rank; None = RANK from the environment (torchrun, SLURM), else 0.
        world_size: number of ranks; None = WORLD_SIZE from the environment, else 1.
        overwrite: rebuild when the folder holds latent shards of other inputs or another model.
        progress: show a progress bar.

    Returns:
        The index (also written to ``<out_root>/<name>/index.json``).
    """
    from lightning_auffusion.data.pipeline import expand_shards
    from lightning_auffusion.diffusion.loading import resolve_device

    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0))) if rank is None else rank
    world_size = (
        int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1))) if world_size is None else world_size
    )
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserInputError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if batch_size < 1:
        raise UserInputError(f"batch_size must be positive, got {batch_size}")
    if not name or "/" in name or name in (".", ".."):
        raise UserInputError(f"name must be a plain folder name (no slashes), got {name!r}")
    if device == "auto" and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    urls = expand_shards(shards)
    settings = model_settings(
        ldm_config,
        {
            "vae": vae,
            "mel": asdict(mel) if mel else None,
            "image": asdict(image) if image else None,
            "peak_normalize": peak_normalize,
            "n_frames": n_frames,
            "encoders": encoders,
        },
    )
    encoder = LatentEncoder(settings, text_embeddings, resolve_device(device))
    out_dir = Path(out_root) / name
    (out_dir / "parts").mkdir(parents=True, exist_ok=True)
    files = [f"{name}-{i:06d}.tar" for i in range(len(urls))]
    sources = hashlib.sha256(json.dumps([os.path.abspath(u) for u in urls]).encode()).hexdigest()[:32]
    fingerprint = {"latent": encoder.fingerprint, "text": encoder.text, "sources": sources}
    header = {
        "format": LATENT_FORMAT,
        "name": name,
        "fingerprint": fingerprint,
        "latent_downsampling": encoder.factor,
        "hop_length": encoder.frontend.hop_length,
        "sample_rate": encoder.frontend.sample_rate,
        "n_frames": encoder.n_frames,
        "latent_channels": int(encoder.vae.config.latent_channels),
        "text_embeddings": text_embeddings,
    }
    resumable_index(
        out_dir / "index.json",
        "fingerprint",
        fingerprint,
        overwrite,
        "latent shards of other audio shards or another VAE/front end/encoders",
        lambda: [*out_dir.glob(f"{name}-*.tar*"), *(out_dir / "parts").glob("*.json")],
    )
    mine = [i for i in range(len(urls)) if i % world_size == rank]
    todo = [i for i in mine if not _finished(out_dir, out_dir / "parts" / f"{Path(files[i]).stem}.json", fingerprint)]
    if len(todo) < len(mine):
        log.info(
            "%s: rank %d resuming, %d of its %d shards already encoded", out_dir, rank, len(mine) - len(todo), len(mine)
        )
    for i in tqdm(todo, unit="shard", desc=f"encode {name} (rank {rank})", disable=not progress):
        started = time.perf_counter()
        record = encode_shard(encoder, urls[i], out_dir / files[i], batch_size)
        record["fingerprint"] = fingerprint
        _write_json(out_dir / "parts" / f"{Path(files[i]).stem}.json", record)
        log.info("%s: %d clips in %.1f s", files[i], record["count"], time.perf_counter() - started)
    index = write_index(out_dir, header, files)
    log.info(
        "%s: %d of %d shards encoded (%d clips)%s",
        out_dir,
        index["totals"]["shards"],
        len(files),
        index["totals"]["clips"],
        "" if index["complete"] else "; the other ranks' shards are still missing",
    )
    return index
