"""How the command line is parsed: the settings shared by the project commands and LightningCLI.

Cheap to import (no Lightning, no torch): ``python -m lightning_auffusion --help`` reads only this and
``cli``. :func:`help_formatter` is the jsonargparse help formatter every parser uses: it prints the
docstrings' Args text without reST markup (````x````, ```x```, ``:class:`~a.B```` -> ``x``, ``B``) and shows
the choices of ``Literal`` options, also when they are optional (``--scheduler {pndm,ddim,...}``).
"""

from __future__ import annotations

import functools
import re
import typing

PROG = "python -m lightning_auffusion"
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# allow_abbrev=False: a mistyped option (--trainer.max_step) is an error, never a prefix match
STRICT_PARSER = {"allow_abbrev": False}
# on the command line, parse errors are raised (not printed with the usage) so main() prints them as one line
RAISING_PARSER = {**STRICT_PARSER, "exit_on_error": False}

_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([^`.]+)`")  # :class:`~pkg.mod.Name` -> Name
_LITERAL = re.compile(r"`{1,2}([^`]+)`{1,2}")  # ``x`` or `x` -> x


def plain_text(text: str) -> str:
    """``text`` without reST roles and inline-literal backticks."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def literal_choices(typehint: object) -> tuple[list[str], bool] | None:
    """The ``Literal`` values a type hint allows (also inside ``Optional``/``Union``) and whether any other
    string is accepted too; None when it holds no ``Literal``."""
    if typing.get_origin(typehint) is typing.Literal:
        return [str(v) for v in typing.get_args(typehint)], False
    choices: list[str] = []
    open_ended = False
    for arg in typing.get_args(typehint) if typing.get_origin(typehint) in (typing.Union, _union_type()) else ():
        inner = literal_choices(arg)
        if inner is not None:
            choices += inner[0]
            open_ended |= inner[1]
        elif arg is str:
            open_ended = True
    return (choices, open_ended) if choices else None


def _union_type():
    import types

    return getattr(types, "UnionType", typing.Union)


@functools.cache
def help_formatter() -> type:
    """The jsonargparse ``formatter_class`` of every parser (built on first use: it imports jsonargparse)."""
    from jsonargparse import DefaultHelpFormatter

    class PlainHelpFormatter(DefaultHelpFormatter):
        def _get_help_string(self, action) -> str:
            return plain_text(super()._get_help_string(action))

        def _format_text(self, text: str) -> str:
            return super()._format_text(plain_text(text))

        def _metavar_formatter(self, action, default_metavar):
            found = literal_choices(getattr(action, "_typehint", None))
            if action.metavar is None and action.choices is None and found is not None:
                choices, open_ended = found
                shown = "{" + ",".join(choices + (["..."] if open_ended else [])) + "}"
                return lambda size: (shown,) * size
            return super()._metavar_formatter(action, default_metavar)

    return PlainHelpFormatter


def parser_options(raise_errors: bool, prog: str) -> dict:
    """The keyword arguments of a command's parser (``prog``: its usage line's command)."""
    return {**(RAISING_PARSER if raise_errors else STRICT_PARSER), "prog": prog, "formatter_class": help_formatter()}
