"""The single entry point: ``python -m lightning_auffusion <command> ...``.

Lightning commands (``fit``, ``validate``, ``test``, ``predict``) go to ``LightningCLI`` and take
``--config conf/<x>.yaml``; the model and data module are chosen by ``class_path`` in the config.
Project commands (``synth``, ``shard``, ``stats``, ``generate``, ...) are typed functions parsed by
jsonargparse, so each also accepts ``--config``, ``--print_config`` and rejects unknown keys by name.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from lightning_auffusion.errors import UserInputError
from lightning_auffusion.parsing import LIGHTNING_COMMANDS, PROG, parser_options

# command name -> (module, function, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": (
        "lightning_auffusion.synth.command",
        "synth",
        "write synthetic captioned sounds with verifiable captions",
    ),
    "shard": (
        "lightning_auffusion.data.shards",
        "shard",
        "turn an audio folder + caption manifest into WebDataset shards",
    ),
    "stats": ("lightning_auffusion.data.stats", "stats", "dataset log-mel mean/std for the 'meanstd' image mode"),
    "encode": (
        "lightning_auffusion.diffusion.encode",
        "encode",
        "audio shards -> latent shards (VAE posteriors, captions, text outputs)",
    ),
    "export-vocoder": ("lightning_auffusion.vocoder.export", "export_vocoder", "export a trained vocoder checkpoint"),
    "vocode": ("lightning_auffusion.vocoder.export", "vocode", "resynthesise audio files through a vocoder"),
    "export-vae": (
        "lightning_auffusion.diffusion.vae_module",
        "export_vae",
        "export a SpectrogramVAE checkpoint to a diffusers AutoencoderKL folder",
    ),
    "export-clap": (
        "lightning_auffusion.clap.module",
        "export_clap",
        "export a ClapPretraining checkpoint to a transformers ClapModel folder (for kind clap_audio)",
    ),
    "generate": (
        "lightning_auffusion.diffusion.generate",
        "generate",
        "text -> audio with a trained or released model",
    ),
    "export": ("lightning_auffusion.diffusion.interop", "export", "export an LDM run to the released Auffusion layout"),
    "export-lora": (
        "lightning_auffusion.diffusion.lora_export",
        "export_lora_command",
        "export an LDM run's LoRA adapter in diffusers' format",
    ),
    "evaluate": (
        "lightning_auffusion.evaluation.command",
        "evaluate",
        "FD/FAD/KL/IS/CLAP/alignment of generated audio",
    ),
    "style-transfer": (
        "lightning_auffusion.attention.commands",
        "style_transfer",
        "SDEdit an audio file towards a prompt",
    ),
    "inpaint": ("lightning_auffusion.attention.commands", "inpaint", "regenerate a time span of an audio file"),
    "word-swap": ("lightning_auffusion.attention.commands", "word_swap", "prompt-to-prompt word replacement"),
    "reweight": ("lightning_auffusion.attention.commands", "reweight", "scale the attention of chosen prompt words"),
    "sweep": (
        "lightning_auffusion.sweeps.command",
        "sweep",
        "run a sweep file (W&B sweep YAML) locally or under W&B's agent",
    ),
    "dashboard": (
        "lightning_auffusion.sweeps.dashboard",
        "dashboard",
        "compare runs: static HTML page + Markdown summary",
    ),
}


def __getattr__(name: str):
    """``AuffusionCLI`` loads Lightning, so it is imported from ``lightning_cli`` on first use."""
    if name == "AuffusionCLI":
        from lightning_auffusion.lightning_cli import AuffusionCLI

        return AuffusionCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _usage() -> str:
    lines = [f"usage: {PROG} <command> [--config FILE] [options]", "", "Lightning commands:"]
    lines += [f"  {name:<15} {name} with LightningCLI (--config conf/<x>.yaml)" for name in LIGHTNING_COMMANDS]
    lines += ["", "Project commands:"]
    lines += [f"  {name:<15} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    lines += ["", f"'{PROG} <command> --help' lists a command's options."]
    return "\n".join(lines)


# third-party warnings that say nothing about the user's run (filtered by the CLI only, never in tests)
KNOWN_HARMLESS_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"`torch\.utils\._pytree\._register_pytree_node` is deprecated", FutureWarning),  # diffusers/transformers
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),  # Lightning's data fetcher
    (r"`LeafSpec` is deprecated", FutureWarning),
    # ours, and deliberate: the training stream's length is exact per rank (WorkerShare stops each worker
    # after its share), so Lightning's caution about IterableDataset lengths does not apply
    (r"Your `IterableDataset` has `__len__` defined", UserWarning),
    # the GAN modules (manual optimisation) checkpoint the state after step N, which is what they resume from
    (r"Using ModelCheckpoint with manual optimization and every_n_train_steps", UserWarning),
)
WANDB_ANONYMOUS_NOTICE = "The anonymous setting has no effect and will be removed in a future version."


def quiet_known_warnings() -> None:
    """Silence the known-harmless third-party warnings listed in ``KNOWN_HARMLESS_WARNINGS``.

    Lightning's WandbLogger always passes ``anonymous`` to wandb, which then prints a notice through its
    own terminal writer (not the warnings module); it is marked as already shown.
    """
    for message, category in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    try:
        from wandb.errors import term

        term._printed_messages.add(f"{term.WARN_STRING} {WANDB_ANONYMOUS_NOTICE}")
    except (ImportError, AttributeError):  # wandb absent, or its internals moved: the notice shows, harmlessly
        pass


def run_subcommand(name: str, argv: list[str], raise_parse_errors: bool = False):
    """Parse ``argv`` for project command ``name`` with jsonargparse and run it."""
    from jsonargparse import auto_cli

    module_name, func_name, _ = SUBCOMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    return auto_cli(func, args=argv, as_positional=False, **parser_options(raise_parse_errors, f"{PROG} {name}"))


def run_lightning(argv: list[str], raise_parse_errors: bool = False):
    """Run Lightning command ``argv[0]`` with ``AuffusionCLI`` (Lightning is imported here, not before).

    A parse error of a run given no ``--config`` (``fit`` alone) says that the config is what is missing."""
    from lightning_auffusion.lightning_cli import AuffusionCLI

    # LightningCLI reads sys.argv itself (and warns when also given them as args)
    kwargs = {} if argv == sys.argv[1:] else {"args": argv}
    try:
        return AuffusionCLI(raise_parse_errors=raise_parse_errors, **kwargs)
    except argparse.ArgumentError as err:
        if any(a == "--config" or a.startswith("--config=") for a in argv):
            raise
        raise UserInputError(
            f"{' '.join(str(err).split())}: give the run's config, {PROG} {argv[0]} --config conf/<model>/<x>.yaml"
        ) from err


TOP_HELP = ("-h", "--help", "help")
DEBUG_FLAG = "--debug"
DEBUG_ENV = "LIGHTNING_AUFFUSION_DEBUG"
# errors that mean "the input is wrong" (exit 2) rather than "the run failed" (exit 1)
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserInputError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    argparse.ArgumentError,
)


def user_error_in(err: BaseException) -> BaseException | None:
    """The user error that caused ``err``, if any (jsonargparse wraps errors raised while instantiating)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, USER_ERRORS):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None


