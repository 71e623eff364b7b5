"""Progress bars of the commands: tqdm on stderr, quiet when stderr is not a terminal or with ``--progress false``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any):
    """A tqdm bar over ``iterable`` (or one updated by hand); ``enabled`` False, or stderr not being a
    terminal (logs, CI, a pipe), keeps it quiet (tqdm's ``disable=None``)."""
    from tqdm import tqdm

    return tqdm(iterable, disable=None if enabled else True, **kwargs)


def interactive(enabled: bool = True) -> bool:
    """Whether a bar would show: ``enabled`` and stderr is a terminal (for code that passes a flag on)."""
    import sys

    return enabled and sys.stderr.isatty()
