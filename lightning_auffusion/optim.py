"""Optimiser helpers shared by the GAN modules (``VocoderModule``, ``SpectrogramVAE``).

Both train with manual optimisation and one rule for ``trainer.global_step``: it counts batches, i.e. the
generator's (autoencoder's) optimiser steps; the discriminator's steps go through
:func:`step_without_counting`. So ``max_steps``, ``val_check_interval`` and ``every_n_train_steps`` mean
the same number of batches whether or not a discriminator is training.
"""

from __future__ import annotations

from typing import Any


def _noop() -> None:
    return None


def step_without_counting(optimizer: Any) -> None:
    """``optimizer.step()`` through Lightning's strategy (precision plugin, grad scaler) without advancing
    the loop's optimizer-step progress, i.e. without incrementing ``trainer.global_step``."""
    hooks = (optimizer._on_before_step, optimizer._on_after_step)
    optimizer._on_before_step = optimizer._on_after_step = _noop
    try:
        optimizer.step()
    finally:
        optimizer._on_before_step, optimizer._on_after_step = hooks
