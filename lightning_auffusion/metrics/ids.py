"""Clip ids (file stems) carried inside torchmetrics states, so they survive a DDP all-gather.

Each id is stored as its UTF-8 bytes, zero padded to ``ID_WIDTH``, as float32 values in a flat 1-D tensor
(float32 and 1-D because torchmetrics gathers an empty state of a rank with no data as an empty float
tensor of the metric's dtype; any other dtype or rank would not concatenate with the other ranks').
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

ID_WIDTH = 256


def encode_ids(ids: Sequence[str], device: torch.device | str | None = None) -> Tensor:
    """Flat float32 tensor of ``len(ids) * ID_WIDTH`` byte values."""
    out = torch.zeros(len(ids), ID_WIDTH, dtype=torch.float32)
    for row, clip_id in enumerate(ids):
        raw = str(clip_id).encode("utf-8")
        if not raw:
            raise ValueError("clip ids must be non-empty strings")
        if len(raw) >= ID_WIDTH or b"\x00" in raw:
            raise ValueError(f"clip id {clip_id!r} is longer than {ID_WIDTH - 1} bytes or contains NUL")
        out[row, : len(raw)] = torch.tensor(list(raw), dtype=torch.float32)
    return out.reshape(-1).to(device) if device is not None else out.reshape(-1)


def decode_ids(flat: Tensor) -> list[str]:
    """Inverse of ``encode_ids``."""
    if flat.numel() % ID_WIDTH:
        raise ValueError(f"id state of {flat.numel()} values is not a multiple of {ID_WIDTH}")
    rows = flat.detach().cpu().round().to(torch.uint8).reshape(-1, ID_WIDTH).numpy()
    return [bytes(row).rstrip(b"\x00").decode("utf-8") for row in rows]
