"""Dataset-scale runs: a manifest of videos -> per-clip rows and a per-class summary, in a
crash-safe, resumable store, on this machine or on a Ray cluster.

    result = run_batch("videos.csv", "store", model="i3d-kinetics400",
                       methods=["integrated_gradients"], sigma=1.0, resume=True)
    result.summary            # mean motion share per (method, label)
    rows = read_results("store")

See ``docs/batch.md``.
"""

from __future__ import annotations

from motion_relevance.batch.manifest import VideoEntry, read_manifest
from motion_relevance.batch.maps import read_maps
from motion_relevance.batch.pipeline import BatchSettings, ModelSource
from motion_relevance.batch.runner import BatchProgress, BatchResult, RayOptions, run_batch
from motion_relevance.batch.store import ROW_SCHEMA, ResultStore, drop_timing, read_results
from motion_relevance.batch.summary import summarize

__all__ = [
    "ROW_SCHEMA",
    "BatchProgress",
    "BatchResult",
    "BatchSettings",
    "ModelSource",
    "RayOptions",
    "ResultStore",
    "VideoEntry",
    "drop_timing",
    "read_manifest",
    "read_maps",
    "read_results",
    "run_batch",
    "summarize",
]
