"""Config values that arrive either as a dataclass or as a dict of its fields.

jsonargparse builds the dataclass from a config file, but a module restored from a checkpoint gets the
plain dicts of its saved hyper-parameters, and Python callers may pass either: :func:`as_dataclass` turns
both into the dataclass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def as_dataclass(value: T | Mapping[str, Any] | None, cls: type[T]) -> T | None:
    """``value`` as a ``cls``: an instance as it is, a mapping of its fields (``cls.from_dict`` when the
    class has one), None as None; anything else is a TypeError naming the class."""
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.from_dict(dict(value)) if hasattr(cls, "from_dict") else cls(**value)
    raise TypeError(f"expected {cls.__name__} or a dict of its fields, got {type(value).__name__}")
