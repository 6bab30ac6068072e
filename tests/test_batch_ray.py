"""The Ray engine on a local Ray instance (2 CPUs): the same store as the local engine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from motion_relevance.batch import (
    RayOptions,
    drop_timing,
    read_manifest,
    read_maps,
    read_results,
    run_batch,
)
from motion_relevance.batch.ray_engine import decode_stage_args, explain_stage_args
from motion_relevance.errors import MotionRelevanceError
from tiny_models import make_dataset

ray = pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parent
MODEL = "tiny_models:build_tiny"
METHODS = "saliency,gradcam"


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray; yields the marker path of ``tiny_models.build_tiny_dying_once``."""
    if ray.is_initialized():  # pragma: no cover - another test left one running
        ray.shutdown()
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    marker = tmp_path_factory.mktemp("ray") / "died"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "TINY_DIE_ONCE": str(marker)}},
    )
    yield marker
    ray.shutdown()


@pytest.mark.slow
def test_ray_and_local_engines_write_identical_stores(local_ray, tmp_path: Path) -> None:
    manifest = make_dataset(tmp_path / "videos")
    common = {"model": MODEL, "methods": METHODS, "save_maps": True, "threads": 1}
    local = run_batch(manifest, tmp_path / "local", **common)
    seen = []
    # one actor leaves a CPU of the two for the decode tasks: decoding runs ahead, as a stage of its own
    on_ray = run_batch(manifest, tmp_path / "ray", engine="ray", ray=RayOptions(workers=1),
                       callback=seen.append, **common)
    assert (on_ray.done, on_ray.failed, on_ray.skipped) == (local.done, local.failed, 0) == (3, 2, 0)
    assert len(seen) == 1 + 5 and seen[-1].pending == 0
    assert drop_timing(on_ray.rows).equals(drop_timing(local.rows))
    assert on_ray.summary.equals(local.summary)
    for entry in read_manifest(manifest):
        if entry.video in ("bad.mp4", "short.mp4"):
            assert not (on_ray.store / "maps.zarr" / entry.key).exists()
            continue
        for method in METHODS.split(","):
            for a, b in zip(read_maps(on_ray.store, entry.key, method), read_maps(local.store, entry.key, method), strict=True):
                np.testing.assert_array_equal(a, b)
    # a run started on Ray can be finished locally (and vice versa): same store format
    resumed = tmp_path / "resumed"
    shutil.copytree(on_ray.store, resumed)
    for part in sorted((resumed / "parts").glob("*.parquet"))[:2]:
        part.unlink()
    finished = run_batch(manifest, resumed, resume=True, **common)
    assert (finished.done + finished.failed, finished.skipped) == (2, 3)
    assert drop_timing(finished.rows).equals(drop_timing(local.rows))


@pytest.mark.slow
def test_a_failing_worker_is_one_error_and_keeps_the_store(local_ray, tmp_path: Path) -> None:
    manifest = make_dataset(tmp_path / "videos")
    out = tmp_path / "store"
    with pytest.raises(MotionRelevanceError, match=r"the Ray run failed .*rerun with --resume"):
        run_batch(manifest, out, model="tiny_models:build_tiny_outside_ray", methods="saliency",
                  engine="ray", ray=RayOptions(workers=1))
    assert (out / "run.json").exists() and not (out / "tmp").exists()


@pytest.mark.slow
def test_an_actor_killed_mid_video_loses_and_doubles_nothing(local_ray, tmp_path: Path) -> None:
    """The first actor process to run a forward pass dies there (``os._exit``): Ray restarts it
    and retries its video, or the run stops with one line and a resume finishes it."""
    manifest = make_dataset(tmp_path / "videos")
    common = {"methods": METHODS, "threads": 1}
    reference = run_batch(manifest, tmp_path / "reference", model=MODEL, **common)
    out = tmp_path / "store"
    assert not local_ray.exists()
    try:
        run_batch(manifest, out, model="tiny_models:build_tiny_dying_once", engine="ray",
                  ray=RayOptions(workers=1), **common)
    except MotionRelevanceError as exc:
        assert "--resume" in str(exc) and "\n" not in str(exc)
        run_batch(manifest, out, model="tiny_models:build_tiny_dying_once", engine="ray",
                  ray=RayOptions(workers=1), resume=True, **common)
    assert local_ray.exists(), "no actor was killed"
    assert drop_timing(read_results(out)).equals(drop_timing(reference.rows))


def _decode_pid(batch):
    return batch.append_column("decode_pid", pa.array([os.getpid()] * batch.num_rows))


class _ExplainPid:
    def __call__(self, batch):
        return batch.append_column("explain_pid", pa.array([os.getpid()] * batch.num_rows))


@pytest.mark.slow
def test_the_decode_stage_is_not_fused_into_the_actors(local_ray) -> None:
    """With one decode task at a time beside one one-CPU actor, the two stages' pools and CPUs
    match: Ray Data fuses such stages unless their remote arguments differ, and then the actor
    would decode its own videos."""
    ds = ray.data.from_items([{"row": i} for i in range(3)], override_num_blocks=3)
    ds = ds.map_batches(_decode_pid, **decode_stage_args(1))
    ds = ds.map_batches(_ExplainPid, **explain_stage_args(1, 1, 0))
    rows = list(ds.iter_rows())
    assert len(rows) == 3
    for row in rows:
        assert row["decode_pid"] != row["explain_pid"]
