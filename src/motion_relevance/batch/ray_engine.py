"""The Ray engine: Ray Data ``map_batches`` over the pending units with an actor class.

Each actor (``UnitActor``) builds the model once from the picklable ``ModelSource`` and
processes one video per call; it returns the unit's rows as Arrow IPC bytes, and the driver
commits them to the store as they arrive (so the rows never need a shared file system). With
``save_maps`` the actors write maps straight into ``STORE/maps.zarr``, so the store must then be
on a file system every worker sees (NFS, Lustre, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from motion_relevance.batch.manifest import VideoEntry
from motion_relevance.batch.pipeline import BatchSettings, ModelSource, UnitProcessor
from motion_relevance.batch.store import ResultStore
from motion_relevance.errors import DependencyError, InvalidInputError, MotionRelevanceError

log = logging.getLogger(__name__)


#: Most input blocks; beyond it a block (one actor task, committed together) holds several videos.
MAX_BLOCKS = 10_000


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise DependencyError(
            "the ray engine needs Ray Data; install it with `pip install 'motion-relevance[ray]'`"
        ) from None
    return ray


def _to_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_bytes(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class UnitActor:
    """Ray Data actor: builds the model once, then turns manifest rows into unit rows."""

    def __init__(
        self,
        source: ModelSource,
        settings: BatchSettings,
        maps_root: str | None,
        tmp_root: str | None,
    ) -> None:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        self.processor = UnitProcessor(
            source,
            settings,
            maps_root=None if maps_root is None else Path(maps_root),
            tmp_root=None if tmp_root is None else Path(tmp_root),
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows, results = [], []
        for item in batch.to_pylist():
            entry = VideoEntry(row=item["row"], video=item["video"], path=item["path"], label=item["label"])
            rows.append(entry.row)
            results.append(_to_bytes(self.processor.process(entry)))
        return pa.table({"row": pa.array(rows, pa.int64()), "result": pa.array(results, pa.binary())})


def _workers(ray: Any, options: Any, pending: int) -> int:
    if options.workers is not None:
        return min(options.workers, pending)
    resources = ray.cluster_resources()
    count = int(resources.get("CPU", 1) // options.cpus_per_worker)
    if options.gpus_per_worker > 0:
        count = min(count, int(resources.get("GPU", 0) // options.gpus_per_worker))
        if count < 1:
            raise InvalidInputError(
                f"the Ray cluster has {resources.get('GPU', 0):g} GPU(s), fewer than "
                f"{options.gpus_per_worker:g} per worker; lower --gpus-per-worker"
            )
    return max(1, min(count, pending))


def ray_units(
    source: ModelSource,
    settings: BatchSettings,
    pending: Sequence[VideoEntry],
    store: ResultStore,
    options: Any,
) -> Iterator[tuple[VideoEntry, pa.Table]]:
    """Yield ``(entry, rows)`` for every pending unit as Ray actors finish them."""
    if not pending:
        return
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.address, include_dashboard=False, logging_level=logging.WARNING)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        if settings.device is None and options.gpus_per_worker > 0:
            settings = _with_device(settings, "cuda")
        elif settings.device is None:
            settings = _with_device(settings, "cpu")
        items = [{"row": e.row, "video": e.video, "path": e.path, "label": e.label} for e in pending]
        # One video per block (up to MAX_BLOCKS): an actor's task is one block, so small blocks
        # balance the load and let the driver commit each video as soon as it is done.
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
        ds = ds.map_batches(
            UnitActor,
            fn_constructor_kwargs={
                "source": source,
                "settings": settings,
                "maps_root": str(store.maps) if settings.save_maps else None,
                "tmp_root": str(store.tmp) if settings.save_maps else None,
            },
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=_workers(ray, options, len(items))),
            num_cpus=options.cpus_per_worker,
            num_gpus=options.gpus_per_worker,
        )
        by_row = {e.row: e for e in pending}
        try:
            for record in ds.iter_rows():
                yield by_row[int(record["row"])], _from_bytes(record["result"])
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MotionRelevanceError(
                f"the Ray run failed ({type(exc).__name__}: {first[:200]}); the videos finished so "
                "far are kept: fix the cause (see the worker log above) and rerun with --resume"
            ) from exc
    finally:
        if started_here:
            ray.shutdown()


def _with_device(settings: BatchSettings, device: str) -> BatchSettings:
    return replace(settings, device=device)


__all__ = ["UnitActor", "ray_units"]
