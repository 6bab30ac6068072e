"""``run_batch``: explain every video of a manifest into a crash-safe, resumable result store.

Engines: ``"local"`` runs the units one after another in this process; ``"ray"`` spreads them
over Ray actors that each build the model once (see ``batch.ray_engine``). Both commit each
finished unit (one video, all methods) through the same ``ResultStore``, so they produce the same
store, and a run started on one engine can be resumed on the other.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from torch import nn

from motion_relevance.batch.manifest import VideoEntry, read_manifest
from motion_relevance.batch.pipeline import DEFAULT_STALL_TIMEOUT, BatchSettings, UnitProcessor
from motion_relevance.batch.prefetch import auto_decode_workers
from motion_relevance.batch.store import FAILED, OK, ResultStore
from motion_relevance.batch.summary import summarize
from motion_relevance.checks import optional_positive_int
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec
from motion_relevance.runs import (
    DEFAULT_RELIANCE,
    ModelBuilder,
    ModelSource,
    check_callback,
    resolve_methods,
)

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class RayOptions:
    """Where and how the Ray engine runs.

    ``address``: None starts a local Ray (unless one is already initialised in this process),
    ``"auto"`` joins the cluster this machine belongs to, ``"ray://head:10001"`` connects a
    client. ``workers``: actors (model copies); default: as many as the resources allow.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        optional_positive_int("workers", self.workers)
        if not self.cpus_per_worker > 0:
            raise InvalidInputError(f"cpus per worker must be > 0, got {self.cpus_per_worker!r}")
        if not self.gpus_per_worker >= 0:
            raise InvalidInputError(f"gpus per worker must be >= 0, got {self.gpus_per_worker!r}")


@dataclass(frozen=True)
class BatchProgress:
    """Where a run stands; passed to the callback before the first unit and after each."""

    total: int
    """Units (manifest rows) in the run."""
    done: int
    """Units finished without error in this run."""
    failed: int
    """Units finished with at least one error row in this run."""
    skipped: int
    """Units already finished in the store (``resume``), not redone."""
    video: str | None = None
    """The unit just finished (None for the first call)."""
    status: str | None = None
    """"ok" or "failed" for ``video``."""

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed - self.skipped


@dataclass(frozen=True)
class BatchResult:
    """What a finished run produced."""

    store: Path
    total: int
    done: int
    failed: int
    skipped: int
    seconds: float
    rows: pa.Table = field(repr=False)
    """Every per-clip row of the manifest's units (``STORE/clips.parquet``)."""
    summary: pa.Table = field(repr=False)
    """Mean motion share per (method, label) (``STORE/summary.parquet``)."""

    @property
    def clips(self) -> int:
        """Clip rows without error."""
        return self.rows.column("error").null_count


Callback = Callable[[BatchProgress], None]


def _picklable(value: object) -> bool:
    """Whether ``value`` can be sent to a worker process (decode workers are not forked copies)."""
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def _pending(entries: Sequence[VideoEntry], finished: Mapping[str, str], retry_failed: bool) -> list[VideoEntry]:
    return [
        e for e in entries if e.key not in finished or (retry_failed and finished[e.key] == FAILED)
    ]


def _local_units(
    processor: UnitProcessor, pending: Sequence[VideoEntry], workers: int
) -> Iterator[tuple[VideoEntry, pa.Table]]:
    """Units in manifest order, decoded in this process (``workers`` 0) or ahead of the model
    by ``workers`` decode processes (``batch.prefetch``)."""
    if workers == 0 or not pending:
        for entry in pending:
            yield entry, processor.process(entry)
        return
    from motion_relevance.batch.prefetch import DecodePool

    with DecodePool(processor.spec, processor.settings, workers) as pool:
        for entry, chunks in pool.units(pending):
            yield entry, processor.process(entry, chunks)


