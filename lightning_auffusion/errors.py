"""The project's error types.

:class:`UserInputError` marks a problem with what the user gave (a missing file, an empty prompt list, a
mistyped key, an unsafe checkpoint): the CLI prints its message as one line and exits with status 2.
Anything else that escapes a command is a failure of the run (status 1).
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input: the message names the input and says how to fix it."""


class MissingInputError(UserInputError, FileNotFoundError):
    """A file or folder the user named does not exist (also a ``FileNotFoundError`` for callers that catch it)."""


class UnsafeCheckpointError(UserInputError):
    """A weights file that can only be read by unpickling arbitrary objects; it is refused, never executed."""
