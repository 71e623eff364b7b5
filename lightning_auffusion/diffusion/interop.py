"""Interop with the released Auffusion Hugging Face layout and with plain Stable Diffusion v1.5 layouts.

Released Auffusion layout (what ``export_released`` writes and ``load_released`` reads)::

    unet/                      diffusers UNet2DConditionModel (config.json + weights)
    vae/                       diffusers AutoencoderKL (its config's scaling_factor is the latent scale)
    scheduler/                 PNDMScheduler config (sampling scheduler; its betas are the training schedule)
    vocoder/                   HiFi-GAN config.json + vocoder.pt ({"generator": state_dict})
    feature_extractor/         CLIPImageProcessor config (the released loader opens it; unused for audio)
    text_encoder_<i>/          transformers text model + its tokenizer files
    condition_adapter_<i>/     config.json {"condition_dim": d, "cross_attention_dim": 768}
                               + condition_adapter.pt (state dict: proj.weight, proj.bias, norm.weight, norm.bias)
    condition_config.json      one entry per text encoder, in sequence order (below)
    lightning_auffusion.json   this project's extras: front end (mel, image, n_frames) and sampling defaults

``condition_config.json`` is written as the released files have it, a list of entries::

    [{"text_encoder_name": "text_encoder_0", "condition_adapter_name": "condition_adapter_0",
      "condition_type": "clip", "pretrained_model_name_or_path": "openai/clip-vit-large-patch14",
      "condition_max_length": 77, "condition_dim": 768, "cross_attention_dim": 768,
      "model_type": "clip", "padding": "zeros"}]

(``model_type`` = ``EncoderSpec.kind``, ``padding`` = its padding mode: extras the released loader ignores.)
The reader also accepts the object form
``{"text_encoder_list": [{"model_type": "<kind>", "text_encoder_path": "text_encoder_0",
"condition_adapter_path": "condition_adapter_0", "max_length": 77}, ...], "cross_attention_dim": 768}``
and adapter configs written as ``{"input_dim": d, "output_dim": 768}``. Without ``model_type`` the encoder
kind is read from the text encoder's ``config.json`` (its architecture).

A plain SD-1.5 diffusers layout (``unet/``, ``vae/``, ``text_encoder/`` CLIP, ``tokenizer/``,
``scheduler/``) is a starting point for fine-tuning: :func:`ldm_from_sd15`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_auffusion.diffusion.pipeline import (
    DTYPES,
    AuffusionPipeline,
    DtypeName,
    as_pipeline,
    frontend_kwargs,
    frontend_settings,
)
from lightning_auffusion.diffusion.schedulers import DEFAULT_SCHEDULER, make_scheduler
from lightning_auffusion.errors import MissingInputError, UserInputError
from lightning_auffusion.safe_load import load_weights

log = logging.getLogger(__name__)

CONDITION_CONFIG = "condition_config.json"
ADAPTER_WEIGHTS = "condition_adapter.pt"
EXTRAS_FILE = "lightning_auffusion.json"


# ---------------------------------------------------------------------------------------- locating a layout
def resolve_layout(path_or_hub_id: str | os.PathLike) -> Path:
    """A local directory of the layout: ``path_or_hub_id`` itself, or the hub snapshot of that repo id."""
    local = Path(os.path.expanduser(str(path_or_hub_id)))
    if local.is_dir():
        return local
    text = str(path_or_hub_id)
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise MissingInputError(
            f"{text!r} is neither a local directory nor a hub id (owner/name) of an Auffusion layout"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text))
    except Exception as err:  # offline, unknown repo, no access
        raise MissingInputError(
            f"could not fetch {text!r} from the Hugging Face hub ({type(err).__name__}: {err}); "
            "go online once or download the repository and pass its local directory"
        ) from None


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise MissingInputError(
            f"{path} not found (expected in an Auffusion layout; see lightning_auffusion.diffusion.interop)"
        )
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def infer_encoder_kind(text_encoder_dir: Path) -> str:
    """The ``EncoderSpec`` kind of a saved transformers text model, from its config's architecture."""
    config = _read_json(text_encoder_dir / "config.json")
    names = " ".join(config.get("architectures") or []).lower() + " " + str(config.get("model_type", "")).lower()
    if "clip" in names:
        return "clip"
    if "clap" in names:
        return "clap"
    if "t5" in names:
        return "t5"
    return "auto"


