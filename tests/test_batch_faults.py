"""Fault injection on batch runs: a worker that hangs, Ctrl-C, a second run on the same store,
the disk filling mid-commit, and workers started after the caller has used FFmpeg. Each case ends with nothing lost and
nothing doubled: a resumed run gives exactly the rows of an uninterrupted one.

Kept elsewhere, with the behaviour they pin: a killed decode worker (``test_batch_prefetch``),
kill -9 at random points (``test_batch_kill``), a Ray actor killed mid-video
(``test_batch_ray``), the disk filling while maps are written and a corrupt video in the middle
of a manifest (``test_batch``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from motion_relevance import read_video
from motion_relevance.batch import ResultStore, drop_timing, read_results, run_batch
from motion_relevance.batch.pipeline import RunAborted
from motion_relevance.cli import main
from tiny_models import build_tiny, write_black_clip, write_clip

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

TESTS = Path(__file__).resolve().parent
METHODS = "saliency,gradcam"


def _videos(folder: Path, names: list[str]) -> Path:
    """Moving-square clips named ``names`` (``black*`` ones all black) and their manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        if name.startswith("black"):
            write_black_clip(folder / name, 8)
        else:
            write_clip(folder / name, 8 + i, seed=20 + i)
    manifest = folder / "manifest.csv"
    manifest.write_text("path,label\n" + "".join(f"{n},left\n" for n in names))
    return manifest


def _rows(store: Path) -> pa.Table:
    return drop_timing(read_results(store)).sort_by([("row", "ascending"), ("method", "ascending"), ("clip", "ascending")])


def test_workers_started_after_the_caller_rescaled_frames_finish(dataset: Path, tmp_path: Path) -> None:
    # FFmpeg's rescaler in the caller first (PyAV 18.1.1 deadlocks a plain fork child after it)
    read_video(dataset.parent / "v0.mp4", max_side=16)
    inline = run_batch(dataset, tmp_path / "inline", model=build_tiny, methods=METHODS, threads=1, decode_workers=0)
    ahead = run_batch(dataset, tmp_path / "ahead", model=build_tiny, methods=METHODS, threads=1,
                      decode_workers=2, stall_timeout=60)
    assert (ahead.done, ahead.failed) == (inline.done, inline.failed)
    assert _rows(ahead.store).equals(_rows(inline.store))


def test_a_hung_decode_worker_is_one_line_and_the_run_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = ["a.mp4", "black.mp4", "b.mp4"]
    manifest = _videos(tmp_path / "videos", names)
    store = tmp_path / "store"
    args = ["batch", str(manifest), "--model", "tiny_models:build_tiny_hanging", "--method", METHODS,
            "--out", str(store), "--threads", "1", "--decode-workers", "2"]
    started = time.monotonic()
    assert main([*args, "--stall-timeout", "8"]) == 2
    waited = time.monotonic() - started
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: decode worker 1") and "no progress for 8 s" in err and "'black.mp4'" in err
    assert "--resume" in err and len(err.splitlines()) == 1
    assert waited < 60
    assert len(ResultStore(store).finished()) == 1  # a.mp4, committed before the hang

    write_clip(tmp_path / "videos" / "black.mp4", 9, seed=21)  # the video fixed
    assert main([*args, "--resume"]) == 0
    reference = run_batch(manifest, tmp_path / "reference", model="tiny_models:build_tiny_hanging",
                          methods=METHODS, threads=1, decode_workers=0)
    assert _rows(store).equals(_rows(reference.store))


def test_the_stall_timeout_must_be_positive(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "-1", "nan", "inf"):
        assert main(["batch", str(dataset), "--model", "tiny_models:build_tiny", "--method", "saliency",
                     "--out", str(tmp_path / bad), "--stall-timeout", bad]) == 2
        assert capsys.readouterr().err.startswith("error: stall timeout")
        assert not (tmp_path / bad).exists()


