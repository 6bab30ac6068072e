"""Batch throughput: clips per second, local engine vs Ray engine, same manifest, same run.

Run: ``.venv/bin/python benchmarks/bench_batch.py`` (defaults: 16 synthetic videos of 48 frames
at 64x64, the ``synthetic-motion`` C3D with random weights, saliency + gradcam). A "clip" is one
row of the store: one clip explained by one method. The local engine runs one process with
``--threads`` torch threads (default: all cores); Ray runs ``--workers`` actors with
``--threads / --workers`` threads each on a local Ray with as many CPUs. Starting Ray itself is
timed apart (on a cluster it is already up); both runs are otherwise end to end (model building,
actor start-up, decoding, explaining, committing, consolidating). "compute" is the sum of the
rows' ``seconds`` (time inside explain + selective). The ratio ray / local is the throughput
Ray keeps on one machine (< 1: slower than local).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from motion_relevance.batch import BatchResult, RayOptions, run_batch
from motion_relevance.video import write_video


def make_manifest(folder: Path, videos: int, frames: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    lines = ["path,label"]
    for i in range(videos):
        clip = rng.integers(0, 80, size=(frames, size, size, 3), dtype=np.uint8)
        for t in range(frames):
            x = (3 * t + 7 * i) % (size - 16)
            clip[t, 20:36, x : x + 16] = (230, 210, 60)
        write_video(folder / f"v{i}.mp4", clip, fps=25.0)
        lines.append(f"v{i}.mp4,class{i % 3}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def compute_seconds(result: BatchResult) -> float:
    return float(sum(result.rows.column("seconds").to_pylist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--model", default="synthetic-motion")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--methods", default="saliency,gradcam")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import ray

    per_worker = max(1, args.threads // args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = make_manifest(folder, args.videos, args.frames, args.size)
        common = {"model": args.model, "weights": args.weights, "methods": args.methods}

        start = time.perf_counter()
        local = run_batch(manifest, folder / "local", threads=args.threads, **common)
        local_s = time.perf_counter() - start

        start = time.perf_counter()
        ray.init(num_cpus=args.threads, include_dashboard=False, logging_level="ERROR")
        ray_init_s = time.perf_counter() - start
        try:
            start = time.perf_counter()
            on_ray = run_batch(
                manifest,
                folder / "ray",
                threads=per_worker,
                engine="ray",
                ray=RayOptions(workers=args.workers, cpus_per_worker=per_worker),
                **common,
            )
            ray_s = time.perf_counter() - start
        finally:
            ray.shutdown()

    assert on_ray.clips == local.clips, "the engines disagree on the rows"
    clips = local.clips
    print(f"{args.videos} videos x {args.frames} frames at {args.size}x{args.size}, {args.model}, "
          f"methods {args.methods}: {clips} clips; {os.cpu_count()} cores")
    print(f"local ({args.threads} threads):           {clips / local_s:6.2f} clips/s ({local_s:.1f} s, "
          f"compute {compute_seconds(local):.1f} s)")
    print(f"ray   ({args.workers} actors x {per_worker} threads): {clips / ray_s:6.2f} clips/s ({ray_s:.1f} s, "
          f"compute {compute_seconds(on_ray):.1f} s; ray.init {ray_init_s:.1f} s not counted)")
    print(f"ratio ray / local: {local_s / ray_s:.2f}")


if __name__ == "__main__":
    main()