def read_condition_config(root: str | os.PathLike) -> list[dict[str, Any]]:
    """The encoders of a layout as normalised entries: kind, name, text encoder / adapter folders, max_length, padding."""
    root = Path(root)
    raw = _read_json(root / CONDITION_CONFIG)
    items = raw.get("text_encoder_list") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise UserInputError(
            f"{root / CONDITION_CONFIG}: expected a non-empty list of encoders (or {{'text_encoder_list': [...]}})"
        )
    entries = []
    for i, item in enumerate(items):
        encoder_dir = item.get("text_encoder_name") or item.get("text_encoder_path") or f"text_encoder_{i}"
        adapter_dir = (
            item.get("condition_adapter_name") or item.get("condition_adapter_path") or f"condition_adapter_{i}"
        )
        kind = item.get("model_type") or infer_encoder_kind(root / encoder_dir)
        entries.append(
            {
                "kind": kind,
                "name": str(item.get("name") or item.get("condition_type") or kind),
                "text_encoder": encoder_dir,
                "condition_adapter": adapter_dir,
                "max_length": int(item.get("condition_max_length") or item.get("max_length") or 77),
                "padding": item.get("padding", "zeros"),
                "token_position_channels": int(item.get("token_position_channels", 0)),
            }
        )
    names = [e["name"] for e in entries]
    for e in entries:  # names must be unique within a conditioner
        if names.count(e["name"]) > 1:
            e["name"] = f"{e['name']}_{e['text_encoder'].rsplit('_', 1)[-1]}"
    return entries


def encoder_specs(root: str | os.PathLike, dropout: float = 0.1) -> list[dict[str, Any]]:
    """``EncoderSpec`` field dicts loading each encoder (and its tokenizer) from the layout's folders."""
    root = Path(root)
    return [
        {
            "name": e["name"],
            "kind": e["kind"],
            "pretrained": str(root / e["text_encoder"]),
            "max_length": e["max_length"],
            "dropout": dropout,
            "padding": e["padding"],
            "token_position_channels": e["token_position_channels"],
        }
        for e in read_condition_config(root)
    ]


