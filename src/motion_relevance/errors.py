"""One exception family for everything the user can get wrong.

Every message is one line that says what was wrong and what to do; the CLI prints it as
``error: <message>`` and exits with status 2.
"""

from __future__ import annotations


class MotionRelevanceError(Exception):
    """Base class of every error the library raises on purpose."""

    def __init__(self, message: str) -> None:
        # Keep messages to one line so the CLI output stays one line.
        super().__init__(" ".join(str(message).split()))


class InvalidInputError(MotionRelevanceError, ValueError):
    """A tensor, array or argument has the wrong shape, dtype, value or range."""


class UnknownNameError(MotionRelevanceError, KeyError):
    """A model, method, label or option name is not known."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(MotionRelevanceError):
    """Weights are missing, corrupt, unsafe or of the wrong architecture."""


class VideoError(MotionRelevanceError):
    """A video cannot be opened, decoded or written."""


class OutputError(MotionRelevanceError):
    """An output location cannot be written."""


class DependencyError(MotionRelevanceError, ImportError):
    """An optional dependency is not installed."""


__all__ = [
    "DependencyError",
    "InvalidInputError",
    "MotionRelevanceError",
    "OutputError",
    "UnknownNameError",
    "VideoError",
    "WeightsError",
]
