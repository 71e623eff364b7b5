"""The single entry point: ``python -m lightning_auffusion <command> ...``.

Lightning commands (``fit``, ``validate``, ``test``, ``predict``) go to ``LightningCLI`` and take
``--config conf/<x>.yaml``; the model and data module are chosen by ``class_path`` in the config.
Project commands (``synth``, ``shard``, ``stats``, ``generate``, ...) are typed functions parsed by
jsonargparse, so each also accepts ``--config``, ``--print_config`` and rejects unknown keys by name.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

# command name -> (module, function, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("lightning_auffusion.synth.command", "synth", "write synthetic captioned sounds with verifiable captions"),
    "shard": ("lightning_auffusion.data.shards", "shard", "turn an audio folder + caption manifest into WebDataset shards"),
    "stats": ("lightning_auffusion.data.stats", "stats", "dataset log-mel mean/std for the 'meanstd' image mode"),
    "export-vocoder": ("lightning_auffusion.vocoder.export", "export_vocoder", "export a trained vocoder checkpoint"),
    "vocode": ("lightning_auffusion.vocoder.export", "vocode", "resynthesise audio files through a vocoder"),
    "export-vae": ("lightning_auffusion.diffusion.vae_module", "export_vae", "export a SpectrogramVAE checkpoint to a diffusers AutoencoderKL folder"),
    "generate": ("lightning_auffusion.diffusion.generate", "generate", "text -> audio with a trained or released model"),
    "export": ("lightning_auffusion.diffusion.interop", "export", "export an LDM run to the released Auffusion layout"),
    "evaluate": ("lightning_auffusion.evaluation.command", "evaluate", "FD/FAD/KL/IS/CLAP/alignment of generated audio"),
    "style-transfer": ("lightning_auffusion.attention.commands", "style_transfer", "SDEdit an audio file towards a prompt"),
    "inpaint": ("lightning_auffusion.attention.commands", "inpaint", "regenerate a time span of an audio file"),
    "word-swap": ("lightning_auffusion.attention.commands", "word_swap", "prompt-to-prompt word replacement"),
    "reweight": ("lightning_auffusion.attention.commands", "reweight", "scale the attention of chosen prompt words"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


class AuffusionCLI(LightningCLI):
    """LightningCLI with the project's defaults: any LightningModule / DataModule chosen by class_path."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"parser_mode": "omegaconf"})
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            **kwargs,
        )


def _usage() -> str:
    lines = ["usage: python -m lightning_auffusion <command> [--config FILE] [options]", "", "Lightning commands:"]
    lines += [f"  {name:<15} {name} with LightningCLI (--config conf/<x>.yaml)" for name in LIGHTNING_COMMANDS]
    lines += ["", "Project commands:"]
    lines += [f"  {name:<15} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    lines += ["", "'python -m lightning_auffusion <command> --help' lists a command's options."]
    return "\n".join(lines)


def run_subcommand(name: str, argv: list[str]):
    """Parse ``argv`` for project command ``name`` with jsonargparse and run it."""
    from jsonargparse import auto_cli

    module_name, func_name, _ = SUBCOMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    return auto_cli(func, args=argv, as_positional=False)


def main(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=os.environ.get("LIGHTNING_AUFFUSION_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return None
    if argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    if argv[0] in LIGHTNING_COMMANDS:
        return AuffusionCLI(args=argv)
    print(f"unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
    raise SystemExit(2)
