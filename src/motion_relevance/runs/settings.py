"""Settings of a run, checked once with the shared checkers (``motion_relevance.checks``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from motion_relevance.checks import non_negative_float, one_of, optional_positive_int
from motion_relevance.errors import InvalidInputError
from motion_relevance.selective import DERIVATIVES, PADDINGS


@dataclass(frozen=True)
class SelectiveSettings:
    """How the selective step splits each explanation: threshold ``sigma`` (in std of the
    temporal derivative), edge rule ``padding`` and ``derivative`` (see ``selective_relevance``)."""

    sigma: float = 1.0
    padding: str = "replicate"
    derivative: str = "abs"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", non_negative_float("sigma", self.sigma))
        one_of("padding", self.padding, PADDINGS)
        one_of("derivative", self.derivative, DERIVATIVES)

    def describe(self) -> dict[str, Any]:
        """The settings as plain values (records and fingerprints)."""
        return {"sigma": self.sigma, "padding": self.padding, "derivative": self.derivative}


def check_stride(stride: Any, frames: int) -> int | None:
    """Frames between window starts: ``None`` (back to back) or 1 ... the clip length."""
    stride = optional_positive_int("stride", stride)
    if stride is not None and stride > frames:
        raise InvalidInputError(f"stride must be between 1 and the clip length {frames}, got {stride!r}")
    return stride


__all__ = ["SelectiveSettings", "check_stride"]
