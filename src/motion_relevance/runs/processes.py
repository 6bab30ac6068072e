"""How the package starts worker processes: never by a plain ``fork`` of the caller.

A forked child copies a parent that may already hold FFmpeg, torch (OpenMP), Numba or Ray thread
pools; their locks are copied in whatever state they were, with no thread left to release them,
and the child can wait on them forever (PyAV 18.1.1 rescaling frames in a forked child after its
parent did deadlocks exactly so). A fork server is a fresh interpreter that imports the worker's
module once and then forks each worker from that clean state; where a platform has none, workers
are spawned.

Both re-import the caller's ``__main__`` in every worker by default, which runs a script without an
``if __name__ == "__main__":`` guard again in each worker (and fails). The package's workers run
code of the package only, so ``workers_starting`` leaves ``__main__`` out while they start.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from multiprocessing import spawn
from typing import Any

#: A fork server where the platform has one (Linux, macOS), else spawn.
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def process_context(preload: str, module: Any = multiprocessing) -> Any:
    """The start context for workers whose code lives in module ``preload`` (imported once in
    the fork server); ``module`` is ``multiprocessing`` or ``torch.multiprocessing``."""
    ctx = module.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        ctx.set_forkserver_preload([preload])
    return ctx


@contextlib.contextmanager
def workers_starting() -> Iterator[None]:
    """While package workers start: do not re-import the caller's ``__main__`` in them."""
    original = spawn.get_preparation_data

    def without_main(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    spawn.get_preparation_data = without_main
    try:
        yield
    finally:
        spawn.get_preparation_data = original


__all__ = ["START_METHOD", "process_context", "workers_starting"]
