"""Data: caption manifests, WebDataset shards (``shard``), dataset statistics (``stats``) and the
streaming ``AudioShardDataModule``.

The ``stats`` command is ``lightning_auffusion.data.stats.stats`` (the submodule owns that name).
Names are imported lazily so that shard-writing worker processes do not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AudioShardDataModule": "datamodule",
    "PromptDataModule": "prompts",
    "collect_prompts": "prompts",
    "ClipEntry": "manifest",
    "Manifest": "manifest",
    "ManifestConfig": "manifest",
    "normalize_caption": "manifest",
    "read_manifest": "manifest",
    "collate_clips": "pipeline",
    "expand_shards": "pipeline",
    "iterate_shard_samples": "pipeline",
    "shard_counts": "pipeline",
    "shard": "shards",
    "compute_stats": "stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
