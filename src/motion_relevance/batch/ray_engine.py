"""The Ray engine: Ray Data's batch-inference shape over the pending units.

Two stages, scaled apart: ``decode_unit`` runs as CPU tasks (as many at once as
``decode_workers``, or as the cluster allows) and turns a manifest row into the video's
preprocessed clip chunks; ``UnitActor``s (``workers`` of them, each with its CPUs and GPUs)
build the model once from the picklable ``ModelSource`` and explain one decoded video per call.
Ray Data streams between the stages with backpressure, so decoding scales with CPUs and
explaining with GPUs, and one decoded video per block bounds what is held at once. The actors
return each unit's rows as Arrow IPC bytes, and the driver commits them to the store as they
arrive (so the rows never need a shared file system). With
``save_maps`` the actors write maps straight into ``STORE/maps.zarr``, so the store must then be
on a file system every worker sees (NFS, Lustre, ...).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from motion_relevance.batch.manifest import VideoEntry
from motion_relevance.batch.pipeline import (
    BatchSettings,
    ModelSource,
    PreparedChunk,
    PreparedError,
    RunAborted,
    UnitProcessor,
    prepare_unit,
)
from motion_relevance.batch.store import ResultStore
from motion_relevance.errors import DependencyError, InvalidInputError, MotionRelevanceError
from motion_relevance.models.spec import InputSpec
from motion_relevance.runs import one_line
from motion_relevance.video import ClipWindow
from motion_relevance.video.decode import set_decode_threads

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


def _encode_unit(chunks: Sequence[PreparedChunk]) -> tuple[bytes, str]:
    """A decoded video as ``.npz`` bytes (no pickles) and its windows as JSON."""
    buffer = io.BytesIO()
    np.savez(buffer, **{f"c{i}": c.inputs.numpy() for i, c in enumerate(chunks)})
    meta = [{"frames": c.frames, "windows": [asdict(w) for w in c.windows]} for c in chunks]
    return buffer.getvalue(), json.dumps(meta)


def _decode_unit(data: bytes, meta: str) -> list[PreparedChunk]:
    arrays = np.load(io.BytesIO(data), allow_pickle=False)
    chunks = []
    for i, m in enumerate(json.loads(meta)):
        windows = tuple(ClipWindow(**{**w, "frame_indices": tuple(w["frame_indices"])}) for w in m["windows"])
        chunks.append(PreparedChunk(windows, int(m["frames"]), torch.from_numpy(arrays[f"c{i}"])))
    return chunks


def decode_unit(batch: pa.Table, spec: InputSpec, settings: BatchSettings) -> pa.Table:
    """Ray Data task: decode and preprocess each manifest row of ``batch`` (one per block), on
    the one CPU the task holds."""
    torch.set_num_threads(1)
    set_decode_threads(1)
    out: dict[str, list[Any]] = {"row": [], "video": [], "path": [], "label": [], "inputs": [], "meta": [], "error": []}
    for item in batch.to_pylist():
        entry = VideoEntry(row=item["row"], video=item["video"], path=item["path"], label=item["label"])
        try:
            data, meta, error = *_encode_unit(list(prepare_unit(entry, spec, settings))), None
        except Exception as exc:  # the unit turns it into error rows, as on the local engine
            data, meta, error = b"", "[]", one_line(exc)
        for key, value in (*item.items(), ("inputs", data), ("meta", meta), ("error", error)):
            out[key].append(value)
    schema = pa.schema([
        ("row", pa.int64()), ("video", pa.string()), ("path", pa.string()), ("label", pa.string()),
        ("inputs", pa.large_binary()), ("meta", pa.large_string()), ("error", pa.string()),
    ])  # fmt: skip
    return pa.Table.from_pydict(out, schema=schema)


def decode_stage_args(decode_workers: int | None) -> dict[str, Any]:
    """``map_batches`` arguments of the decode stage: one video per task on one CPU, at most
    ``decode_workers`` at once. Its runtime environment (one OpenMP thread, what Ray gives a
    one-CPU task anyway) differs from the actors', which keeps Ray Data from fusing the stage
    into the actors (it fuses stages whose remote arguments match): fused, every actor would
    decode its own videos and nothing would overlap."""
    return {
        "batch_size": 1,
        "batch_format": "pyarrow",
        "compute": _ray().data.TaskPoolStrategy(size=decode_workers),
        "num_cpus": 1,
        "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "1"}},
    }


def explain_stage_args(actors: int, cpus_per_worker: float, gpus_per_worker: float) -> dict[str, Any]:
    """``map_batches`` arguments of the explaining stage: ``actors`` ``UnitActor``s, one decoded
    video per call, each actor holding its CPUs and GPUs."""
    return {
        "batch_size": 1,
        "batch_format": "pyarrow",
        "compute": _ray().data.ActorPoolStrategy(size=actors),
        "num_cpus": cpus_per_worker,
        "num_gpus": gpus_per_worker,
    }


def _failed(message: str) -> Iterator[PreparedChunk]:
    raise PreparedError(message)
    yield  # a generator: the error is raised where the unit reads its chunks


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
            if "inputs" not in item:  # not decoded ahead: decode here
                chunks = None
            elif item["error"] is not None:
                chunks = _failed(item["error"])
            else:
                chunks = _decode_unit(item["inputs"], item["meta"])
            rows.append(entry.row)
            results.append(_to_bytes(self.processor.process(entry, chunks)))
        return pa.table({"row": pa.array(rows, pa.int64()), "result": pa.array(results, pa.binary())})


def plan(resources: dict[str, float], options: Any, decode_workers: int | None, pending: int) -> tuple[int, bool]:
    """How many explaining actors, and whether videos are decoded ahead by CPU tasks.

    Decode tasks need a CPU the actors do not hold: by default the actors leave one free; when
    none is free (``--workers`` fills the CPUs) the actors decode their own videos instead, and
    an explicit ``decode_workers`` then is an error (the tasks could never be scheduled)."""
    cpus = float(resources.get("CPU", 1))
    ahead = decode_workers != 0
    if options.workers is not None:
        actors = min(options.workers, pending)
    else:
        spare = 1.0 if ahead and cpus >= 1 + options.cpus_per_worker else 0.0
        actors = int((cpus - spare) // options.cpus_per_worker)
        if options.gpus_per_worker > 0:
            gpus = float(resources.get("GPU", 0))
            actors = min(actors, int(gpus // options.gpus_per_worker))
            if actors < 1:
                raise InvalidInputError(
                    f"the Ray cluster has {gpus:g} GPU(s), fewer than {options.gpus_per_worker:g} per worker; "
                    "lower --gpus-per-worker"
                )
        actors = max(1, min(actors, pending))
    if ahead and cpus - actors * options.cpus_per_worker < 1:
        if decode_workers is not None:
            raise InvalidInputError(
                f"--decode-workers needs a CPU the actors do not hold, but {actors} actor(s) x "
                f"{options.cpus_per_worker:g} CPU take all {cpus:g}; lower --workers or --cpus-per-worker, "
                "or pass --decode-workers 0"
            )
        ahead = False
    return actors, ahead


def ray_units(
    source: ModelSource,
    spec: InputSpec,
    settings: BatchSettings,
    pending: Sequence[VideoEntry],
    store: ResultStore,
    options: Any,
) -> Iterator[tuple[VideoEntry, pa.Table]]:
    """Yield ``(entry, rows)`` for every pending unit as Ray actors finish them (``spec``: the
    model's, for the decode tasks)."""
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
        actors, ahead = plan(ray.cluster_resources(), options, settings.decode_workers, len(items))
        if not ahead and settings.decode_workers != 0:
            log.info("no CPU left for decode tasks: the %d actor(s) decode their own videos", actors)
        if ahead:  # decoding as CPU tasks, ahead of the actors
            ds = ds.map_batches(
                decode_unit, fn_kwargs={"spec": spec, "settings": settings}, **decode_stage_args(settings.decode_workers)
            )
        ds = ds.map_batches(
            UnitActor,
            fn_constructor_kwargs={
                "source": source,
                "settings": settings,
                "maps_root": str(store.maps) if settings.save_maps else None,
                "tmp_root": str(store.tmp) if settings.save_maps else None,
            },
            **explain_stage_args(actors, options.cpus_per_worker, options.gpus_per_worker),
        )
        by_row = {e.row: e for e in pending}
        try:
            for record in _watched(ds.iter_rows(), settings.stall_timeout, by_row):
                entry = by_row.pop(int(record["row"]))
                yield entry, _from_bytes(record["result"])
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MotionRelevanceError(
                f"the Ray run failed ({type(exc).__name__}: {first[:200]}); the videos finished so "
                "far are kept: fix the cause (see the worker log above) and rerun with --resume"
            ) from exc
    finally:
        if started_here:
            ray.shutdown()


def _stop(thread: threading.Thread, before: set[threading.Thread]) -> None:
    """End the reading ``thread``: shut down the Ray Data executors started since ``before``
    (each runs as a thread of its own, a ``StreamingExecutor``), which ends the iteration, and
    wait for it. Without this, an executor outlives ``ray.shutdown`` after a stall, logs
    tracebacks and re-initialises Ray on its own."""
    for t in threading.enumerate():
        if t not in before and type(t).__name__ == "StreamingExecutor" and hasattr(t, "shutdown"):
            with contextlib.suppress(Exception):
                t.shutdown(force=True)
    thread.join(timeout=10)


def _watched(rows: Iterator[Any], stall_timeout: float, waiting: dict[int, VideoEntry]) -> Iterator[Any]:
    """``rows`` read in a helper thread, with a watchdog: RunAborted when no row arrives for
    ``stall_timeout`` seconds (``waiting``: the videos not yet returned, named in the error).
    Errors of the iteration are raised here, in the caller's thread; however this generator
    ends, the reading thread has ended first."""
    arrived: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        try:
            for row in rows:
                arrived.put(("row", row))
            arrived.put(("end", None))
        except BaseException as exc:  # handed to the caller's thread
            arrived.put(("error", exc))

    before = set(threading.enumerate())
    thread = threading.Thread(target=pump, name="ray-rows", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, value = arrived.get(timeout=stall_timeout)
            except queue.Empty:
                names = [e.video for e in sorted(waiting.values(), key=lambda e: e.row)]
                more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                raise RunAborted(
                    f"the Ray actors finished no video for {stall_timeout:g} s (not yet returned: "
                    f"{', '.join(repr(n) for n in names[:3])}{more}); the videos finished so far are kept: "
                    "rerun with --resume (raise --stall-timeout if one video can take this long)"
                ) from None
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        _stop(thread, before)


def _with_device(settings: BatchSettings, device: str) -> BatchSettings:
    return replace(settings, device=device)


__all__ = ["UnitActor", "decode_stage_args", "decode_unit", "explain_stage_args", "plan", "ray_units"]