def _start(manifest: Path, store: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "motion_relevance.cli", "batch", str(manifest), "--model",
           "tiny_models:build_tiny", "--method", METHODS, "--out", str(store), "--threads", "1", *extra]
    # its own session, so a signal to its process group reaches it and its workers, as Ctrl-C does
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for_commits(proc: subprocess.Popen, store: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while not ((store / "parts").exists() and len(ResultStore(store).finished()) >= count):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the batch process committed nothing"
        time.sleep(0.01)


@pytest.mark.slow
def test_ctrl_c_keeps_the_committed_rows_exits_130_and_resumes(tmp_path: Path) -> None:
    names = [f"v{i}.mp4" for i in range(8)]
    manifest = _videos(tmp_path / "videos", names)
    reference = run_batch(manifest, tmp_path / "reference", model=build_tiny, methods=METHODS, threads=1, decode_workers=0)
    store = tmp_path / "store"
    proc = _start(manifest, store, "--decode-workers", "2")
    _wait_for_commits(proc, store, 1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err, err
    assert 1 <= len(ResultStore(store).finished()) < len(names)
    resumed = _start(manifest, store, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    assert _rows(store).equals(_rows(reference.store))


@pytest.mark.slow
def test_a_second_run_on_a_store_in_use_is_refused_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = [f"v{i}.mp4" for i in range(8)]
    manifest = _videos(tmp_path / "videos", names)
    store = tmp_path / "store"
    first = _start(manifest, store, "--decode-workers", "0")
    try:
        _wait_for_commits(first, store, 1)
        before = len(ResultStore(store).finished())
        assert main(["batch", str(manifest), "--model", "tiny_models:build_tiny", "--method", METHODS,
                     "--out", str(store), "--resume"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "another batch run" in err and len(err.splitlines()) == 1
        assert len(ResultStore(store).finished()) >= before
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err.decode()
    rows = read_results(store)
    assert len(rows) == len(set(zip(*(rows.column(c).to_pylist() for c in ("row", "method", "clip")), strict=True)))
    assert sorted(set(rows.column("video").to_pylist())) == names
    shutil.rmtree(store)


@pytest.mark.slow
def test_a_hung_ray_decode_task_stops_the_run_naming_the_video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    manifest = _videos(tmp_path / "videos", ["a.mp4", "black.mp4"])
    store = tmp_path / "store"
    # run_batch starts (and, on the error, shuts down) a Ray of its own: the hung task goes with it
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.raises(RunAborted) as error:
        run_batch(manifest, store, model="tiny_models:build_tiny_hanging", methods="saliency", threads=1,
                  engine="ray", stall_timeout=10)
    message = str(error.value)
    assert message.startswith("the Ray actors finished no video for 10 s") and "'black.mp4'" in message
    assert "--resume" in message and "\n" not in message
    assert (store / "run.json").exists()


def test_the_disk_filling_mid_commit_stops_the_run_and_a_resume_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow.parquet as pq

    from motion_relevance.batch import store as store_module

    names = [f"v{i}.mp4" for i in range(4)]
    manifest = _videos(tmp_path / "videos", names)
    reference = run_batch(manifest, tmp_path / "reference", model=build_tiny, methods=METHODS, threads=1, decode_workers=0)
    writes = {"n": 0}
    real_write = pq.write_table

    def fills_up(table: pa.Table, where, *args, **kwargs):  # the third part's file: the disk is full halfway
        writes["n"] += 1
        if writes["n"] == 3:
            with open(where, "wb") as f:
                f.write(b"PAR1 half a part")
            raise OSError(28, "No space left on device")
        return real_write(table, where, *args, **kwargs)

    monkeypatch.setattr(store_module.pq, "write_table", fills_up)
    store = tmp_path / "store"
    args = ["batch", str(manifest), "--model", "tiny_models:build_tiny", "--method", METHODS, "--out", str(store),
            "--threads", "1", "--decode-workers", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "No space left on device" in err and len(err.splitlines()) == 1
    assert len(ResultStore(store).finished()) == 2  # the half-written part left no trace
    assert not [p for p in (store / "parts").iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(store_module.pq, "write_table", real_write)
    assert main([*args, "--resume"]) == 0
    assert _rows(store).equals(_rows(reference.store))
