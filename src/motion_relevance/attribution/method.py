"""What a method is: its function, its typed options and the checkers of their values.

The method modules (``gradient``, ``cam``, ``lrp``) declare their ``Method`` records here and
``registry`` collects them; this module imports nothing from the package but errors and the
``InputSpec`` type, so the method modules never import the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from motion_relevance import checks
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec

if TYPE_CHECKING:
    from motion_relevance.attribution.run import Attribution, Run

MethodFn = Callable[["Run", torch.Tensor, dict[str, Any]], "Attribution"]


@dataclass(frozen=True)
class MethodInfo:
    """What ``list_methods`` reports about one method."""

    name: str
    description: str
    """One line."""
    options: dict[str, str]
    """Option name -> one-line help including the default."""


@dataclass(frozen=True)
class Option:
    """One keyword option of a method: default, help text and a checker that returns the value."""

    name: str
    default: Any
    help: str
    check: Callable[[str, Any], Any]
    """``(name, value) -> value`` raising ``InvalidInputError``; ``None`` defaults are not checked."""
    shown_default: str | None = None
    """How the default reads in ``list_methods`` when ``repr(default)`` is not helpful."""

    def line(self) -> str:
        shown = self.shown_default if self.shown_default is not None else repr(self.default)
        return f"{self.help} (default: {shown})"


@dataclass(frozen=True)
class Method:
    """One base explanation method: a function ``(run, clips, options) -> Attribution`` under a
    fixed name, with its options (declared by the method modules, collected by ``registry``)."""

    name: str
    description: str
    fn: MethodFn
    options: tuple[Option, ...] = ()
    multi_pass: bool = False
    """True for methods that evaluate the model many times per clip (IG, SmoothGrad, occlusion):
    they run clip by clip in internal batches of ``batch_size`` passes."""
    kind: str = "gradient"
    """"gradient", "perturbation", "cam" or "lrp" (documentation and benchmarks)."""
    finalize: Callable[[nn.Module, InputSpec | None, torch.Tensor, dict[str, Any]], dict[str, Any]] | None = None
    """Resolves model-dependent options once per call (e.g. the Grad-CAM layer's name)."""

    def info(self) -> MethodInfo:
        return MethodInfo(self.name, self.description, {o.name: o.line() for o in self.options})

    def resolve_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """Check ``given`` against this method's options and fill in defaults."""
        known = {o.name: o for o in self.options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            hint = f"its options are {', '.join(sorted(known))}" if known else "it takes no options"
            raise InvalidInputError(f"method {self.name!r} has no option {unknown[0]!r}; {hint}")
        resolved: dict[str, Any] = {}
        for option in self.options:
            value = given.get(option.name, option.default)
            if value is not None:
                value = option.check(option.name, value)
            resolved[option.name] = value
        return resolved


# ---------------------------------------------------------------------------------------------
# option checkers: (name, value) -> value
# ---------------------------------------------------------------------------------------------


def positive_int(name: str, value: Any) -> int:
    return checks.positive_int(f"option {name}", value)


def non_negative_float(name: str, value: Any) -> float:
    return checks.non_negative_float(f"option {name}", value)


def finite_float(name: str, value: Any) -> float:
    return checks.finite_float(f"option {name}", value)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"option {name} must be True or False, got {value!r}")
    return value


def triple(name: str, value: Any) -> tuple[int, int, int]:
    """An int or three ints (time, height, width), all >= 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value, value)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise InvalidInputError(f"option {name} must be a positive int or three positive ints (t, h, w), got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]))


def float_or_tensor(name: str, value: Any) -> float | torch.Tensor:
    """A number, a sequence of numbers (one per channel) or a tensor; numbers must be finite."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise InvalidInputError(f"option {name} must be a finite floating-point tensor")
        return value.detach()
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise InvalidInputError(f"option {name} must be a number or one number per channel, got {value!r}")
        return finite_tensor(name, torch.tensor([float(v) for v in value]))
    return finite_float(name, value)


def finite_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(value).all():
        raise InvalidInputError(f"option {name} must be finite")
    return value


def describe(value: Any) -> Any:
    """JSON-friendly form of an option value for ``Explanation.options`` (tensors by shape)."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return float(value.item())
        if value.ndim == 1 and value.numel() <= 8:
            return [float(v) for v in value.tolist()]
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, tuple):
        return list(value)
    return value
