"""Whether a shard folder's earlier output can be resumed, or must be rebuilt, from its ``index.json``.

``shard`` (audio shards) and ``encode`` (latent shards) both resume a folder whose index was written with the same
plan (``shard``: the manifest and settings digest; ``encode``: the audio shards', VAE's and encoders'
fingerprints). Made with another plan, the folder is refused unless ``overwrite`` is set, and then its stale
files are deleted before anything new is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lightning_auffusion.errors import UserInputError


def resumable_index(
    index_path: Path,
    field: str,
    expected: Any,
    overwrite: bool,
    made_otherwise: str,
    stale: Callable[[], Iterable[Path]],
) -> dict[str, Any] | None:
    """The earlier index when its ``field`` equals ``expected`` (its finished shards can be kept); None when there
    is none, or when it was made otherwise and, with ``overwrite``, the files ``stale()`` names were deleted.
    Without ``overwrite`` such a folder is refused: "<folder> holds <made_otherwise>; pass --overwrite true ..."."""
    if not index_path.is_file():
        return None
    old = json.loads(index_path.read_text(encoding="utf-8"))
    if old.get(field) == expected:
        return old
    if not overwrite:
        raise UserInputError(
            f"{index_path.parent} holds {made_otherwise}; pass --overwrite true to rebuild them, or choose another --name"
        )
    for path in list(stale()):
        path.unlink(missing_ok=True)
    return None
