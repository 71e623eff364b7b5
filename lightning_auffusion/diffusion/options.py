"""The option groups the sampling commands share, defined once as dataclasses and offered flat on the CLI.

``generate``, ``style-transfer``, ``inpaint``, ``word-swap`` and ``reweight`` all take a model
(:class:`~lightning_auffusion.diffusion.loading.ModelSource`: checkpoint or released layout, EMA, vocoder,
device, dtype) and sampling settings (:class:`~lightning_auffusion.sampling.SamplingOptions`: scheduler,
steps, guidance, duration, seed, negative prompt). Each command declares ``**options: Unpack[<group>]``
with a group built here from those dataclasses, so jsonargparse shows every field as a flat option
(``--checkpoint``, ``--scheduler {pndm,ddim,...}``) with the dataclass's help text, and Python callers
pass the same keywords. :func:`split_options` turns the keywords back into the two dataclasses, which
apply the defaults and check the values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypedDict, get_type_hints

from lightning_auffusion.diffusion.loading import ModelSource
from lightning_auffusion.diffusion.sampling import SamplingOptions


def _attribute_docs(cls: type) -> dict[str, str]:
    from docstring_parser import parse

    return {param.arg_name: (param.description or "").replace("\n", " ") for param in parse(cls.__doc__ or "").params}


def option_group(name: str, *sources: type, exclude: tuple[str, ...] = ()) -> type:
    """A ``TypedDict`` (every key optional) of the fields of the dataclasses ``sources``, minus ``exclude``,
    documented with the dataclasses' ``Attributes:`` text, for a command's ``**options: Unpack[...]``."""
    annotations: dict[str, Any] = {}
    docs: list[str] = []
    for cls in sources:
        hints, described = get_type_hints(cls), _attribute_docs(cls)
        for field in dataclasses.fields(cls):
            if field.name in exclude:
                continue
            if field.name in annotations:
                raise ValueError(
                    f"option {field.name!r} is defined by more than one of {[c.__name__ for c in sources]}"
                )
            annotations[field.name] = hints[field.name]
            default = "" if field.default in (None, dataclasses.MISSING) else f" (default {field.default})"
            docs.append(f"    {field.name}: {described.get(field.name, '')}{default}")
    group = TypedDict(name, annotations, total=False)
    group.__doc__ = f"Options of {', '.join(c.__name__ for c in sources)}.\n\nAttributes:\n" + "\n".join(docs) + "\n"
    group.__module__ = __name__
    return group


def split_options(options: Mapping[str, Any]) -> tuple[ModelSource, SamplingOptions]:
    """The ``ModelSource`` and ``SamplingOptions`` of a command's keyword options (unknown keys: TypeError)."""
    groups = (ModelSource, SamplingOptions)
    names = [{f.name for f in dataclasses.fields(cls)} for cls in groups]
    unknown = set(options) - set().union(*names)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {sorted(set().union(*names))}")
    source, sampling = (cls(**{k: v for k, v in options.items() if k in keys}) for cls, keys in zip(groups, names))
    return source, sampling


# the model, and sampling without a duration: SDEdit commands keep the source clip's length
EditOptions = option_group("EditOptions", ModelSource, SamplingOptions, exclude=("duration_seconds",))
# the model and every sampling setting
GenerateOptions = option_group("GenerateOptions", ModelSource, SamplingOptions)
