"""The exceptions :mod:`wss` raises for what a user can fix: one base class, one subclass per kind.

The library never ends the process.  The stages and ``predict`` (the "doors", :func:`stages.run`)
turn a :class:`WssError` into one line on stderr and a non-zero exit code; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class WssError(Exception):
    """Base class: a problem in the user's params, data or machine, with a message that says what to do."""


class ConfigError(WssError):
    """A ``params.yaml`` value is missing, unknown, of the wrong type or out of range; the message names it."""

    def __init__(self, message: str):
        super().__init__(f"params.yaml: {message}")


class DataError(WssError):
    """A dataset, an annotation file or an image is missing, unreadable or unusable; the message names the file."""


class StageInputError(WssError):
    """A stage's input (an earlier stage's output) is missing or holds nothing this stage can use."""


class SetupError(WssError):
    """The machine lacks what the params ask for: a GPU, a device count, a reachable Dask scheduler."""
