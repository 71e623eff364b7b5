"""File names built from input text (prompt ids, captions, sample keys) stay inside their output folder."""

from __future__ import annotations

import re
from pathlib import Path

MAX_NAME_CHARS = 180  # leaves room for suffixes within the usual 255-byte limit
_UNSAFE = re.compile(r"[^\w.\-]+")  # path separators, spaces, control and shell characters


def safe_filename(name: str, fallback: str = "clip") -> str:
    """``name`` as one plain file name: anything but letters, digits, ``.``, ``-`` and ``_`` becomes ``_``,
    leading dots are dropped (no ``..``, no hidden files), and an empty result becomes ``fallback``.

    Names that are already plain (``00012``, ``Y-abc_123``, ``x-y``) are returned unchanged.
    """
    cleaned = _UNSAFE.sub("_", str(name)).lstrip(".")[:MAX_NAME_CHARS]
    return cleaned or fallback


def file_in(folder: str | Path, name: str, suffix: str = "") -> Path:
    """``folder / (safe_filename(name) + suffix)``, checked to lie directly inside ``folder``."""
    folder = Path(folder)
    path = folder / f"{safe_filename(name)}{suffix}"
    if path.resolve().parent != folder.resolve():
        raise ValueError(f"file name {name!r} would leave the output folder {folder}")  # unreachable by construction
    return path
