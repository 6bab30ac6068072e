"""One unit of a batch run: a video -> clips -> explanations -> selective relevance -> rows.

The unit of work is the **video**: it is decoded once, cut into the model's clips, and every
requested method explains every clip. A unit ends as rows for all its (method, clip) pairs;
a method that fails on it gives one error row for that method (the other methods still run)
and a video that cannot be read gives one error row per method. Either way the unit is
finished and is committed as a whole, so resuming never splits a video.

``ModelSource`` is the picklable recipe the engines use to build the model where it runs (once
per process or Ray actor); ``BatchSettings`` is everything else the rows depend on.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from motion_relevance.batch.manifest import VideoEntry
from motion_relevance.batch.store import ROW_SCHEMA
from motion_relevance.errors import (
    InvalidInputError,
    MotionRelevanceError,
    OutputError,
    UnknownNameError,
    VideoError,
)
from motion_relevance.models.spec import InputSpec
from motion_relevance.selective import DERIVATIVES, PADDINGS, selective_relevance

log = logging.getLogger(__name__)

#: How the explained class is chosen: the model's prediction, or the manifest's label.
TARGETS: tuple[str, ...] = ("predicted", "label")

ModelBuilder = Callable[..., "tuple[nn.Module, InputSpec]"]


# ---------------------------------------------------------------------------------------------
# the model recipe
# ---------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class ModelSource:
    """How to build the model wherever a unit runs: a preset, a builder, or a built model.

    ``name`` is a preset (``mr.list_models()``) or ``"package.module:function"``, a function
    returning ``(nn.Module, InputSpec)`` that is called with ``weights=``/``num_classes=`` when
    those are given. ``builder`` (a top-level function, pickled by reference for Ray) and
    ``built`` (a ready ``(module, spec)``, local engine only) stand in for the name.
    """

    name: str
    weights: str | None = None
    num_classes: int | None = None
    builder: ModelBuilder | None = field(default=None, compare=False, repr=False)
    built: tuple[nn.Module, InputSpec] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        model: str | ModelBuilder | tuple[nn.Module, InputSpec],
        *,
        weights: str | Path | None = None,
        num_classes: int | None = None,
    ) -> ModelSource:
        """The recipe for ``model`` as ``run_batch`` accepts it."""
        w = None if weights is None else str(weights)
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
            return cls(f"<{type(model[0]).__name__} instance>", built=_checked(model, "the model"))
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
        """What identifies the model in ``run.json``."""
        return {"name": self.name, "weights": self.weights, "num_classes": self.num_classes}


def _checked(built: object, what: str) -> tuple[nn.Module, InputSpec]:
    if (
        not isinstance(built, tuple)
        or len(built) != 2
        or not isinstance(built[0], nn.Module)
        or not isinstance(built[1], InputSpec)
    ):
        raise InvalidInputError(f"{what} must give (torch.nn.Module, InputSpec), got {type(built).__name__}")
    return built


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSettings:
    """Everything besides the model that a batch run's rows depend on (or how it runs)."""

    methods: tuple[str, ...]
    sigma: float = 1.0
    padding: str = "replicate"
    derivative: str = "abs"
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Options per method name, passed to ``explain``."""
    stride: int | None = None
    """Frames between clip starts (default: the clip length, back to back)."""
    target: str = "predicted"
    """"predicted" explains the model's top class, "label" the manifest's label."""
    pad_short: bool = False
    """Loop-pad videos shorter than one clip instead of failing them."""
    seed: int = 0
    save_maps: bool = False
    clip_batch: int = 8
    """Clips per ``explain`` call (memory bound; random methods draw per call, so it is part of
    the fingerprint)."""
    device: str | None = None
    """"cpu", "cuda", ...; None: CUDA when available."""
    threads: int | None = None
    """torch CPU threads per process or actor; None leaves torch's default."""

    def __post_init__(self) -> None:
        if not self.methods:
            raise InvalidInputError("give at least one method, e.g. --method saliency")
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not math.isfinite(self.sigma) or self.sigma < 0:
            raise InvalidInputError(f"sigma must be a finite number >= 0, got {self.sigma!r}")
        if self.padding not in PADDINGS:
            raise InvalidInputError(f"padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")
        if self.derivative not in DERIVATIVES:
            raise InvalidInputError(f"derivative must be one of {', '.join(DERIVATIVES)}, got {self.derivative!r}")
        if self.target not in TARGETS:
            raise InvalidInputError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        for name, value in (("stride", self.stride), ("clip_batch", self.clip_batch), ("threads", self.threads)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
        unknown = set(self.method_options) - set(self.methods)
        if unknown:
            raise InvalidInputError(f"options given for {sorted(unknown)[0]!r}, which is not among the methods")

    def fingerprint(self) -> dict[str, Any]:
        """The settings the rows depend on (``run.json``; a resume must match them)."""
        return {
            "methods": list(self.methods),
            "sigma": float(self.sigma),
            "padding": self.padding,
            "derivative": self.derivative,
            "method_options": {m: dict(o) for m, o in self.method_options.items()},
            "stride": self.stride,
            "target": self.target,
            "pad_short": self.pad_short,
            "seed": self.seed,
            "save_maps": self.save_maps,
            "clip_batch": self.clip_batch,
        }


def resolve_methods(methods: Iterable[str], options: Mapping[str, Mapping[str, Any]]) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """Canonical method names and their checked options (unknown names fail here, up front)."""
    from motion_relevance.attribution.registry import get_method

    names: list[str] = []
    for given in methods:
        name = get_method(given).name
        if name in names:
            raise InvalidInputError(f"method {name!r} is listed twice; give each method once")
        names.append(name)
    resolved: dict[str, dict[str, Any]] = {}
    for given, opts in options.items():
        method = get_method(given)
        if method.name not in names:
            raise InvalidInputError(f"options given for {given!r}, which is not among the methods")
        opts = dict(opts)
        batch_size = opts.pop("batch_size", None)  # explain's own keyword, not a method option
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise InvalidInputError(f"batch_size of {method.name!r} must be an integer >= 1, got {batch_size!r}")
        method.resolve_options(opts)  # raises on unknown or bad options
        resolved[method.name] = dict(opts) if batch_size is None else {**opts, "batch_size": batch_size}
    return tuple(names), resolved


# ---------------------------------------------------------------------------------------------
# processing one unit
# ---------------------------------------------------------------------------------------------


def one_line(exc: BaseException) -> str:
    """A one-line message for an error row (library errors are one line already)."""
    if isinstance(exc, MotionRelevanceError):
        return str(exc)
    text = " ".join(str(exc).split()) or "no message"
    line = f"{type(exc).__name__}: {text}"
    return line if len(line) <= 300 else line[:297] + "..."


def unit_seed(seed: int, row: int, method: str, clip: int) -> int:
    """Seed of one explain call: the same in every engine, process and resume."""
    digest = hashlib.sha256(f"{seed}/{row}/{method}/{clip}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InvalidInputError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None


@dataclass
class _MethodRows:
    clip: list[int] = field(default_factory=list)
    start_frame: list[int] = field(default_factory=list)
    target: list[int] = field(default_factory=list)
    probability: list[float] = field(default_factory=list)
    motion_share: list[float] = field(default_factory=list)
    sparsity: list[float | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    error: str | None = None
    error_seconds: float = 0.0


class UnitProcessor:
    """Builds the model once, then turns video entries into rows (``process``)."""

    def __init__(
        self,
        source: ModelSource,
        settings: BatchSettings,
        *,
        maps_root: Path | None = None,
        tmp_root: Path | None = None,
    ) -> None:
        from motion_relevance.attribution import explain

        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        if settings.save_maps and (maps_root is None or tmp_root is None):
            raise InvalidInputError("save_maps needs the store's maps and tmp folders")
        self._explain = explain
        self.settings = settings
        self.device = _device(settings.device)
        model, spec = source.load()
        self.model = model.to(self.device).eval()
        self.spec = spec
        self.maps_root = maps_root
        self.tmp_root = tmp_root

    # -- helpers -------------------------------------------------------------------------------

    def _target(self, entry: VideoEntry) -> int | str | None:
        if self.settings.target == "predicted":
            return None
        if entry.label is None:
            raise InvalidInputError(f"{entry.video} has no label to explain; give one in the manifest or use target 'predicted'")
        return int(entry.label) if entry.label.lstrip("-").isdigit() else entry.label

    def _short(self, entry: VideoEntry, frames: int, needed: int) -> VideoError:
        return VideoError(
            f"{entry.video} has {frames} frame(s), fewer than one {needed}-frame clip; "
            "drop it or pass --pad-short to loop-pad it"
        )

    def _clips(self, entry: VideoEntry) -> Iterator[list[tuple[Any, np.ndarray]]]:
        from motion_relevance.video import iter_clips, probe

        if not self.settings.pad_short:  # fail short videos from their header, before decoding
            needed = self.spec.min_frames or self.spec.frames
            stated = probe(entry.path, count_frames=False).num_frames
            if 0 < stated < needed:
                raise self._short(entry, stated, needed)
        windows = iter_clips(entry.path, self.spec, stride=self.settings.stride)
        for chunk in _chunks(windows, self.settings.clip_batch):
            for window, _ in chunk:
                if window.padded and not self.settings.pad_short:  # the header did not say
                    raise self._short(entry, window.num_owned, window.length)
            yield chunk

    def _label_name(self, index: int) -> str | None:
        labels = self.spec.labels
        return labels[index] if labels is not None and 0 <= index < len(labels) else None

    # -- the unit ------------------------------------------------------------------------------

    def process(self, entry: VideoEntry) -> pa.Table:
        """All rows of one video. A bad video or a failing method becomes error rows; only an
        unwritable store (``OutputError``) raises."""
        from motion_relevance.metrics.sparsity import sparsity_ratio

        s = self.settings
        per_method = {m: _MethodRows() for m in s.methods}
        writer = None
        start_frames: list[int] = []
        started = time.perf_counter()
        try:
            if s.save_maps:
                from motion_relevance.batch.maps import MapWriter

                assert self.tmp_root is not None
                writer = MapWriter(self.tmp_root, {"row": entry.row, "video": entry.video, "label": entry.label})
            target = self._target(entry)
            for chunk in self._clips(entry):
                first = chunk[0][0].index
                start_frames += [w.frame_indices[0] for w, _ in chunk]
                clips = self.spec.preprocess(np.stack([f for _, f in chunk])).to(self.device)
                for method in s.methods:
                    rows = per_method[method]
                    if rows.error is not None:
                        continue
                    t0 = time.perf_counter()
                    try:
                        expl = self._explain(
                            self.model,
                            clips,
                            method,
                            target=target,
                            spec=self.spec,
                            seed=unit_seed(s.seed, entry.row, method, first),
                            **s.method_options.get(method, {}),
                        )
                        sel = selective_relevance(expl.relevance, s.sigma, padding=s.padding, derivative=s.derivative)
                        probs = torch.softmax(expl.logits.detach().float(), dim=1)
                        tgt = expl.target.to(probs.device).long()
                        prob = probs.gather(1, tgt[:, None])[:, 0]
                        sparsity = sparsity_ratio(expl.relevance, sel.motion)
                        if writer is not None:
                            writer.append(method, expl.relevance, sel.motion)
                    except OutputError:  # the store cannot be written: stop the run
                        raise
                    except Exception as exc:  # a method failing on this video is a row, not a crash
                        log.warning("%s failed on %s: %s", method, entry.video, one_line(exc), exc_info=log.isEnabledFor(logging.DEBUG))
                        rows.error = one_line(exc)
                        rows.error_seconds += time.perf_counter() - t0
                        if writer is not None:
                            writer.drop(method)
                        continue
                    each = (time.perf_counter() - t0) / len(chunk)
                    rows.clip += [w.index for w, _ in chunk]
                    rows.start_frame += [w.frame_indices[0] for w, _ in chunk]
                    rows.target += tgt.cpu().tolist()
                    rows.probability += prob.cpu().double().tolist()
                    rows.motion_share += sel.motion_share.detach().cpu().double().tolist()
                    rows.sparsity += [None if math.isnan(v) else v for v in sparsity.cpu().double().tolist()]
                    rows.seconds += [each] * len(chunk)
            if writer is not None:
                assert self.maps_root is not None
                writer.commit(self.maps_root / entry.key, start_frames)
                writer = None
        except OutputError:
            raise
        except Exception as exc:  # the video itself failed: one error row per method
            log.warning("%s failed: %s", entry.video, one_line(exc), exc_info=log.isEnabledFor(logging.DEBUG))
            message = one_line(exc)
            elapsed = time.perf_counter() - started
            per_method = {m: _MethodRows(error=message, error_seconds=elapsed / len(s.methods)) for m in s.methods}
        finally:
            if writer is not None:
                writer.discard()
        return self._table(entry, per_method)

    def _table(self, entry: VideoEntry, per_method: dict[str, _MethodRows]) -> pa.Table:
        columns: dict[str, list[Any]] = {name: [] for name in ROW_SCHEMA.names}
        for method, rows in per_method.items():
            if rows.error is not None:
                n = 1
                columns["clip"].append(None)
                columns["start_frame"].append(None)
                columns["target"].append(None)
                columns["target_label"].append(None)
                columns["probability"].append(None)
                columns["motion_share"].append(None)
                columns["sparsity"].append(None)
                columns["seconds"].append(rows.error_seconds)
                columns["error"].append(rows.error)
            else:
                n = len(rows.clip)
                columns["clip"] += rows.clip
                columns["start_frame"] += rows.start_frame
                columns["target"] += rows.target
                columns["target_label"] += [self._label_name(t) for t in rows.target]
                columns["probability"] += rows.probability
                columns["motion_share"] += rows.motion_share
                columns["sparsity"] += rows.sparsity
                columns["seconds"] += rows.seconds
                columns["error"] += [None] * n
            columns["row"] += [entry.row] * n
            columns["video"] += [entry.video] * n
            columns["label"] += [entry.label] * n
            columns["method"] += [method] * n
            columns["sigma"] += [float(self.settings.sigma)] * n
        return pa.Table.from_pydict(columns, schema=ROW_SCHEMA)


__all__ = [
    "TARGETS",
    "BatchSettings",
    "ModelSource",
    "UnitProcessor",
    "one_line",
    "resolve_methods",
    "unit_seed",
]
