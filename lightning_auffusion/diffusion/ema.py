"""Exponential moving average of the U-Net weights (diffusers' ``EMAModel``), as released.

The released Auffusion weights are an EMA with decay 0.9999 and warm-up power 2/3: at optimisation step
``n`` the decay is ``min(decay, 1 - (1 + n / inv_gamma) ** -power)``, so early averages follow the weights
closely and the horizon grows with training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EMAConfig:
    decay: float = 0.9999
    power: float = 2.0 / 3.0
    inv_gamma: float = 1.0
    warmup: bool = True  # use the power warm-up above (False: constant ``decay`` from the first step)
    update_after_step: int = 0
    min_decay: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_decay <= self.decay < 1.0:
            raise ValueError(
                f"EMA needs 0 <= min_decay <= decay < 1, got min_decay={self.min_decay}, decay={self.decay}"
            )
        if self.power <= 0 or self.inv_gamma <= 0:
            raise ValueError("EMA power and inv_gamma must be positive")


def make_ema(model: nn.Module, config: EMAConfig):
    """A diffusers ``EMAModel`` over ``model``'s parameters (shadow copies on the parameters' device)."""
    from diffusers.training_utils import EMAModel

    return EMAModel(
        model.parameters(),
        decay=config.decay,
        min_decay=config.min_decay,
        update_after_step=config.update_after_step,
        use_ema_warmup=config.warmup,
        inv_gamma=config.inv_gamma,
        power=config.power,
        model_cls=type(model),
        model_config=getattr(model, "config", None),
    )


def move_ema(ema, device: torch.device) -> None:
    """Put the shadow weights on ``device`` (a no-op when they already are)."""
    if ema.shadow_params and ema.shadow_params[0].device != torch.device(device):
        ema.to(device=device)


@contextlib.contextmanager
def swapped_in(ema, model: nn.Module) -> Iterator[None]:
    """Within the block ``model`` holds the EMA weights; its own weights come back afterwards."""
    if ema is None:
        yield
        return
    params = list(model.parameters())
    move_ema(ema, params[0].device)
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)
