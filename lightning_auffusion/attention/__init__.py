"""Cross-attention capture, figures, prompt-to-prompt control and audio manipulations.

Importing the package is cheap: the names below load their module on first use.

* ``AttentionRecorder`` (capture): record cross-attention probabilities of chosen U-Net layers.
* ``generate_with_attention_maps`` (recording): figures beside generated audio (``predict`` runs:
  ``lightning_auffusion.callbacks.attention_maps.AttentionMapWriter``).
* ``attention_figure`` (figures): the spectrogram with per-token heat maps.
* ``style_transfer``, ``inpaint``, ``word_swap``, ``reweight`` (manipulations): the paper's appendix E.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AttentionRecorder": "lightning_auffusion.attention.capture",
    "TokenAttention": "lightning_auffusion.attention.capture",
    "token_attention": "lightning_auffusion.attention.capture",
    "attention_figure": "lightning_auffusion.attention.figures",
    "generate_with_attention_maps": "lightning_auffusion.attention.recording",
    "generate_recording_attention": "lightning_auffusion.attention.recording",
    "ManipulationOutput": "lightning_auffusion.attention.manipulations",
    "style_transfer": "lightning_auffusion.attention.manipulations",
    "inpaint": "lightning_auffusion.attention.manipulations",
    "word_swap": "lightning_auffusion.attention.manipulations",
    "reweight": "lightning_auffusion.attention.manipulations",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
