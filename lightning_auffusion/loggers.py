"""Experiment loggers with the project's defaults.

:class:`WandbLogger` is Lightning's, except that ``offline`` is decided from the environment when a config
leaves it out: a user who has told W&B how to run (``WANDB_MODE``) or who to run as (``WANDB_API_KEY``)
gets exactly that, and anyone else gets an offline run under ``save_dir`` (sync it later with
``wandb sync <save_dir>/wandb/offline-run-*``) instead of a login prompt in the middle of a training run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

log = logging.getLogger(__name__)

OFFLINE_MODES = ("offline", "dryrun")


def wandb_offline_default(environ: Mapping[str, str] | None = None) -> bool:
    """Offline unless ``WANDB_MODE`` or ``WANDB_API_KEY`` is set; a set mode decides by itself."""
    environ = os.environ if environ is None else environ
    mode = environ.get("WANDB_MODE", "").strip().lower()
    if mode:
        return mode in OFFLINE_MODES
    return not environ.get("WANDB_API_KEY", "").strip()


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger``; ``offline: null`` (the default) means :func:`wandb_offline_default`.

    Args:
        offline: True/False as in Lightning; None decides from ``WANDB_MODE`` / ``WANDB_API_KEY``.
        **kwargs: Lightning ``WandbLogger`` arguments (``project``, ``name``, ``save_dir``, ...).
    """

    def __init__(self, *args, offline: bool | None = None, **kwargs) -> None:
        if offline is None:
            offline = wandb_offline_default()
            log.info("W&B run %s (decided from WANDB_MODE / WANDB_API_KEY)", "offline" if offline else "online")
        super().__init__(*args, offline=offline, **kwargs)
