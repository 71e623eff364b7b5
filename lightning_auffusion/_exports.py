"""How every package ``__init__`` of lightning_auffusion exports its public names.

Each package lists ``name -> submodule`` and gets its ``__getattr__``, ``__dir__`` and ``__all__`` from
:func:`lazy_exports`: a name is imported from its submodule on first use, so importing a package costs
nothing (the CLI's ``--help``, shard-writing worker processes) whatever its submodules pull in (Lightning,
diffusers, transformers). A name must not equal a submodule's name (``audio.resample``): once that
submodule is imported, Python binds the package attribute to the module itself; such names are imported
from the submodule (``from lightning_auffusion.audio.resample import resample``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` whose public ``name`` lives in ``package.<exports[name]>``."""
    exports = dict(exports)

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__, sorted(exports)
