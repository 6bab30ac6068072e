"""The records every model preset is declared with, next to its architecture.

A ``Preset`` is a name, the untrained architecture (a function of the class count) and one
``Weights`` record: where its pretrained weights come from, the sha256 that pins them, their
licence and classes, and the ``InputSpec`` that feeds the model they were trained for (in the
spirit of torchvision's weights enums). ``registry.load_model`` turns any preset into a module
the same way: random weights, the preset's own weights, or a user's checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from motion_relevance.models.spec import InputSpec, labels_from_lines

#: The weights sources: fetched once into the cache, shipped in the package, or a user's file.
SOURCES: tuple[str, ...] = ("cache", "package", "user")


@cache
def package_labels(name: str) -> tuple[str, ...]:
    """Class names shipped with the package (``models/labels/<name>.txt``)."""
    text = resources.files("motion_relevance.models").joinpath("labels", f"{name}.txt").read_text("utf-8")
    return labels_from_lines(text.splitlines())


@dataclass(frozen=True)
class Weights:
    """One source of a preset's pretrained weights."""

    spec: InputSpec
    """How to feed the model (size, length, value scaling, CAM layer); ``input_spec`` adds the
    labels."""
    num_classes: int
    """Classes of the classifier these weights were trained with."""
    labels: str | tuple[str, ...] | None
    """The class names in the classifier's order: the name of a list ``models/labels/<name>.txt``,
    the names themselves, or None (unnamed)."""
    licence: str
    source: str
    """"cache": ``motion-relevance weights fetch NAME`` converts them once into the cache;
    "package": shipped inside motion_relevance; "user": never bundled nor downloaded, the user
    passes the file (``weights=PATH``)."""
    location: str
    """Where the file comes from: the pip distribution, the package resource, or the URL."""
    sha256: str | None = None
    """sha256 of the file that is loaded, checked on every load (None for "user")."""
    hint: str = ""
    """How to get the weights when they are not available here."""

    def input_spec(self, num_classes: int | None = None) -> InputSpec:
        """The InputSpec, with the label names when the classifier has these weights' classes."""
        if self.labels is None or num_classes not in (None, self.num_classes):
            return replace(self.spec, labels=None)
        names = package_labels(self.labels) if isinstance(self.labels, str) else self.labels
        return replace(self.spec, labels=names)


@dataclass(frozen=True)
class Preset:
    """A model preset: a name, the architecture and its weights (see the module docstring)."""

    name: str
    description: str
    architecture: Callable[[int], nn.Module]
    """The untrained module with that many classes (never downloads)."""
    weights: Weights
    head: str
    """State-dict key of the classifier's weight: its first dimension is the class count."""
    read_file: Callable[[Path], dict[str, torch.Tensor]] | None = None
    """Reads a user's checkpoint into this architecture's state dict (other key layouts, the
    original checkpoint format); None: ``weights.read_checkpoint``."""
    new_head: Callable[[nn.Module, int], nn.Module] | None = None
    """Puts a fresh classifier with that many classes on the pretrained body (fine-tuning);
    None: ``num_classes`` must match the pretrained weights."""
    pretrained: Callable[[], dict[str, torch.Tensor]] | None = None
    """Loads the verified state dict of a "package" source."""
    available: Callable[[], bool] | None = None
    """Whether a "package" source's file is installed (checked cheaply, without hashing)."""


__all__ = ["SOURCES", "Preset", "Weights", "package_labels"]
