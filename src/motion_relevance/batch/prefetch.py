"""Decoding ahead of the model: worker processes turn videos into preprocessed clip chunks
while the model's process explains the chunks that are ready.

Video ``i`` of the pending list goes to worker ``i mod n``; every worker decodes its videos in
order and puts their chunks on its own queue, which holds at most ``prefetch`` chunks (memory
stays bounded however long a video is). The model's process reads video after video in the
manifest's order, so units finish, and are committed, in the same order as without workers
and give the same rows. Tensors travel through shared memory (``torch.multiprocessing``).

Workers never inherit the caller's threads: they are started by a fork server (a fresh
interpreter that has imported this module and nothing else, then forks one child per worker), or
spawned where the platform has no fork server. A plain ``fork`` would copy a parent that already
holds FFmpeg, torch, Numba or Ray thread pools, whose locks the child can then wait on forever
(PyAV 18.1.1 rescaling in a forked child deadlocks so). They run torch single-threaded, exit when
their parent goes away, and a watchdog in the model's process turns a worker that sends nothing
for ``stall_timeout`` seconds into a one-line error naming the worker and the video.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.multiprocessing as mp

from motion_relevance.batch.manifest import VideoEntry
from motion_relevance.batch.pipeline import (
    BatchSettings,
    PreparedChunk,
    PreparedError,
    RunAborted,
    prepare_unit,
)
from motion_relevance.models.spec import InputSpec
from motion_relevance.runs import one_line
from motion_relevance.runs.processes import process_context, workers_starting
from motion_relevance.video.decode import set_decode_threads

log = logging.getLogger(__name__)

#: Seconds between checks that the other side is still alive while waiting on a queue.
_POLL = 1.0
#: Most decode workers chosen automatically: about 8 clips/s each for 32-frame 640x360 videos, so 8
#: feed ~64 clips/s (a GPU explaining I3D with saliency takes 84-100); each holds `prefetch` chunks.
MAX_AUTO_WORKERS = 8


def auto_decode_workers(pending: int, cores: int | None = None) -> int:
    """Decode workers when none are asked for: one per core beyond the model's, at most
    ``MAX_AUTO_WORKERS``, none for a single video (nothing to overlap)."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    if pending < 2:
        return 0
    return max(1, min(MAX_AUTO_WORKERS, cores - 1, pending))


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (a worker's parent is the model's process, not the
    fork server that forked it, so ``os.getppid`` cannot tell)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _put(q: Any, item: Any, parent: int) -> bool:
    """Put ``item`` on ``q``, waiting while it is full; False when the parent has gone."""
    while True:
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            if not _alive(parent):
                return False


def _worker(spec: InputSpec, settings: BatchSettings, tasks: Any, out: Any, parent: int) -> None:
    """Decode the videos given on ``tasks`` into ``out``: ("chunk", PreparedChunk) ..., then
    ("end", None) or ("error", one-line message) per video; None on ``tasks`` stops."""
    # Ctrl-C reaches the whole process group: the model's process stops the run and its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # one core per worker: the model's process keeps the cores it was given
    set_decode_threads(1)
    while True:
        try:
            entry = tasks.get(timeout=_POLL)
        except queue.Empty:
            if not _alive(parent):
                return
            continue
        if entry is None:
            return
        try:
            for chunk in prepare_unit(entry, spec, settings):
                if not _put(out, ("chunk", chunk), parent):
                    return
            message: tuple[str, str | None] = ("end", None)
        except Exception as exc:  # the unit turns it into error rows, as without workers
            message = ("error", one_line(exc))
        if not _put(out, message, parent):
            return


class DecodePool:
    """``workers`` decode processes feeding the model's process, in manifest order."""

    def __init__(self, spec: InputSpec, settings: BatchSettings, workers: int) -> None:
        if workers < 1:
            raise ValueError("a decode pool needs at least one worker")
        ctx = process_context(__name__, mp)
        self.stall_timeout = settings.stall_timeout
        self._tasks = [ctx.Queue() for _ in range(workers)]
        self._outs = [ctx.Queue(maxsize=settings.prefetch) for _ in range(workers)]
        self._procs = [
            ctx.Process(target=_worker, args=(spec, settings, t, o, os.getpid()), daemon=True, name=f"decode-{i}")
            for i, (t, o) in enumerate(zip(self._tasks, self._outs, strict=True))
        ]
        with workers_starting():
            for p in self._procs:
                p.start()
        self.workers = workers

    def _get(self, worker: int, entry: VideoEntry) -> tuple[str, Any]:
        """The next message of ``worker`` (busy with ``entry``); RunAborted when it died or sent
        nothing for ``stall_timeout`` seconds (the wait for one chunk bounds how long the worker
        went without progress: it works on this video since the previous one was drained)."""
        waited = 0.0
        while True:
            started = time.monotonic()
            try:
                return self._outs[worker].get(timeout=min(_POLL, self.stall_timeout))
            except queue.Empty:
                waited += time.monotonic() - started
                proc = self._procs[worker]
                if not proc.is_alive():
                    raise RunAborted(
                        f"decode worker {worker} stopped (exit code {proc.exitcode}) on {entry.video!r}; the "
                        "videos finished so far are kept: rerun with --resume (and --decode-workers 0 to "
                        "decode in one process)"
                    ) from None
                if waited >= self.stall_timeout:
                    raise RunAborted(
                        f"decode worker {worker} (pid {proc.pid}) made no progress for {self.stall_timeout:g} s on "
                        f"{entry.video!r}; the videos finished so far are kept: rerun with --resume (raise "
                        "--stall-timeout if decoding one chunk can take this long)"
                    ) from None

    def _chunks(self, worker: int, entry: VideoEntry) -> Iterator[PreparedChunk]:
        while True:
            kind, value = self._get(worker, entry)
            if kind == "chunk":
                yield value
            elif kind == "end":
                return
            else:
                raise PreparedError(value)

    def units(self, entries: Sequence[VideoEntry]) -> Iterator[tuple[VideoEntry, Iterator[PreparedChunk]]]:
        """``(entry, chunks)`` in the order of ``entries``; each ``chunks`` must be read to its
        end (``UnitProcessor.process`` does, also when a method fails) before the next."""
        for i, entry in enumerate(entries):
            self._tasks[i % self.workers].put(entry)
        for i, entry in enumerate(entries):
            chunks = self._chunks(i % self.workers, entry)
            yield entry, chunks
            try:
                for _ in chunks:  # drain what the unit did not read (it stopped at an error)
                    pass
            except PreparedError:
                pass

    def close(self) -> None:
        """Stop the workers (also mid-run) and release their queues."""
        for t in self._tasks:
            with contextlib.suppress(OSError, ValueError):
                t.put(None)
        for p in self._procs:
            p.join(timeout=2 * _POLL)
            if p.is_alive():  # busy or hung: a hung worker ignores its queue
                p.terminate()
                p.join(timeout=_POLL)
            if p.is_alive():
                p.kill()
                p.join(timeout=_POLL)
        for q in (*self._tasks, *self._outs):
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


__all__ = ["MAX_AUTO_WORKERS", "DecodePool", "auto_decode_workers"]
