"""One unit of a batch run: a video -> clips -> explanations -> selective relevance -> rows.

The unit of work is the **video**: it is decoded once, cut into the model's clips, and every
requested method explains every clip. A unit ends as rows for all its (method, clip) pairs;
a method that fails on it gives one error row for that method (the other methods still run)
and a video that cannot be read gives one error row per method. Either way the unit is
finished and is committed as a whole, so resuming never splits a video.

The orchestration pieces come from ``runs``: ``ModelSource`` is the picklable recipe the
engines use to build the model where it runs (once per process or Ray actor), and
``explain_and_select`` the step; ``BatchSettings`` is everything else the rows depend on.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from motion_relevance.batch.manifest import VideoEntry
from motion_relevance.batch.store import ROW_SCHEMA
from motion_relevance.checks import one_of, optional_positive_int, positive_float, positive_int
from motion_relevance.errors import InvalidInputError, MotionRelevanceError, OutputError, VideoError
from motion_relevance.metrics.sparsity import sparsity_ratio
from motion_relevance.models.spec import InputSpec
from motion_relevance.runs import (
    ExplainSettings,
    ModelSource,
    SelectiveSettings,
    is_auto,
    label_name,
    one_line,
    resolve_device,
    with_context,
)
from motion_relevance.runs.recipe import DEFAULT_RELIANCE, Recipe
from motion_relevance.runs.stream import Chunk, stream
from motion_relevance.video import iter_clips, probe

log = logging.getLogger(__name__)

#: Seconds without progress before a run is stopped as hung (``BatchSettings.stall_timeout``).
DEFAULT_STALL_TIMEOUT = 600.0

#: How the explained class is chosen: the model's prediction, or the manifest's label.
TARGETS: tuple[str, ...] = ("predicted", "label")


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
    """"predicted" (or "auto") explains the model's top class, "label" the manifest's label."""
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
    ties: str = "first"
    """How max pools pass gradient through tied maxima ("first" or "shared"; see ``explain``)."""
    context_frames: int = 0
    """Real neighbouring frames each clip is explained with on each side (cropped away)."""
    precision: str = "float32"
    """"float32" or "bfloat16" (autocast around the model; see ``explain``)."""
    tf32: bool = False
    """Allow TF32 convolutions and matrix products on the GPU (see ``explain``)."""
    decode_workers: int | None = None
    """Processes that decode and preprocess videos ahead of the model (local engine; 0: in the
    model's process; None: one per spare core, at most 8) or Ray decode tasks at once (None: as
    the cluster allows). How the run runs, not what it computes."""
    prefetch: int = 2
    """Chunks of ``clip_batch`` clips each decode worker may hold ready (bounds memory)."""
    reliance: int = DEFAULT_RELIANCE
    """Random frame orders per clip for the motion reliance (``mr.motion_reliance``; 0: not
    measured, the column stays empty)."""
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    """Seconds without progress (a decode worker's next chunk, a Ray actor's next finished video)
    after which the run stops with an error naming the worker and the video; how the run runs."""

    def __post_init__(self) -> None:
        if not self.methods:
            raise InvalidInputError("give at least one method, e.g. --method saliency")
        selective = SelectiveSettings(self.sigma, self.padding, self.derivative)
        object.__setattr__(self, "sigma", selective.sigma)
        target = "predicted" if is_auto(self.target) else self.target
        object.__setattr__(self, "target", one_of("target", target, TARGETS))
        optional_positive_int("stride", self.stride)
        positive_int("clip_batch", self.clip_batch)
        optional_positive_int("threads", self.threads)
        if self.decode_workers is not None and (
            isinstance(self.decode_workers, bool) or not isinstance(self.decode_workers, int) or self.decode_workers < 0
        ):
            raise InvalidInputError(f"decode workers must be an integer >= 0, got {self.decode_workers!r}")
        positive_int("prefetch", self.prefetch)
        object.__setattr__(self, "stall_timeout", positive_float("stall timeout (seconds)", self.stall_timeout))
        explaining = self.explaining
        object.__setattr__(self, "context_frames", explaining.context_frames)
        object.__setattr__(self, "precision", explaining.precision)
        recipe = self.recipe  # the one check of methods, options and the reliance count
        object.__setattr__(self, "methods", recipe.methods)
        object.__setattr__(self, "method_options", {m: o for m, o in recipe.options.items() if o})

    @property
    def explaining(self) -> ExplainSettings:
        return ExplainSettings(self.ties, self.context_frames, self.precision, self.tf32)

    @property
    def selective(self) -> SelectiveSettings:
        return SelectiveSettings(self.sigma, self.padding, self.derivative)

    @property
    def recipe(self) -> Recipe:
        """What the rows depend on, as the one record the stream takes."""
        return Recipe(self.methods, self.method_options, self.selective, self.explaining, self.seed, self.reliance)

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
            **self.explaining.describe(),
            "reliance_permutations": self.reliance,
        }


# ---------------------------------------------------------------------------------------------
# processing one unit
# ---------------------------------------------------------------------------------------------


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


#: A chunk of ``clip_batch`` decoded and preprocessed clips (``runs.stream.Chunk``).
PreparedChunk = Chunk


class RunAborted(MotionRelevanceError):
    """The run cannot go on, through no fault of the video at hand (e.g. a decode worker died)."""


class PreparedError(MotionRelevanceError):
    """A video that could not be decoded elsewhere (a decode worker); its one-line message."""


def _short(entry: VideoEntry, frames: int, needed: int) -> VideoError:
    return VideoError(
        f"{entry.video} has {frames} frame(s), fewer than one {needed}-frame clip; "
        "drop it or pass --pad-short to loop-pad it"
    )


def prepare_unit(entry: VideoEntry, spec: InputSpec, settings: BatchSettings) -> Iterator[PreparedChunk]:
    """Decode and preprocess one video into chunks of ``clip_batch`` clips (each with its
    context frames). Raises on a video that cannot be read or is too short."""
    if not settings.pad_short:  # fail short videos from their header, before decoding
        needed = spec.min_frames or spec.frames
        stated = probe(entry.path, count_frames=False).num_frames
        if 0 < stated < needed:
            raise _short(entry, stated, needed)
    windows = with_context(iter_clips(entry.path, spec, stride=settings.stride), settings.context_frames)
    for chunk in _chunks(windows, settings.clip_batch):
        for window, _, _ in chunk:
            if window.padded and not settings.pad_short:  # the header did not say
                raise _short(entry, window.num_owned, window.length)
        inputs = spec.preprocess(np.stack([x for _, _, x in chunk]))
        yield PreparedChunk(tuple(w for w, _, _ in chunk), chunk[0][1].shape[0], inputs)


@dataclass
class _MethodRows:
    clip: list[int] = field(default_factory=list)
    start_frame: list[int] = field(default_factory=list)
    target: list[int] = field(default_factory=list)
    probability: list[float] = field(default_factory=list)
    motion_share: list[float] = field(default_factory=list)
    motion_score: list[float] = field(default_factory=list)
    motion_reliance: list[float | None] = field(default_factory=list)
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
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        if settings.save_maps and (maps_root is None or tmp_root is None):
            raise InvalidInputError("save_maps needs the store's maps and tmp folders")
        self.settings = settings
        self.device = resolve_device(settings.device)
        model, spec = source.load()
        settings.explaining.check_model(spec)
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

    # -- the unit ------------------------------------------------------------------------------

    def process(self, entry: VideoEntry, chunks: Iterable[PreparedChunk] | None = None) -> pa.Table:
        """All rows of one video. A bad video or a failing method becomes error rows; only an
        unwritable store (``OutputError``) raises. ``chunks``: the video already decoded and
        preprocessed (by ``prepare_unit``, e.g. in a decode worker); None decodes it here."""
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
            if chunks is None:
                chunks = prepare_unit(entry, self.spec, s)
            seeds = functools.partial(unit_seed, s.seed, entry.row)
            results = stream(self.model, self.spec, chunks, s.recipe, target=target, seeds=seeds, keep_going=True)
            for result in results:
                chunk = result.chunk.windows
                start_frames += [w.frame_indices[0] for w in chunk]
                for method, message in result.errors.items():
                    rows = per_method[method]
                    if rows.error is None:
                        log.warning("%s failed on %s: %s", method, entry.video, message)
                        rows.error = message
                        if writer is not None:
                            writer.drop(method)
                for method, step in result.steps.items():
                    rows = per_method[method]
                    if rows.error is not None:
                        continue
                    t0 = time.perf_counter()
                    try:
                        expl, sel = step.explanation, step.selective
                        probs = torch.softmax(expl.logits.detach().float(), dim=1)
                        tgt = expl.target.to(probs.device).long()
                        prob = probs.gather(1, tgt[:, None])[:, 0]
                        sparsity = sparsity_ratio(expl.relevance, sel.motion)
                        score = sel.motion_score
                        if writer is not None:
                            writer.append(method, expl.relevance, sel.motion)
                    except (OutputError, RunAborted):  # the store cannot be written: stop the run
                        raise
                    except Exception as exc:  # a method failing on this video is a row, not a crash
                        log.warning("%s failed on %s: %s", method, entry.video, one_line(exc), exc_info=log.isEnabledFor(logging.DEBUG))
                        rows.error = one_line(exc)
                        rows.error_seconds += step.seconds + time.perf_counter() - t0
                        if writer is not None:
                            writer.drop(method)
                        continue
                    each = (step.seconds + time.perf_counter() - t0) / len(chunk)
                    rows.clip += [w.index for w in chunk]
                    rows.start_frame += [w.frame_indices[0] for w in chunk]
                    rows.target += tgt.cpu().tolist()
                    rows.probability += prob.cpu().double().tolist()
                    rows.motion_share += sel.motion_share.detach().cpu().double().tolist()
                    rows.motion_score += score.detach().cpu().double().tolist()
                    rows.motion_reliance += (
                        [None] * len(chunk) if result.reliance is None else result.reliance.score.double().tolist()
                    )
                    rows.sparsity += [None if math.isnan(v) else v for v in sparsity.cpu().double().tolist()]
                    rows.seconds += [each] * len(chunk)
            if writer is not None:
                assert self.maps_root is not None
                writer.commit(self.maps_root / entry.key, start_frames)
                writer = None
        except (OutputError, RunAborted):
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
                columns["motion_score"].append(None)
                columns["motion_reliance"].append(None)
                columns["sparsity"].append(None)
                columns["seconds"].append(rows.error_seconds)
                columns["error"].append(rows.error)
            else:
                n = len(rows.clip)
                columns["clip"] += rows.clip
                columns["start_frame"] += rows.start_frame
                columns["target"] += rows.target
                columns["target_label"] += [label_name(self.spec, t) for t in rows.target]
                columns["probability"] += rows.probability
                columns["motion_share"] += rows.motion_share
                columns["motion_score"] += rows.motion_score
                columns["motion_reliance"] += rows.motion_reliance
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
    "DEFAULT_STALL_TIMEOUT",
    "TARGETS",
    "BatchSettings",
    "ModelSource",
    "PreparedChunk",
    "PreparedError",
    "RunAborted",
    "UnitProcessor",
    "prepare_unit",
    "unit_seed",
]