def run_batch(
    manifest: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | ModelBuilder | tuple[nn.Module, InputSpec],
    methods: str | Sequence[str],
    weights: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    sigma: float = 1.0,
    padding: str = "replicate",
    derivative: str = "abs",
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    stride: int | None = None,
    target: str = "predicted",
    pad_short: bool = False,
    seed: int = 0,
    save_maps: bool = False,
    clip_batch: int = 8,
    device: str | None = None,
    threads: int | None = None,
    engine: str = "local",
    ray: RayOptions | None = None,
    resume: bool = False,
    retry_failed: bool = False,
    callback: Callback | None = None,
    ties: str = "first",
    context_frames: int = 0,
    precision: str = "float32",
    tf32: bool = False,
    decode_workers: int | None = None,
    prefetch: int = 2,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    reliance: int = DEFAULT_RELIANCE,
) -> BatchResult:
    """Explain every video of ``manifest`` with every method into the store ``out``.

    ``model``: a preset name, ``"package.module:function"``, a top-level builder function
    (both return ``(module, InputSpec)``), or a built ``(module, spec)`` (local engine only).
    ``resume`` continues an interrupted run (same settings) and skips its finished units;
    ``retry_failed`` also redoes units that ended with an error. ``callback`` receives a
    ``BatchProgress`` before the first unit and after each (the CLI draws its bar from it).
    ``ties`` and ``context_frames`` are ``explain``'s (each clip explained with that many real
    neighbouring frames of its video on each side); both are part of the run's settings.
    ``stall_timeout``: seconds without progress (a decode worker's next chunk, a Ray actor's next
    finished video) before the run stops with ``RunAborted`` naming the worker and the video;
    finished videos stay committed, so ``resume`` continues. ``reliance``: random frame orders
    per clip for the ``motion_reliance`` column (0 leaves it empty).
    """
    started = time.perf_counter()
    callback = check_callback(callback, "callback")
    if engine not in ENGINES:
        raise InvalidInputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    entries = read_manifest(manifest)
    names, options = resolve_methods(methods, method_options)
    settings = BatchSettings(
        methods=names,
        sigma=sigma,
        padding=padding,
        derivative=derivative,
        method_options=options,
        stride=stride,
        target=target,
        pad_short=pad_short,
        seed=seed,
        save_maps=save_maps,
        clip_batch=clip_batch,
        device=device,
        threads=threads,
        ties=ties,
        context_frames=context_frames,
        precision=precision,
        tf32=tf32,
        decode_workers=decode_workers,
        prefetch=prefetch,
        stall_timeout=stall_timeout,
        reliance=reliance,
    )
    source = ModelSource.of(model, weights=weights, num_classes=num_classes)
    if engine == "ray" and not source.picklable:
        raise InvalidInputError(
            "the ray engine builds the model in every worker: give a preset name, "
            "'module:function' or a top-level builder function, not a built model"
        )
    store = ResultStore(out)
    ResultStore.check_target(out, resume=resume)
    threads_before = torch.get_num_threads()
    processor = None
    try:
        # Build the model before touching the store: a bad model or weights file writes nothing.
        if engine == "local":
            processor = UnitProcessor(source, settings, maps_root=store.maps, tmp_root=store.tmp)
            if settings.decode_workers and not _picklable(processor.spec):
                raise InvalidInputError(
                    "decode workers need a model InputSpec that can be pickled (no lambda or local function in "
                    "it, e.g. in cam_reshape): define those at module level, or pass --decode-workers 0"
                )
        else:  # the actors build their own copies; this one checks that they will succeed
            spec = source.load()[1]
            settings.explaining.check_model(spec)
        store.open({"model": source.describe(), **settings.fingerprint()}, resume=resume)
        if save_maps:
            from motion_relevance.batch.maps import init_maps

            init_maps(store.maps)
        finished = store.finished()
        pending = _pending(entries, finished, retry_failed)
        skipped = len(entries) - len(pending)
        if skipped:
            log.info("resuming: %d of %d videos are already done", skipped, len(entries))
        progress = BatchProgress(total=len(entries), done=0, failed=0, skipped=skipped)
        if callback is not None:
            callback(progress)
        if processor is not None:
            workers = settings.decode_workers
            if workers is None:
                workers = auto_decode_workers(len(pending))
                if workers and not _picklable(processor.spec):
                    log.warning("the model's InputSpec cannot be pickled: decoding in this process")
                    workers = 0
            units = _local_units(processor, pending, workers)
        else:
            from motion_relevance.batch.ray_engine import ray_units

            units = ray_units(source, spec, settings, pending, store, ray or RayOptions())
        for entry, table in units:
            status = store.commit(entry.key, table)
            progress = BatchProgress(
                total=progress.total,
                done=progress.done + (status == OK),
                failed=progress.failed + (status == FAILED),
                skipped=skipped,
                video=entry.video,
                status=status,
            )
            if callback is not None:
                callback(progress)
        rows = store.consolidate(entries)
        summary = summarize(rows)
        store.write_summary(summary)
    finally:
        store.close()
        torch.set_num_threads(threads_before)  # ``threads`` applies to this run only
    return BatchResult(
        store=store.path,
        total=progress.total,
        done=progress.done,
        failed=progress.failed,
        skipped=skipped,
        seconds=time.perf_counter() - started,
        rows=rows,
        summary=summary,
    )


__all__ = ["ENGINES", "BatchProgress", "BatchResult", "Callback", "RayOptions", "run_batch"]
