"""Reading weight files without executing them.

Every checkpoint or weights file a user hands over goes through :func:`load_weights`: ``torch.load`` with
``weights_only=True`` (tensors, containers and plain types, plus numpy arrays and scalars), or
``safetensors`` for ``.safetensors`` files. A file that needs more than that could run code when unpickled;
it is refused with one line naming it and saying how to convert it. Nothing is ever loaded with
``weights_only=False``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_auffusion.errors import MissingInputError, UnsafeCheckpointError, UserInputError

SAFETENSORS_SUFFIX = ".safetensors"


def _numpy_globals() -> list[Any]:
    """numpy's array/scalar reconstruction entry points: they rebuild data, they do not call user code."""
    core = getattr(np, "_core", None) or np.core
    multiarray = core.multiarray
    found = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    found += [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "uint8", "bool")]
    return found


def convert_hint(path: str | os.PathLike) -> str:
    return (
        f"if you trust its source, convert it once in a separate Python session: "
        f"torch.save(state_dict, 'converted.pt') of the tensors inside torch.load('{path}', weights_only=False), "
        f"or safetensors.torch.save_file(state_dict, 'converted.safetensors'), and pass the converted file"
    )


def load_weights(path: str | os.PathLike, what: str = "weights", map_location: Any = "cpu") -> Any:
    """Load ``path`` safely (``weights_only=True`` or safetensors); refuse files that need full unpickling."""
    path = Path(path)
    if path.is_dir():
        raise UserInputError(f"{what} {path} is a folder; give the weights file inside it")
    if not path.is_file():
        raise MissingInputError(f"{what} {path} not found")
    if path.suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        device = map_location if isinstance(map_location, str) else "cpu"
        return load_file(str(path), device=device)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"refused to load {what} {path}: it is not a plain tensors/state-dict file ({_reason(str(err))}) and "
            f"unpickling it could run code; {convert_hint(path)}"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise UserInputError(
            f"could not read {what} {path} ({_reason(str(err)) or type(err).__name__}); is it a torch checkpoint?"
        ) from None


_BOILERPLATE = (
    "Weights only load failed",
    "Please file an issue",
    "Check the documentation",
    "(1)",
    "(2)",
    "WeightsUnpickler error:",
)


def _reason(message: str) -> str:
    """The informative line of torch's (long) load error, e.g. 'unsupported GLOBAL posix.system ...'."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_BOILERPLATE)]
    return (useful or lines or [""])[0][:200]
