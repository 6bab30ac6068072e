"""Checkers of user-given settings, shared by every stage: one rule, one message per kind.

Each checker takes the setting's name (as the user wrote it) and its value, and returns the
value in canonical form or raises ``InvalidInputError`` with a one-line message.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, TypeVar

from motion_relevance.errors import InvalidInputError

T = TypeVar("T")


def positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int`` >= 1 (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def optional_positive_int(name: str, value: Any) -> int | None:
    """``None`` or a positive integer (see ``positive_int``)."""
    return None if value is None else positive_int(name, value)


def finite_float(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def positive_float(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` > 0 (e.g. a timeout in seconds)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def non_negative_int(name: str, value: Any) -> int:
    """``value`` as an ``int`` >= 0 (e.g. context frames, a seed)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InvalidInputError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def non_negative_float(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` >= 0 (e.g. the selective threshold sigma)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def one_of(name: str, value: T, choices: Sequence[T]) -> T:
    """``value`` when it is one of ``choices``."""
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


__all__ = ["finite_float", "non_negative_float", "non_negative_int", "one_of", "optional_positive_int", "positive_float", "positive_int"]
