import pytest

from lightning_auffusion.loggers import WandbLogger, wandb_offline_default


@pytest.mark.parametrize(
    ("environ", "offline"),
    [
        ({}, True),  # nothing set: offline, no login prompt
        ({"WANDB_API_KEY": "k" * 40}, False),
        ({"WANDB_API_KEY": "  "}, True),
        ({"WANDB_MODE": "online"}, False),
        ({"WANDB_MODE": "offline", "WANDB_API_KEY": "k" * 40}, True),  # a set mode wins
        ({"WANDB_MODE": "dryrun"}, True),
        ({"WANDB_MODE": "disabled"}, False),  # W&B itself then logs nothing
    ],
)
def test_offline_default_follows_the_environment(environ, offline):
    assert wandb_offline_default(environ) is offline


@pytest.mark.parametrize(("mode", "offline"), [(None, True), ("online", False)])
def test_logger_offline_unset_is_decided_from_the_environment(mode, offline, monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    if mode is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", mode)
    logger = WandbLogger(project="p", name="n", save_dir=str(tmp_path))  # no run starts before first use
    assert logger._offline is offline


def test_logger_explicit_offline_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert WandbLogger(project="p", save_dir=str(tmp_path), offline=True)._offline is True
