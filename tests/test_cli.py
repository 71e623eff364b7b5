import subprocess
import sys

import pytest

from lightning_auffusion.cli import SUBCOMMANDS, main


def _boring_config(tmp_path, extra_trainer=""):
    path = tmp_path / "boring.yaml"
    path.write_text(
        "model:\n  class_path: lightning.pytorch.demos.boring_classes.BoringModel\n"
        "data:\n  class_path: lightning.pytorch.demos.boring_classes.BoringDataModule\n"
        f"trainer:\n  max_steps: 2\n  logger: false\n  enable_checkpointing: false\n  default_root_dir: {tmp_path}\n"
        "  enable_progress_bar: false\n  limit_val_batches: 1\n" + extra_trainer
    )
    return path


def test_fit_runs_through_lightning_cli(tmp_path):
    cli = main(["fit", "--config", str(_boring_config(tmp_path))])
    assert cli.trainer.global_step == 2


def test_mistyped_config_key_is_named(tmp_path, capsys):
    config = _boring_config(tmp_path, "  max_stepz: 3\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config)])
    assert "max_stepz" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for name in ("fit", "predict", *SUBCOMMANDS):
        assert name in out


def test_unknown_command_fails():
    result = subprocess.run([sys.executable, "-m", "lightning_auffusion", "fitt"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown command 'fitt'" in result.stderr


def test_every_registered_subcommand_resolves():
    import importlib

    missing = []
    for name, (module, func, _) in SUBCOMMANDS.items():
        try:
            getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as err:
            missing.append(f"{name}: {err}")
    assert not missing, missing
