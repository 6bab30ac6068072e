"""Decoding ahead of the model (``batch.prefetch``): same rows, same order, bounded, and a dead
worker stops the run instead of failing videos."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from motion_relevance.batch import drop_timing, read_manifest, run_batch
from motion_relevance.batch.pipeline import BatchSettings, PreparedError, RunAborted, prepare_unit
from motion_relevance.batch.prefetch import MAX_AUTO_WORKERS, DecodePool, auto_decode_workers
from tiny_models import build_tiny

METHODS = "saliency,gradcam"


@pytest.fixture(scope="module")
def inline(dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("inline") / "store"
    return run_batch(dataset, out, model=build_tiny, methods=METHODS, threads=1, decode_workers=0)


@pytest.mark.parametrize("workers", [1, 3])
def test_decode_workers_give_the_rows_of_decoding_inline(dataset: Path, inline, tmp_path: Path, workers: int) -> None:
    result = run_batch(dataset, tmp_path / "s", model=build_tiny, methods=METHODS, threads=1,
                       decode_workers=workers, prefetch=1)  # fmt: skip
    assert drop_timing(result.rows).equals(drop_timing(inline.rows))
    assert (result.done, result.failed) == (inline.done, inline.failed) == (3, 2)
    errors = [e for e in inline.rows.column("error").to_pylist() if e is not None]
    assert any("not a video" in e or "cannot read" in e for e in errors)  # the corrupt file
    assert any("fewer than one" in e for e in errors)  # the short one


def test_units_commit_in_manifest_order_with_workers(dataset: Path, tmp_path: Path) -> None:
    seen: list[str | None] = []
    run_batch(dataset, tmp_path / "s", model=build_tiny, methods="saliency", threads=1, decode_workers=2,
              callback=lambda p: seen.append(p.video))  # fmt: skip
    assert seen[1:] == [e.video for e in read_manifest(dataset)]


def test_auto_decode_workers() -> None:
    assert auto_decode_workers(1, cores=16) == 0  # one video: nothing to overlap
    assert auto_decode_workers(10, cores=2) == 1
    assert auto_decode_workers(10, cores=1) == 1
    assert auto_decode_workers(3, cores=16) == 3
    assert auto_decode_workers(100, cores=64) == MAX_AUTO_WORKERS


def test_bad_decode_settings_are_one_line_errors(dataset: Path, tmp_path: Path) -> None:
    from motion_relevance.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="decode workers"):
        run_batch(dataset, tmp_path / "a", model=build_tiny, methods="saliency", decode_workers=-1)
    with pytest.raises(InvalidInputError, match="prefetch"):
        run_batch(dataset, tmp_path / "b", model=build_tiny, methods="saliency", prefetch=0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_pool_streams_each_video_in_order_and_reports_errors(dataset: Path) -> None:
    _, spec = build_tiny()
    settings = BatchSettings(methods=("saliency",), clip_batch=2)
    entries = read_manifest(dataset)
    with DecodePool(spec, settings, workers=2) as pool:
        for entry, chunks in pool.units(entries):
            try:
                got = [(c.windows, c.inputs) for c in chunks]
            except PreparedError as exc:
                with pytest.raises(Exception) as inline_exc:
                    list(prepare_unit(entry, spec, settings))
                assert str(exc) == str(inline_exc.value) or str(exc).endswith(str(inline_exc.value))
                continue
            want = [(c.windows, c.inputs) for c in prepare_unit(entry, spec, settings)]
            assert [w for w, _ in got] == [w for w, _ in want]
            assert all(a.equal(b) for (_, a), (_, b) in zip(got, want, strict=True))
            assert all(len(w) <= 2 for w, _ in got)


def test_a_dead_decode_worker_stops_the_run(dataset: Path) -> None:
    _, spec = build_tiny()
    settings = BatchSettings(methods=("saliency",))
    entries = read_manifest(dataset)
    with DecodePool(spec, settings, workers=1) as pool:
        os.kill(pool._procs[0].pid, signal.SIGKILL)
        pool._procs[0].join(timeout=10)
        with pytest.raises(RunAborted, match="decode worker 0 stopped"):
            for _, chunks in pool.units(entries):
                list(chunks)


def test_ray_plan_leaves_a_cpu_for_decode_tasks() -> None:
    from motion_relevance.batch import RayOptions
    from motion_relevance.batch.ray_engine import plan
    from motion_relevance.errors import InvalidInputError

    cpus = {"CPU": 8.0}
    assert plan(cpus, RayOptions(), None, 100) == (7, True)  # one CPU left for decoding
    assert plan(cpus, RayOptions(), 0, 100) == (8, False)  # decoding in the actors
    assert plan(cpus, RayOptions(cpus_per_worker=2), None, 100) == (3, True)
    assert plan(cpus, RayOptions(), None, 3) == (3, True)  # no more actors than videos
    assert plan({"CPU": 1.0}, RayOptions(), None, 5) == (1, False)  # nothing to spare: actors decode
    assert plan({"CPU": 2.0}, RayOptions(workers=2), None, 5) == (2, False)
    with pytest.raises(InvalidInputError, match="decode-workers"):
        plan({"CPU": 2.0}, RayOptions(workers=2), 1, 5)
    assert plan({"CPU": 16.0, "GPU": 2.0}, RayOptions(gpus_per_worker=1, cpus_per_worker=2), None, 50) == (2, True)
    with pytest.raises(InvalidInputError, match="GPU"):
        plan({"CPU": 16.0}, RayOptions(gpus_per_worker=1), None, 50)


def _build_unpicklable():
    import dataclasses

    model, spec = build_tiny()
    return model, dataclasses.replace(spec, cam_reshape=lambda t: t)


def test_a_spec_that_cannot_be_pickled_decodes_inline_or_is_refused(dataset: Path, tmp_path: Path, inline) -> None:
    from motion_relevance.errors import InvalidInputError

    auto = run_batch(dataset, tmp_path / "auto", model=_build_unpicklable, methods=METHODS, threads=1)
    assert drop_timing(auto.rows).equals(drop_timing(inline.rows))
    with pytest.raises(InvalidInputError, match="decode workers need a model InputSpec that can be pickled"):
        run_batch(dataset, tmp_path / "asked", model=_build_unpicklable, methods=METHODS, decode_workers=2)
    assert not (tmp_path / "asked").exists()
