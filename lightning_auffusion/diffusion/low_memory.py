"""Optimisers of the low-memory presets (``conf/ldm/presets/``) that need an optional package.

``AdamW8bit`` is bitsandbytes' 8-bit AdamW (optimiser states in 8 bits: about 2 bytes per parameter instead
of 8) behind a class that jsonargparse can name in a config (``optimizer: class_path:
lightning_auffusion.diffusion.low_memory.AdamW8bit``) and that imports bitsandbytes only when built, with a
one-line error when it is missing (``pip install 'lightning-auffusion[low-memory]'``). Adafactor needs no
wrapper: ``transformers.optimization.Adafactor`` is named directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def require_bitsandbytes() -> Any:
    try:
        import bitsandbytes
    except ImportError:
        raise ImportError(
            "the 8-bit AdamW needs bitsandbytes, which is not installed: pip install 'lightning-auffusion[low-memory]' "
            "(or pip install bitsandbytes), or use the Adafactor preset conf/ldm/presets/low_memory.yaml"
        ) from None
    return bitsandbytes


class AdamW8bit(torch.optim.Optimizer):
    """bitsandbytes' ``AdamW8bit`` (the instance built is bitsandbytes' own class).

    Args:
        params: the parameters to optimise.
        lr: learning rate (3e-5 as released).
        betas: Adam's moment decays.
        eps: Adam's epsilon.
        weight_decay: decoupled weight decay (0.01 as released).
    """

    def __new__(
        cls,
        params: Iterable[torch.nn.Parameter],
        lr: float = 3e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> torch.optim.Optimizer:
        bnb = require_bitsandbytes()
        return bnb.optim.AdamW8bit(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 3e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:  # never runs: __new__ returns bitsandbytes' optimiser
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
