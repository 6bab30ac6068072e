"""Progress reporting: the library calls a callback, only the CLI draws bars.

A run reports ``Progress`` events per task (``"predict"``, a method name, ...): once when the
task starts (``done=0``) and after each step. ``None`` as callback reports nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from motion_relevance.errors import InvalidInputError


@dataclass(frozen=True)
class Progress:
    """Where one task of a run stands."""

    task: str
    """What is being counted, e.g. ``"predict"`` or a method name."""
    done: int
    """Steps finished."""
    total: int | None
    """Steps in all, when known."""
    unit: str = "window"


ProgressCallback = Callable[[Progress], None]


def check_callback(callback: object, name: str = "progress") -> ProgressCallback | None:
    """``callback`` when it is None or callable; a one-line error otherwise (``progress=True``
    draws nothing in the library: only the CLI draws bars)."""
    if callback is not None and not callable(callback):
        raise InvalidInputError(
            f"{name} must be None or a function taking a Progress event, got {type(callback).__name__}"
        )
    return callback  # type: ignore[return-value]


def report(callback: ProgressCallback | None, task: str, done: int, total: int | None, unit: str = "window") -> None:
    """Call ``callback`` (when there is one) with a ``Progress`` event."""
    if callback is not None:
        callback(Progress(task, done, total, unit))


__all__ = ["Progress", "ProgressCallback", "check_callback", "report"]
