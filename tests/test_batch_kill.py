"""Crash safety: SIGKILL a real `motion-relevance batch` process at random points, resume, and
get exactly the rows (and maps) of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from motion_relevance.batch import drop_timing, read_manifest, read_maps, read_results, run_batch
from tiny_models import LABELS, write_clip

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

VIDEOS = 8
METHODS = "saliency,gradcam"
TESTS = Path(__file__).resolve().parent


def _dataset(folder: Path) -> Path:
    folder.mkdir()
    lines = ["path,label"]
    for i in range(VIDEOS):
        write_clip(folder / f"v{i}.mp4", 16, seed=10 + i)
        lines.append(f"v{i}.mp4,{LABELS[i % len(LABELS)]}")
    (folder / "bad.mp4").write_bytes(b"\x00garbage" * 50)
    lines.append("bad.mp4,left")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _committed(store: Path) -> int:
    parts = store / "parts"
    return sum(1 for p in parts.glob("*.parquet") if not p.name.startswith(".")) if parts.exists() else 0


def _start(manifest: Path, store: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "motion_relevance.cli", "batch", str(manifest), "--model",
           "tiny_models:build_tiny", "--method", METHODS, "--out", str(store), "--save-maps",
           "--threads", "1", "--resume"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, ready, delay: float, timeout: float = 120.0) -> bool:
    """SIGKILL ``proc`` ``delay`` s after ``ready()`` holds; False when it exited first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the batch process made no progress")
        time.sleep(0.002)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_sigkill_and_resume_give_the_rows_of_an_uninterrupted_run(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path / "videos")
    reference = run_batch(manifest, tmp_path / "reference", model="tiny_models:build_tiny",
                          methods=METHODS, save_maps=True, threads=1)
    assert reference.done == VIDEOS and reference.failed == 1
    store = tmp_path / "killed"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    units = VIDEOS + 1
    # kill points: while starting up, after a random number of committed units (with a random
    # extra delay, so the kill lands inside a unit, a part write or a maps rename), and after
    # the last unit (while consolidating)
    kills = [("startup", None, rng.uniform(0.1, 1.5))]
    kills += [("units", k, rng.uniform(0.0, 0.05)) for k in sorted(rng.sample(range(1, units), 3))]
    kills += [("end", units, rng.uniform(0.0, 0.05))]
    landed = []
    for kind, k, delay in kills:
        proc = _start(manifest, store)
        ready = (lambda: True) if k is None else (lambda k=k: _committed(store) >= k)
        if _kill_when(proc, ready, delay):
            landed.append((kind, k, round(delay, 3), _committed(store)))
        else:
            assert proc.returncode == 0, proc.stderr.read().decode()
    assert landed, f"no kill landed (seed {seed})"
    print(f"seed {seed}: kills landed at {landed}")
    final = _start(manifest, store)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()

    rows = read_results(store)
    context = f"seed {seed}, kills {landed}"
    assert drop_timing(rows).equals(drop_timing(reference.rows)), context
    keys = list(zip(*(rows.column(c).to_pylist() for c in ("row", "method", "clip")), strict=True))
    assert len(keys) == len(set(keys)), context
    assert rows.filter(pc.is_valid(rows["error"])).column("video").to_pylist() == ["bad.mp4"] * 2
    assert _committed(store) == units
    assert not (store / "tmp").exists() and not list(store.rglob(".*.tmp")), context
    for entry in read_manifest(manifest)[:VIDEOS]:
        for method in METHODS.split(","):
            got = read_maps(store, entry.key, method)
            want = read_maps(reference.store, entry.key, method)
            np.testing.assert_array_equal(got[0], want[0], err_msg=context)
            np.testing.assert_array_equal(got[1], want[1], err_msg=context)
    groups = sorted(p.name for p in (store / "maps.zarr").iterdir() if p.is_dir())
    assert groups == sorted(e.key for e in read_manifest(manifest)[:VIDEOS]), context