# ---------------------------------------------------------------------------------------- adapters
def adapter_state(adapter: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights under the released names (``proj.*`` Linear, ``norm.*`` LayerNorm)."""
    linear = [m for m in adapter.modules() if isinstance(m, nn.Linear)]
    norm = [m for m in adapter.modules() if isinstance(m, nn.LayerNorm)]
    if len(linear) != 1 or len(norm) != 1:
        raise TypeError(f"a condition adapter must hold one Linear and one LayerNorm, got {type(adapter).__name__}")
    state = {f"proj.{k}": v for k, v in linear[0].state_dict().items()}
    state.update({f"norm.{k}": v for k, v in norm[0].state_dict().items()})
    return {k: v.detach().float().cpu().clone() for k, v in state.items()}


def load_adapter(adapter: nn.Module, folder: str | os.PathLike) -> nn.Module:
    """Load ``condition_adapter.pt`` of ``folder`` into ``adapter`` (strict, shapes checked against config.json)."""
    folder = Path(folder)
    config = _read_json(folder / "config.json")
    in_dim = config.get("condition_dim", config.get("input_dim"))
    out_dim = config.get("cross_attention_dim", config.get("output_dim"))
    linear = next(m for m in adapter.modules() if isinstance(m, nn.Linear))
    if (in_dim, out_dim) != (linear.in_features, linear.out_features):
        raise UserInputError(
            f"{folder}: adapter maps {in_dim} -> {out_dim} but the model's adapter maps "
            f"{linear.in_features} -> {linear.out_features}; the text encoder or the U-Net's cross_attention_dim differ"
        )
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise MissingInputError(f"{weights} not found (the adapter's weights belong there)")
    state = load_weights(weights, "condition adapter weights")
    norm = next(m for m in adapter.modules() if isinstance(m, nn.LayerNorm))
    for prefix, module in (("proj.", linear), ("norm.", norm)):
        part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        module.load_state_dict(part, strict=True)
    unexpected = [k for k in state if not k.startswith(("proj.", "norm."))]
    if unexpected:
        raise UserInputError(f"{weights}: unexpected keys {unexpected} (expected proj.* and norm.*)")
    return adapter


# ---------------------------------------------------------------------------------------- front end
def _frontend_kwargs(root: Path, vocoder: nn.Module | None) -> dict[str, Any]:
    """AuffusionFrontend kwargs: this project's extras file, else the vocoder's mel settings, else defaults."""
    if (root / EXTRAS_FILE).is_file():
        return frontend_kwargs(_read_json(root / EXTRAS_FILE).get("frontend", {}))
    if vocoder is not None and hasattr(getattr(vocoder, "config", None), "mel_config"):
        return {"mel": vocoder.config.mel_config()}
    return {}


# ---------------------------------------------------------------------------------------- loading
def _load_vocoder_folder(folder: Path) -> nn.Module | None:
    if not (folder / "vocoder.pt").is_file():
        log.warning("%s has no vocoder.pt: sampling falls back to Griffin-Lim", folder)
        return None
    from lightning_auffusion.vocoder.checkpoint import load_vocoder

    vocoder = load_vocoder(str(folder))
    vocoder.requires_grad_(False)
    return vocoder.eval()


def load_released(
    path_or_hub_id: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    vocoder: str | None = None,
) -> AuffusionPipeline:
    """An ``AuffusionPipeline`` from a released-layout directory or hub id (e.g. ``auffusion/auffusion-full``).

    ``vocoder`` overrides the layout's ``vocoder/`` with another vocoder source (``load_vocoder`` path).
    """
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel

    from lightning_auffusion.audio import AuffusionFrontend
    from lightning_auffusion.diffusion.conditioning import TextConditioner

    root = resolve_layout(path_or_hub_id)
    for part in ("unet", "vae", "scheduler"):
        if not (root / part).is_dir():
            raise MissingInputError(f"{root} is not an Auffusion layout: no {part}/ folder")
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(root, subfolder="vae")
    scheduler = PNDMScheduler.from_pretrained(root, subfolder="scheduler")
    conditioner = TextConditioner(
        encoder_specs(root, dropout=0.0), cross_attention_dim=int(unet.config.cross_attention_dim)
    )
    for adapter, entry in zip(conditioner.adapters, read_condition_config(root)):
        load_adapter(adapter, root / entry["condition_adapter"])
    if vocoder is not None:
        from lightning_auffusion.vocoder.checkpoint import load_vocoder

        voc = load_vocoder(vocoder).eval().requires_grad_(False)
    else:
        voc = _load_vocoder_folder(root / "vocoder")
    frontend = AuffusionFrontend(**_frontend_kwargs(root, voc))
    if voc is not None and hasattr(getattr(voc, "config", None), "check_compatible"):
        voc.config.check_compatible(frontend.mel_config, f"the front end of {root}")
    extras = _read_json(root / EXTRAS_FILE) if (root / EXTRAS_FILE).is_file() else {}
    pipeline = AuffusionPipeline(
        unet=unet,
        vae=vae,
        conditioner=conditioner,
        frontend=frontend,
        vocoder=voc,
        train_scheduler_config=dict(scheduler.config),
        sampling=extras.get("sampling", {}),
        frame_position_channels=int(extras.get("frame_position_channels", 0)),
    ).freeze()
    if isinstance(dtype, str):
        dtype = DTYPES[dtype]
    return pipeline.to(device, dtype)


def ldm_from_released(path: str | os.PathLike, **module_kwargs: Any):
    """An ``AuffusionLDM`` starting from a released layout (U-Net, VAE, encoders, adapters, vocoder, front end).

    ``module_kwargs`` override any ``AuffusionLDM`` argument (e.g. ``learning_rate``, ``use_ema``).
    """
    from lightning_auffusion.diffusion.module import AuffusionLDM

    root = resolve_layout(path)
    dropout = module_kwargs.pop("encoder_dropout", 0.1)
    options: dict[str, Any] = {
        "unet": str(root),
        "vae": str(root),
        "encoders": encoder_specs(root, dropout=dropout),
        "noise_scheduler": str(root),
    }
    if (root / "vocoder" / "vocoder.pt").is_file():
        options["vocoder"] = str(root / "vocoder")
    front = _frontend_kwargs(root, None)
    if not front and "vocoder" in options:
        from lightning_auffusion.vocoder.config import GeneratorConfig

        front = {"mel": GeneratorConfig.from_json(root / "vocoder" / "config.json").mel_config()}
    options.update(front)
    if (root / EXTRAS_FILE).is_file():
        extras = _read_json(root / EXTRAS_FILE)
        options["sampling"] = extras.get("sampling") or None
        options["frame_position_channels"] = int(extras.get("frame_position_channels", 0))
    options.update(module_kwargs)
    module = AuffusionLDM(**options)
    if "encoders" not in module_kwargs:
        for adapter, entry in zip(module.conditioner.adapters, read_condition_config(root)):
            load_adapter(adapter, root / entry["condition_adapter"])
    return module


def ldm_from_sd15(path: str | os.PathLike, identity_adapter: bool = False, **module_kwargs: Any):
    """An ``AuffusionLDM`` starting from a plain SD-1.5 diffusers layout (its CLIP text encoder and tokenizer).

    The condition adapter is new (random, as in Auffusion); ``identity_adapter`` starts its Linear as the
    identity when the encoder width equals the U-Net's cross-attention width.
    """
    from lightning_auffusion.diffusion.module import AuffusionLDM

    root = resolve_layout(path)
    for part in ("unet", "vae", "text_encoder", "tokenizer"):
        if not (root / part).is_dir():
            raise MissingInputError(f"{root} is not a Stable Diffusion layout: no {part}/ folder")
    dropout = module_kwargs.pop("encoder_dropout", 0.1)
    options: dict[str, Any] = {
        "unet": str(root),
        "vae": str(root),
        "encoders": [
            {
                "name": "clip",
                "kind": "clip",
                "pretrained": str(root),
                "subfolder": "text_encoder",
                "tokenizer": str(root),
                "tokenizer_subfolder": "tokenizer",
                "dropout": dropout,
            }
        ],
    }
    if (root / "scheduler").is_dir():
        options["noise_scheduler"] = str(root)
    options.update(module_kwargs)
    module = AuffusionLDM(**options)
    if identity_adapter:
        proj = module.conditioner.adapters[0].proj
        if proj.in_features != proj.out_features:
            raise UserInputError(
                f"identity_adapter needs equal widths, the adapter maps {proj.in_features} -> {proj.out_features}"
            )
        with torch.no_grad():
            proj.weight.copy_(torch.eye(proj.in_features))
            proj.bias.zero_()
    return module


# ---------------------------------------------------------------------------------------- export
def _save_model(model: nn.Module, folder: Path, dtype: torch.dtype | None) -> None:
    if getattr(model, "peft_config", None):  # a LoRA run: the released layout holds the merged U-Net
        from lightning_auffusion.diffusion.lora import merged_copy

        model = merged_copy(model)
    if dtype is not None and next(model.parameters()).dtype != dtype:
        model = copy.deepcopy(model).to(dtype)
    model.save_pretrained(folder)


def export_released(
    module_or_pipeline,
    out_dir: str | os.PathLike,
    use_ema: bool = True,
    dtype: str | torch.dtype | None = None,
    feature_extractor: bool = True,
) -> Path:
    """Write a trained ``AuffusionLDM`` (EMA weights by default) or a pipeline in the released layout."""
    with as_pipeline(module_or_pipeline, use_ema) as pipeline:
        return _export_pipeline(pipeline, out_dir, dtype, feature_extractor)


def _export_pipeline(pipeline: AuffusionPipeline, out_dir, dtype, feature_extractor: bool) -> Path:
    if isinstance(dtype, str):
        dtype = DTYPES[dtype]
    out = Path(out_dir)
    if any(spec.trainable for spec in pipeline.conditioner.specs):
        raise ValueError(
            "the released layout holds Hugging Face text encoders; a 'scratch' encoder has no such "
            "form: sample from the checkpoint (generate --checkpoint) instead"
        )
    out.mkdir(parents=True, exist_ok=True)
    _save_model(pipeline.unet, out / "unet", dtype)
    _save_model(pipeline.vae, out / "vae", dtype)
    vae_config_path = out / "vae" / "config.json"
    vae_config = _read_json(vae_config_path)
    vae_config["scaling_factor"] = pipeline.vae_scaling_factor  # the scale the U-Net was trained with
    vae_config_path.write_text(json.dumps(vae_config, indent=2))
    make_scheduler(DEFAULT_SCHEDULER, pipeline.train_scheduler_config).save_pretrained(out / "scheduler")

    conditioner = pipeline.conditioner
    entries = []
    for i, (spec, encoder, tokenizer, adapter) in enumerate(
        zip(conditioner.specs, conditioner.encoders, conditioner.tokenizers, conditioner.adapters)
    ):
        encoder_dir, adapter_dir = out / f"text_encoder_{i}", out / f"condition_adapter_{i}"
        _save_model(encoder, encoder_dir, dtype)
        tokenizer.save_pretrained(encoder_dir)
        adapter_dir.mkdir(parents=True, exist_ok=True)
        condition_dim = int(adapter.proj.in_features)  # the encoder's width plus its token-position channels
        (adapter_dir / "config.json").write_text(
            json.dumps(
                {
                    "condition_dim": condition_dim,
                    "cross_attention_dim": conditioner.cross_attention_dim,
                    "model_name": spec.name,
                },
                indent=2,
            )
        )
        torch.save(adapter_state(adapter), adapter_dir / ADAPTER_WEIGHTS)
        entries.append(
            {
                "text_encoder_name": encoder_dir.name,
                "condition_adapter_name": adapter_dir.name,
                "condition_type": spec.name,
                "pretrained_model_name_or_path": spec.pretrained,
                "condition_max_length": spec.max_length,
                "condition_dim": condition_dim,
                "cross_attention_dim": conditioner.cross_attention_dim,
                "model_type": spec.kind,
                "padding": spec.padding,
            }
        )
        if spec.token_position_channels:  # only then: a plain entry stays as the released files have it
            entries[-1]["token_position_channels"] = spec.token_position_channels
    (out / CONDITION_CONFIG).write_text(json.dumps(entries, indent=4))
    if any(spec.token_position_channels for spec in conditioner.specs):
        log.warning(
            "%s: encoders with token_position_channels; the released Auffusion code does not append them (its adapters "
            "would refuse the width): load this layout with lightning_auffusion",
            out,
        )

    if pipeline.vocoder is not None:
        from lightning_auffusion.vocoder.checkpoint import save_auffusion_vocoder

        save_auffusion_vocoder(pipeline.vocoder, out / "vocoder")
    else:
        log.warning("no vocoder attached: %s has no vocoder/ (the released loader needs one; pass --vocoder)", out)
    if feature_extractor:
        from transformers import CLIPImageProcessor

        CLIPImageProcessor().save_pretrained(out / "feature_extractor")
    extras = {
        "frontend": frontend_settings(pipeline.frontend),
        "sampling": pipeline.sampling,
        "frame_position_channels": pipeline.frame_position_channels,
    }
    (out / EXTRAS_FILE).write_text(json.dumps(extras, indent=2, default=str))
    log.info("exported the model to %s", out)
    return out


def export(
    checkpoint: str,
    output_dir: str = "outputs/export",
    use_ema: bool = True,
    dtype: DtypeName = "float32",
    vocoder: str | None = None,
) -> str:
    """Export an ``AuffusionLDM`` Lightning checkpoint to the released Auffusion layout.

    Args:
        checkpoint: the ``.ckpt`` written by ``fit`` with an ``conf/ldm/*.yaml`` config.
        output_dir: folder to write (unet/, vae/, scheduler/, vocoder/, text_encoder_i/, condition_adapter_i/, ...).
        use_ema: export the EMA weights of the U-Net when the run kept an EMA (as released).
        dtype: weights precision of the saved models: float32, float16 or bfloat16.
        vocoder: a vocoder to ship (``load_vocoder`` source) when the run had none or to replace it.
    """
    from lightning_auffusion.diffusion.module import load_ldm_checkpoint

    if dtype not in DTYPES:
        raise UserInputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    module = load_ldm_checkpoint(checkpoint, vocoder=vocoder)
    return str(export_released(module, output_dir, use_ema=use_ema, dtype=dtype))