def _debug_requested(argv: list[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def error_line(err: BaseException) -> str:
    """One line for ``err``: its message with line breaks folded, without the traceback."""
    message = str(err)
    if "Original Traceback" in message:  # re-raised from a DataLoader worker: keep the original's last line
        message = [line for line in message.splitlines() if line.strip()][-1].split(": ", 1)[-1]
    text = " ".join(message.split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    if isinstance(err, argparse.ArgumentError):
        return f"{text} (--help lists the options)"
    if isinstance(err, (UserInputError, FileNotFoundError)):
        return text
    return f"{type(err).__name__}: {text}"


def main(argv: list[str] | None = None):
    """Run a command. From the command line (``argv`` None): errors end as one line on stderr with exit
    status 2 (bad input) or 1 (a failure), the traceback only with ``--debug`` or ``LIGHTNING_AUFFUSION_DEBUG=1``.
    Called from Python with ``argv``, errors are raised as they are."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    logging.basicConfig(
        level=os.environ.get("LIGHTNING_AUFFUSION_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s"
    )
    if not from_command_line:
        return _dispatch(argv, from_command_line=False)
    if not argv or argv[0] in TOP_HELP:  # the command list: nothing to run, nothing (wandb) to import
        return _dispatch(argv, from_command_line=True)
    quiet_known_warnings()
    try:
        return _dispatch(argv, from_command_line=not debug)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as err:
        if debug:
            raise
        cause = user_error_in(err)
        hint = "" if cause is not None else f" (run again with {DEBUG_FLAG} or {DEBUG_ENV}=1 for the traceback)"
        print(f"error: {error_line(cause or err)}{hint}", file=sys.stderr)
        raise SystemExit(1 if cause is None else 2) from None


def _dispatch(argv: list[str], from_command_line: bool):
    if not argv or argv[0] in TOP_HELP:
        print(_usage())
        return None
    if argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:], raise_parse_errors=from_command_line)
    if argv[0] in LIGHTNING_COMMANDS:
        return run_lightning(argv, raise_parse_errors=from_command_line)
    print(f"unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
    raise SystemExit(2)
