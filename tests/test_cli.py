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


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightning_auffusion", *argv], capture_output=True, text=True)


def test_top_level_help_imports_neither_lightning_nor_torch():
    code = (
        "import sys; from lightning_auffusion.cli import main; main(['--help']); "
        "print('LOADED', sorted(m for m in ('lightning', 'torch', 'diffusers', 'transformers', 'jsonargparse') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "LOADED []"
    assert "usage: python -m lightning_auffusion <command>" in out


def test_command_help_names_the_command_in_its_usage_line():
    result = _run("synth", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m lightning_auffusion synth ")
    assert "__main__" not in result.stdout and "--progress {true,false}" in result.stdout


def test_fit_alone_points_at_config():
    result = _run("fit")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--config" in result.stderr


def test_model_help_by_class_name_documents_every_argument(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.help", "AuffusionLDM"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m lightning_auffusion ")
    assert "`" not in out  # no reST markup
    assert "--model.attention {sdpa,xformers,math}" in out
    import inspect

    from lightning_auffusion.diffusion.module import AuffusionLDM

    # every argument has help text of its own (an undocumented one starts its help with "(type:")
    for name in inspect.signature(AuffusionLDM.__init__).parameters:
        if name != "self":
            assert f"--model.{name} " in out, name
    lines = out.splitlines()
    undocumented = [
        lines[i]
        for i in range(1, len(lines))
        if lines[i].strip().startswith("(type:") and lines[i - 1].strip().startswith("--model.")
    ]
    inline = [line for line in lines if line.strip().startswith("--model.") and "  (type:" in line]
    assert not undocumented and not inline, undocumented + inline


def test_plain_text_and_literal_choices():
    from typing import Literal

    from lightning_auffusion.parsing import literal_choices, plain_text

    assert plain_text("see ``x`` and :class:`~a.b.Name` or `fit`") == "see x and Name or fit"
    assert literal_choices(Literal["a", "b"] | None) == (["a", "b"], False)
    assert literal_choices(Literal["auto", "cpu"] | str) == (["auto", "cpu"], True)
    assert literal_choices(int) is None


def test_evaluate_takes_the_shared_model_and_sampling_options(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--checkpoint",
        "--pretrained",
        "--dtype {float32,bfloat16,float16}",
        "--negative_prompt",
        "--scheduler {pndm,ddim,dpmsolver++,euler}",
        "--device {auto,cpu,cuda,...}",
        "--attention_localisation",
        "--allow_random_weights",
        "--reference",
        "--prompts",
        "--output ",
        "--progress",
    ):
        assert flag in out, flag
    assert "(default auto)" in " ".join(out.split())


def test_progress_bars_are_quiet_off_a_terminal_or_when_switched_off(capsys):
    from lightning_auffusion.progress import interactive, progress_bar

    bar = progress_bar(range(3), enabled=True, desc="x")  # stderr is captured: not a terminal
    assert list(bar) == [0, 1, 2] and bar.disable
    assert progress_bar(range(2), enabled=False).disable and not interactive(False)
