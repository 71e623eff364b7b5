"""LoRA fine-tuning of the U-Net through peft and diffusers' adapter support.

``AuffusionLDM(lora={...})`` freezes the U-Net and injects low-rank adapters into the layers named by
``target_modules`` (by default the attention projections, as diffusers' ``train_text_to_image_lora.py``
does). Only the adapters train. Checkpoints keep the adapter weights and the base U-Net's source (hub id,
path or config dict) from the hyper-parameters; the base weights themselves are kept only when the source
is a config dict, since random initial weights cannot be rebuilt from their source.

:func:`export_lora` writes diffusers' LoRA format (``pytorch_lora_weights.safetensors``, keys
``unet.<module>.lora.down.weight`` / ``lora.up``, the LoRA config as
metadata) that ``StableDiffusionPipeline.load_lora_weights``
and ``UNet2DConditionModel.load_lora_adapter(path, prefix="unet")`` read; :func:`load_lora` applies such a
file to a U-Net (``generate --lora``). peft is imported only when LoRA is used (``pip install peft``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from lightning_auffusion.errors import MissingInputError, UserInputError

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
DEFAULT_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]


def require_peft() -> Any:
    """The ``peft`` module, or an ImportError saying how to install it."""
    try:
        import peft
    except ImportError:
        raise ImportError(
            "LoRA needs peft, which is not installed: pip install 'lightning-auffusion[lora]' (or pip install peft)"
        ) from None
    return peft


@dataclass
class LoRAConfig:
    """LoRA adapters of the U-Net.

    Attributes:
        rank: rank of each low-rank update (peft's r).
        alpha: scale numerator, the update is scaled by alpha / rank; None takes alpha = rank (scale 1).
        target_modules: names (suffixes) of the U-Net's linear/conv layers that get an adapter.
        dropout: dropout on the adapter input.
        init: initialisation of the A matrices: gaussian (as diffusers' LoRA script) or default (peft's Kaiming).
    """

    rank: int = 4
    alpha: float | None = None
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    dropout: float = 0.0
    init: str = "gaussian"

    def __post_init__(self) -> None:
        if int(self.rank) < 1:
            raise UserInputError(f"lora rank must be a positive integer, got {self.rank!r}")
        if not self.target_modules:
            raise UserInputError(
                "lora target_modules is empty: name at least one U-Net layer, e.g. [to_q, to_k, to_v, to_out.0]"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise UserInputError(f"lora dropout must be in [0, 1), got {self.dropout!r}")
        if self.init not in ("gaussian", "default"):
            raise UserInputError(f"lora init must be 'gaussian' or 'default', got {self.init!r}")

    def peft_config(self) -> Any:
        peft = require_peft()
        return peft.LoraConfig(
            r=int(self.rank),
            lora_alpha=float(self.alpha if self.alpha is not None else self.rank),
            target_modules=list(self.target_modules),
            lora_dropout=float(self.dropout),
            init_lora_weights="gaussian" if self.init == "gaussian" else True,
        )


def add_lora(unet: nn.Module, config: LoRAConfig) -> nn.Module:
    """Freeze ``unet`` and inject the adapters of ``config`` (in place); only the adapters require grad."""
    require_peft()
    unet.requires_grad_(False)
    try:
        unet.add_adapter(config.peft_config())
    except ValueError as err:  # peft: none of target_modules found
        raise UserInputError(
            f"lora target_modules {list(config.target_modules)} matched no U-Net layer: {err}"
        ) from None
    for name, param in unet.named_parameters():
        param.requires_grad_(is_lora_key(name))
    return unet


def is_lora_key(name: str) -> bool:
    """Whether a parameter / state-dict key belongs to a LoRA adapter (peft names them lora_A / lora_B / ...)."""
    return ".lora_" in name


def lora_state_dict(unet: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights in diffusers' LoRA layout (``<module>.lora.down.weight``), without the ``unet.`` prefix."""
    require_peft()
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def adapter_metadata(unet: nn.Module) -> dict[str, Any]:
    """The LoRA config of ``unet``'s default adapter as a plain dict, with alpha = rank (see :func:`export_lora`)."""
    config = unet.peft_config["default"].to_dict()
    for key, value in config.items():
        if isinstance(value, set):
            config[key] = sorted(value)
    config["lora_alpha"] = config["r"]
    return config


def export_lora(unet: nn.Module, output_dir: str) -> str:
    """Write ``unet``'s adapter as ``output_dir/pytorch_lora_weights.safetensors`` (diffusers' LoRA format)."""
    from diffusers import StableDiffusionPipeline

    if not getattr(unet, "peft_config", None):
        raise UserInputError("the U-Net has no LoRA adapter to export: train with model lora: {rank: ...}")
    os.makedirs(output_dir, exist_ok=True)
    # alpha / rank is folded into the up matrices, so a loader that ignores the metadata (load_lora_adapter on
    # a path) and one that reads it (load_lora_weights) both apply the same update
    config = unet.peft_config["default"]
    scale = float(config.lora_alpha) / float(config.r)
    layers = {
        k: (v.detach().float() * scale if ".lora.up." in k else v.detach()).to(v.dtype).cpu().contiguous()
        for k, v in lora_state_dict(unet).items()
    }
    StableDiffusionPipeline.save_lora_weights(
        output_dir, unet_lora_layers=layers, safe_serialization=True, unet_lora_adapter_metadata=adapter_metadata(unet)
    )
    return os.path.join(output_dir, LORA_WEIGHT_NAME)


def lora_file(path: str) -> str:
    """``path`` itself when it is a file, else ``path/pytorch_lora_weights.safetensors``; missing: one line."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        path = os.path.join(path, LORA_WEIGHT_NAME)
    if not os.path.isfile(path):
        raise MissingInputError(
            f"no LoRA weights at {path}: give a {LORA_WEIGHT_NAME} written by export-lora (or its folder)"
        )
    return path


def load_lora(unet: nn.Module, path: str, fuse: bool = True, scale: float = 1.0) -> nn.Module:
    """Apply the diffusers-format LoRA file (or folder) ``path`` to ``unet``; ``fuse`` merges it into the weights."""
    require_peft()
    from safetensors import safe_open

    weights = lora_file(path)
    with safe_open(weights, framework="pt") as f:
        if not any(k.startswith("unet.") for k in f.keys()):
            raise UserInputError(
                f"{weights} holds no U-Net LoRA weights (no 'unet.' keys); export one with export-lora"
            )
    unet.load_lora_adapter(weights, prefix="unet", adapter_name="lora")
    if fuse:
        unet.fuse_lora(lora_scale=scale)
        unet.unload_lora()
    elif scale != 1.0:
        unet.set_adapters(["lora"], weights=[scale])
    return unet


def merged_copy(unet: nn.Module) -> nn.Module:
    """A copy of ``unet`` with its adapters merged into the base weights and removed (a plain U-Net)."""
    import copy

    merged = copy.deepcopy(unet)
    merged.fuse_lora()
    merged.unload_lora()
    return merged


def lora_hparams(lora: LoRAConfig | None) -> dict[str, Any] | None:
    return asdict(lora) if lora is not None else None
