"""Progress reporting: the library calls a callback, only the CLI draws bars.

A run reports ``Progress`` events per task (``"predict"``, a method name, ...): once when the
task starts (``done=0``) and after each step. ``None`` as callback reports nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


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


def report(callback: ProgressCallback | None, task: str, done: int, total: int | None, unit: str = "window") -> None:
    """Call ``callback`` (when there is one) with a ``Progress`` event."""
    if callback is not None:
        callback(Progress(task, done, total, unit))


__all__ = ["Progress", "ProgressCallback", "report"]
