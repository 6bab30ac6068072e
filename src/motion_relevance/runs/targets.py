"""Target and label resolution: which class a run explains, and its name."""

from __future__ import annotations

from typing import Any

import numpy as np

from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec

#: Spellings of "explain the model's top class".
AUTO_TARGETS: tuple[str, ...] = ("auto", "predicted")


def is_auto(target: Any) -> bool:
    """True for ``None``, ``"auto"`` and ``"predicted"`` (the top class)."""
    return target is None or (isinstance(target, str) and target.strip().lower() in AUTO_TARGETS)


def resolve_target(target: int | str | None, spec: InputSpec, num_classes: int, probabilities: np.ndarray) -> int:
    """``None``/``"auto"``: the top class of ``probabilities``; an int (or digits); otherwise a
    label name of ``spec``."""
    if is_auto(target):
        return int(np.argmax(probabilities))
    if isinstance(target, str) and target.strip().lstrip("-").isdigit():
        target = int(target.strip())
    if isinstance(target, bool) or not isinstance(target, (int, np.integer, str)):
        raise InvalidInputError(f"target must be 'auto', a class index or a label, got {target!r}")
    if isinstance(target, str):
        return spec.label_index(target)
    if not 0 <= int(target) < num_classes:
        raise InvalidInputError(
            f"target class {target} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
        )
    return int(target)


def check_target(target: int | str | None, spec: InputSpec) -> None:
    """Fail early on a target the model's labels or class count rule out."""
    if spec.num_classes is not None and not is_auto(target):
        resolve_target(target, spec, spec.num_classes, np.zeros(spec.num_classes))


def label_name(spec: InputSpec, index: int) -> str | None:
    """The label of class ``index``, or None when the spec has no (such) label."""
    labels = spec.labels
    return labels[index] if labels is not None and 0 <= index < len(labels) else None


__all__ = ["AUTO_TARGETS", "check_target", "is_auto", "label_name", "resolve_target"]
