"""``AuffusionCLI``: LightningCLI for ``fit``/``validate``/``test``/``predict``, imported only when one runs."""

from __future__ import annotations

import importlib
import sys

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_auffusion.parsing import LIGHTNING_COMMANDS, PROG, help_formatter, parser_options

# the project's LightningModules and DataModules by class name -> module. jsonargparse finds a class given by
# its bare name (``--model.help AuffusionLDM``, ``class_path: AuffusionLDM``) among the imported subclasses,
# and the package imports its modules lazily, so the module of a bare name seen in the arguments is imported
PROJECT_CLASSES: dict[str, str] = {
    "AuffusionLDM": "lightning_auffusion.diffusion.module",
    "SpectrogramVAE": "lightning_auffusion.diffusion.vae_module",
    "VocoderModule": "lightning_auffusion.vocoder.module",
    "AudioShardDataModule": "lightning_auffusion.data.datamodule",
    "LatentShardDataModule": "lightning_auffusion.data.latents",
    "PromptDataModule": "lightning_auffusion.data.prompts",
}


def import_named_classes(args: list[str]) -> None:
    """Import the modules of the project classes named by bare name in ``args`` (``X`` or ``--opt=X``)."""
    for arg in args:
        name = arg.split("=", 1)[-1]
        if name in PROJECT_CLASSES:
            importlib.import_module(PROJECT_CLASSES[name])


class AuffusionArgumentParser(LightningArgumentParser):
    """Every parser LightningCLI or jsonargparse makes (``--model.help``'s too) has the project's usage line
    and help formatter unless told otherwise."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("prog", PROG)
        kwargs.setdefault("formatter_class", help_formatter())
        super().__init__(*args, **kwargs)


class AuffusionCLI(LightningCLI):
    """LightningCLI with the project's defaults: any LightningModule / DataModule chosen by class_path.

    Configs are read in jsonargparse's ``omegaconf+`` mode: ``${...}`` interpolations resolve after every
    ``--config`` file and command-line value has been merged, so an override file (or ``--trainer...``
    argument) that changes a run's name also moves every folder interpolated from it. Interpolation paths
    are written from the config's root (``${trainer.default_root_dir}``), whatever the subcommand.
    """

    def __init__(self, raise_parse_errors: bool = False, **kwargs) -> None:
        from jsonargparse import set_parsing_settings

        set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
        args = kwargs.get("args")
        import_named_classes(sys.argv[1:] if args is None else [str(a) for a in args])
        top = parser_options(raise_parse_errors, PROG)
        commands = {c: parser_options(raise_parse_errors, f"{PROG} {c}") for c in LIGHTNING_COMMANDS}
        kwargs.setdefault("parser_class", AuffusionArgumentParser)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"parser_mode": "omegaconf+", **top, **commands})
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            **kwargs,
        )
