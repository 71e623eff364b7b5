"""Construction of the diffusers parts: U-Net, VAE, and U-Net speed options (noise schedules: ``schedulers``).

A *source* is one of

* a hub id of a diffusers layout (``stable-diffusion-v1-5/stable-diffusion-v1-5``, a released Auffusion
  repo): the part loads from its subfolder (``unet`` / ``vae``);
* a local directory: either a whole layout holding the subfolder, or the part's own folder
  (``config.json`` + weights, as written by ``save_pretrained``);
* a dict of the part's config kwargs: random weights (``{"preset": "sd15", ...}`` starts from
  Stable Diffusion v1.5's config and overrides the given keys);
* for the VAE also a ``.ckpt`` written by training ``SpectrogramVAE``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from lightning_auffusion.errors import MissingInputError, UserInputError

log = logging.getLogger(__name__)

SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_VAE_SCALING_FACTOR = 0.18215
ATTENTION_BACKENDS = ("sdpa", "xformers", "math")

_SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1.0,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
_SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": SD15_VAE_SCALING_FACTOR,
}
PRESETS = {"sd15": {"unet": _SD15_UNET, "vae": _SD15_VAE}}


def sd15_unet_config(**overrides: Any) -> dict[str, Any]:
    """Stable Diffusion v1.5's ``UNet2DConditionModel`` config (859,520,964 parameters), with overrides."""
    return {**_SD15_UNET, **overrides}


def sd15_vae_config(**overrides: Any) -> dict[str, Any]:
    """Stable Diffusion v1.5's ``AutoencoderKL`` config (scaling factor 0.18215), with overrides."""
    return {**_SD15_VAE, **overrides}


def _expand_preset(config: dict[str, Any], part: str) -> dict[str, Any]:
    config = dict(config)
    preset = config.pop("preset", None)
    if preset is None:
        return config
    if preset not in PRESETS:
        raise UserInputError(f"unknown {part} preset {preset!r}; known: {sorted(PRESETS)}")
    return {**PRESETS[preset][part], **config}


def checked_config(cls: type, config: dict[str, Any], part: str) -> dict[str, Any]:
    """``config`` if every key is a constructor argument of diffusers class ``cls``; a mistyped key (which
    diffusers would only warn about, training on with the default) is rejected by name."""
    import difflib
    import inspect

    accepted = {name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "kwargs")}
    accepted |= set(getattr(cls, "_deprecated_kwargs", None) or ())
    unknown = [key for key in config if key not in accepted and not key.startswith("_")]  # _class_name etc.
    if unknown:
        hints = [
            f"{key!r}"
            + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(key, accepted, 1)) else "")
            for key in unknown
        ]
        listed = "" if all("did you mean" in h for h in hints) else f"; {cls.__name__} accepts {sorted(accepted)}"
        raise UserInputError(f"unknown key(s) in the {part} config: {', '.join(hints)}{listed}")
    return config


def _is_local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or os.path.exists(source) or source.count("/") > 1


def _from_source(cls: type, source: str, subfolder: str, part: str) -> nn.Module:
    source = os.path.expanduser(source)
    if os.path.isdir(source):
        if os.path.isfile(os.path.join(source, subfolder, "config.json")):
            return cls.from_pretrained(source, subfolder=subfolder)
        if os.path.isfile(os.path.join(source, "config.json")):
            return cls.from_pretrained(source)
        raise MissingInputError(
            f"{source!r} holds neither {subfolder}/config.json (a diffusers layout) nor config.json "
            f"(a {part} folder written by save_pretrained); point '{part}' at one of them"
        )
    if _is_local(source):
        raise MissingInputError(
            f"no {part} at {source!r}: give a diffusers layout directory (with {subfolder}/), the {part}'s own "
            "folder, a hub id such as stable-diffusion-v1-5/stable-diffusion-v1-5, or a config dict"
        )
    try:
        return cls.from_pretrained(source, subfolder=subfolder)
    except (OSError, ValueError) as err:
        raise OSError(
            f"could not load the {part} from hub id {source!r} (subfolder {subfolder!r}): {err}. Go online once "
            f"so it is cached, or download the layout and pass its local directory"
        ) from err


def build_unet(source: str | dict[str, Any], subfolder: str = "unet") -> nn.Module:
    """``UNet2DConditionModel`` from a hub id, a local directory or a config dict (random weights)."""
    from diffusers import UNet2DConditionModel

    if isinstance(source, dict):
        return UNet2DConditionModel.from_config(
            checked_config(UNet2DConditionModel, _expand_preset(source, "unet"), "unet")
        )
    return _from_source(UNet2DConditionModel, str(source), subfolder, "unet")


def vae_from_lightning_checkpoint(path: str) -> nn.Module:
    """The ``AutoencoderKL`` trained by ``SpectrogramVAE`` in Lightning checkpoint ``path``."""
    from diffusers import AutoencoderKL

    from lightning_auffusion.safe_load import load_weights

    ckpt = load_weights(path, "VAE checkpoint")
    config = ckpt.get("vae_config")
    if config is None:
        raise UserInputError(
            f"{path} is not a SpectrogramVAE checkpoint (no 'vae_config'); give the checkpoint written by "
            "`fit --config conf/vae/...yaml` or a diffusers VAE folder"
        )
    vae = AutoencoderKL.from_config(config)
    state = {k[len("vae.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("vae.")}
    vae.load_state_dict(state, strict=True)
    return vae


def build_vae(source: str | dict[str, Any], subfolder: str = "vae") -> nn.Module:
    """``AutoencoderKL`` from a hub id, a local directory, a config dict or a SpectrogramVAE ``.ckpt``."""
    from diffusers import AutoencoderKL

    if isinstance(source, dict):
        return AutoencoderKL.from_config(checked_config(AutoencoderKL, _expand_preset(source, "vae"), "vae"))
    source = os.path.expanduser(str(source))
    if source.endswith(".ckpt"):
        if not os.path.isfile(source):
            raise MissingInputError(
                f"no VAE checkpoint {source!r}: train one first (python -m lightning_auffusion fit --config "
                "conf/vae/quickstart.yaml) or point 'vae' at a diffusers VAE"
            )
        return vae_from_lightning_checkpoint(source)
    return _from_source(AutoencoderKL, source, subfolder, "vae")


def set_attention(unet: nn.Module, backend: str = "sdpa") -> None:
    """Attention kernel of every U-Net attention layer: PyTorch SDPA (default), xformers, or plain math."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if backend == "sdpa":
        unet.set_attn_processor(AttnProcessor2_0())
    elif backend == "xformers":
        from diffusers.utils import is_xformers_available

        if not is_xformers_available():
            raise ImportError(
                "attention 'xformers' was asked for but xformers is not installed: pip install xformers "
                "(a build matching your torch and CUDA), or use attention: sdpa"
            )
        unet.enable_xformers_memory_efficient_attention()
    elif backend == "math":
        unet.set_attn_processor(AttnProcessor())
    else:
        raise UserInputError(f"attention must be one of {ATTENTION_BACKENDS}, got {backend!r}")


def prepare_unet(
    unet: nn.Module,
    attention: str = "sdpa",
    gradient_checkpointing: bool = False,
    channels_last: bool = False,
    compile: bool = False,
    compile_mode: str | None = None,
) -> nn.Module:
    """Apply the speed/memory options in place and return ``unet`` (same parameter names)."""
    set_attention(unet, attention)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    if compile:
        unet.compile(mode=compile_mode)  # in place: state-dict keys keep their names
    return unet


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
