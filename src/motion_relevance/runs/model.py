"""The model of a run: from a preset name, a ``"module:function"`` builder, a builder function
or a built ``(module, InputSpec)``, and the device it runs on.

``ModelSource`` is picklable (except for a built model), so engines can rebuild the model
where a unit runs (once per process or Ray actor).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motion_relevance.checks import optional_positive_int
from motion_relevance.errors import (
    InvalidInputError,
    MotionRelevanceError,
    UnknownNameError,
    WeightsError,
)
from motion_relevance.models.spec import InputSpec

ModelBuilder = Callable[..., "tuple[nn.Module, InputSpec]"]
Model = str | ModelBuilder | tuple[nn.Module, InputSpec] | nn.Module


def one_line(exc: BaseException) -> str:
    """A one-line message for an error (library errors are one line already)."""
    if isinstance(exc, MotionRelevanceError):
        return str(exc)
    text = " ".join(str(exc).split()) or "no message"
    line = f"{type(exc).__name__}: {text}"
    return line if len(line) <= 300 else line[:297] + "..."


def _import_builder(path: str) -> ModelBuilder:
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownNameError(
            f"cannot import {module_name!r} for model {path!r} ({exc}); put its folder on PYTHONPATH"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UnknownNameError(f"module {module_name!r} has no {attr!r} for model {path!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InvalidInputError(f"model {path!r} is not callable; give a function returning (module, InputSpec)")
    return obj


def _checked(built: object, what: str) -> tuple[nn.Module, InputSpec]:
    if (
        not isinstance(built, tuple)
        or len(built) != 2
        or not isinstance(built[0], nn.Module)
        or not isinstance(built[1], InputSpec)
    ):
        raise InvalidInputError(f"{what} must give (torch.nn.Module, InputSpec), got {type(built).__name__}")
    return built


@dataclass(frozen=True)
class ModelSource:
    """How to build the model wherever a run needs it: a preset, a builder, or a built model.

    ``name`` is a preset (``mr.list_models()``) or ``"package.module:function"``, a function
    returning ``(nn.Module, InputSpec)`` that is called with ``weights=``/``num_classes=`` when
    those are given. ``builder`` (a top-level function, pickled by reference for Ray) and
    ``built`` (a ready ``(module, spec)``, this process only) stand in for the name.
    """

    name: str
    weights: str | None = None
    num_classes: int | None = None
    builder: ModelBuilder | None = field(default=None, compare=False, repr=False)
    built: tuple[nn.Module, InputSpec] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        model: Model,
        *,
        spec: InputSpec | None = None,
        weights: str | Path | None = None,
        num_classes: int | None = None,
    ) -> ModelSource:
        """The recipe for ``model``: a preset name, ``"module:function"``, a builder function, a
        built ``(module, spec)``, or an ``nn.Module`` with its ``spec`` (or ``module.input_spec``).
        Checks what can be checked before anything is built."""
        num_classes = optional_positive_int("num_classes", num_classes)
        w = None if weights is None else str(weights)
        if w is not None and w != "random" and not Path(w).expanduser().is_file():
            raise WeightsError(f"weights file {w} does not exist; give the path of a checkpoint, or 'random'")
        if isinstance(model, nn.Module):
            spec = spec if spec is not None else getattr(model, "input_spec", None)
            if not isinstance(spec, InputSpec):
                raise InvalidInputError("give a model preset name, or an nn.Module together with its InputSpec")
            model = (model, spec)
        if isinstance(model, str):
            if ":" not in model:
                from motion_relevance.models.registry import preset_names

                names = preset_names()
                if model not in names:
                    raise UnknownNameError(
                        f"unknown model {model!r}; known models: {', '.join(names)} "
                        "(or give 'package.module:function' returning (module, InputSpec))"
                    )
            return cls(model, w, num_classes)
        if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], nn.Module):
            if weights is not None or num_classes is not None:
                raise InvalidInputError("weights and num_classes apply to a preset or builder, not a built model")
            return cls(type(model[0]).__name__, built=_checked(model, "the model"))
        if callable(model):
            name = f"{getattr(model, '__module__', '?')}:{getattr(model, '__qualname__', repr(model))}"
            return cls(name, w, num_classes, builder=model)
        raise InvalidInputError(
            "model must be a preset name, 'module:function', a builder function or (module, InputSpec), "
            f"got {type(model).__name__}"
        )

    @property
    def picklable(self) -> bool:
        """False for a built model (it cannot be rebuilt in another process)."""
        return self.built is None

    def load(self) -> tuple[nn.Module, InputSpec]:
        """Build the model (eval mode) and its InputSpec."""
        if self.built is not None:
            return self.built
        kwargs: dict[str, Any] = {}
        if self.weights is not None:
            kwargs["weights"] = self.weights
        if self.num_classes is not None:
            kwargs["num_classes"] = self.num_classes
        if self.builder is None and ":" not in self.name:
            from motion_relevance.models import load_model

            return load_model(self.name, **kwargs)
        builder = self.builder or _import_builder(self.name)
        try:
            built = builder(**kwargs)
        except MotionRelevanceError:
            raise
        except Exception as exc:
            raise InvalidInputError(f"model builder {self.name!r} failed: {one_line(exc)}") from exc
        module, spec = _checked(built, f"model builder {self.name!r}")
        return module.eval(), spec

    def describe(self) -> dict[str, Any]:
        """What identifies the model in a run's records (``run.json``, ``summary.json``)."""
        return {"name": self.name, "weights": self.weights, "num_classes": self.num_classes}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on: ``None`` is CUDA when available, else the CPU. Asking for CUDA
    where torch sees no GPU is a one-line error, not a crash halfway through."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidInputError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InvalidInputError(
                f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)"
            )
    return resolved


def module_device(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters live (the CPU for a module without parameters)."""
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


__all__ = ["Model", "ModelBuilder", "ModelSource", "module_device", "one_line", "resolve_device"]
