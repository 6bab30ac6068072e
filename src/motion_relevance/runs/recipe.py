"""``Recipe``: everything besides the model and the video that a run's numbers depend on,
checked once, in one place, and written beside the results so a run can be reproduced from its
output (``describe`` / ``Recipe.from_description``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from motion_relevance.checks import non_negative_int
from motion_relevance.errors import InvalidInputError
from motion_relevance.runs.context import ExplainSettings
from motion_relevance.runs.methods import resolve_methods
from motion_relevance.runs.settings import SelectiveSettings

#: Random frame permutations per window for the motion reliance, unless a run says otherwise
#: (8: about 18 extra forward passes per window with the block, reversal and freeze effects).
DEFAULT_RELIANCE = 8


@dataclass(frozen=True)
class Recipe:
    """Methods with their options, the selective step's settings, ``explain``'s settings, the
    seed of random methods, and the frame permutations of the motion-reliance measurement
    (``mr.motion_reliance``; 0 leaves it out). Built from names and plain values; every field is
    validated here and nowhere else."""

    methods: tuple[str, ...] = ("saliency",)
    """Method names, canonical after checking (a comma-separated string is accepted too)."""
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Options per method name, passed to ``explain``."""
    selective: SelectiveSettings = field(default_factory=SelectiveSettings)
    explaining: ExplainSettings = field(default_factory=ExplainSettings)
    seed: int = 0
    reliance: int = DEFAULT_RELIANCE
    """Random frame permutations per window for the motion reliance (0: not measured)."""

    def __post_init__(self) -> None:
        names, options = resolve_methods(self.methods, self.options)
        object.__setattr__(self, "methods", names)
        object.__setattr__(self, "options", {m: dict(options.get(m, {})) for m in names})
        if not isinstance(self.selective, SelectiveSettings) or not isinstance(self.explaining, ExplainSettings):
            raise InvalidInputError("a recipe takes SelectiveSettings and ExplainSettings records")
        object.__setattr__(self, "seed", non_negative_int("seed", self.seed))
        object.__setattr__(self, "reliance", non_negative_int("reliance permutations", self.reliance))
        if self.reliance == 1:
            raise InvalidInputError("reliance permutations must be 0 (off) or at least 2, got 1")

    def describe(self) -> dict[str, Any]:
        """The recipe as plain values (``summary.json``, the batch store's ``run.json``)."""
        return {
            "methods": list(self.methods),
            "method_options": {m: dict(o) for m, o in self.options.items()},
            **self.selective.describe(),
            **self.explaining.describe(),
            "seed": self.seed,
            "reliance_permutations": self.reliance,
        }

    @classmethod
    def from_description(cls, values: Mapping[str, Any]) -> Recipe:
        """The recipe ``describe`` wrote (keys it does not know are refused)."""
        known = {"methods", "method_options", "sigma", "padding", "derivative", "ties", "context_frames",
                 "precision", "tf32", "seed", "reliance_permutations"}  # fmt: skip
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(f"unknown recipe setting {unknown[0]!r}")
        v = dict(values)
        return cls(
            methods=tuple(v.get("methods", ("saliency",))),
            options=v.get("method_options", {}),
            selective=SelectiveSettings(v.get("sigma", 1.0), v.get("padding", "replicate"), v.get("derivative", "abs")),
            explaining=ExplainSettings(
                v.get("ties", "first"), v.get("context_frames", 0), v.get("precision", "float32"), v.get("tf32", False)
            ),
            seed=v.get("seed", 0),
            reliance=v.get("reliance_permutations", DEFAULT_RELIANCE),
        )


__all__ = ["DEFAULT_RELIANCE", "Recipe"]
