"""Batch throughput: does the pipeline keep the model busy? Local and Ray engines, one run.

Run: ``.venv/bin/python benchmarks/bench_batch.py`` (defaults: 12 synthetic videos of 64 frames
at 256x192, the ``synthetic-motion`` preset, saliency + gradcam, 1 decode worker and 1 torch
thread for the model: the shape of a 2-core machine).

For each engine it measures, in clips (windows of the model's length) per second:

* **decode only**: the videos decoded and preprocessed by the same decode workers (local: the
  ``DecodePool`` processes; Ray: the ``decode_unit`` tasks), nothing explained;
* **explain only**: the same clips, already decoded and held in memory, explained by the same
  model process (local: ``UnitProcessor`` in this process; Ray: the ``UnitActor``s);
* **pipeline**: ``run_batch`` end to end (model building, decoding, explaining, committing).

The ratio pipeline / min(decode only, explain only) is the share of the slower stage's speed the
pipeline keeps: 1.0 is perfect overlap, 0.5 what running the two stages one after the other
gives when they are equally fast. Starting Ray itself is not counted (on a cluster it is up).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import multiprocessing.synchronize
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from motion_relevance.batch import RayOptions, read_manifest, run_batch
from motion_relevance.batch.pipeline import BatchSettings, ModelSource, UnitProcessor
from motion_relevance.batch.prefetch import DecodePool
from motion_relevance.models.spec import InputSpec
from motion_relevance.video import write_video


def make_manifest(folder: Path, videos: int, frames: int, size: int, height: int | None = None) -> Path:
    """``videos`` synthetic clips (a bright square moving over noise) and their manifest."""
    rng = np.random.default_rng(0)
    height = height or size
    lines = ["path,label"]
    for i in range(videos):
        clip = rng.integers(0, 80, size=(frames, height, size, 3), dtype=np.uint8)
        side = max(8, height // 4)
        for t in range(frames):
            x = (3 * t + 7 * i) % (size - side)
            clip[t, height // 3 : height // 3 + side, x : x + side] = (230, 210, 60)
        write_video(folder / f"v{i}.mp4", clip, fps=25.0)
        lines.append(f"v{i}.mp4,class{i % 3}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _local(manifest: Path, folder: Path, args: argparse.Namespace, settings: BatchSettings) -> dict[str, float]:
    source = ModelSource.of(args.model)
    entries = read_manifest(manifest)
    spec = source.load()[1]

    start = time.perf_counter()
    decoded = {}
    with DecodePool(spec, settings, args.decode_workers) as pool:
        for entry, chunks in pool.units(entries):
            decoded[entry.row] = list(chunks)
    decode_s = time.perf_counter() - start
    clips = sum(len(c.windows) for chunks in decoded.values() for c in chunks)

    processor = UnitProcessor(source, settings)
    processor.process(entries[0], decoded[entries[0].row])  # warm-up (first-call costs)
    start = time.perf_counter()
    for entry in entries:
        processor.process(entry, decoded[entry.row])
    explain_s = time.perf_counter() - start

    contended = _decode_beside_busy_model(spec, settings, args, entries, processor, decoded, clips)

    start = time.perf_counter()
    result = run_batch(manifest, folder / "local", model=args.model, methods=args.methods, threads=args.threads,
                       decode_workers=args.decode_workers, clip_batch=args.clip_batch)  # fmt: skip
    pipeline_s = time.perf_counter() - start
    assert result.failed == 0
    return {"clips": clips, "decode": clips / decode_s, "explain": clips / explain_s, "pipeline": clips / pipeline_s,
            "contended": contended}  # fmt: skip


def _busy_model(processor: UnitProcessor, entries: list, decoded: dict, stop: mp.synchronize.Event) -> None:
    """Explain the decoded clips over and over until ``stop`` (the model's load, without a pipeline)."""
    while not stop.is_set():
        for entry in entries:
            processor.process(entry, decoded[entry.row])
            if stop.is_set():
                return


def _decode_beside_busy_model(
    spec: InputSpec,
    settings: BatchSettings,
    args: argparse.Namespace,
    entries: list,
    processor: UnitProcessor,
    decoded: dict,
    clips: int,
) -> float:
    """Decode-only throughput while another process explains non-stop: what decoding keeps of its
    speed when the other core is busy. On a machine whose cores slow each other down (shared
    caches, a host's other guests) this, not decode only, bounds a decode-bound pipeline; it tells
    the pipeline's losses from the machine's."""
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    busy = ctx.Process(target=_busy_model, args=(processor, entries, decoded, stop), daemon=True)
    busy.start()
    try:
        time.sleep(0.5)  # the busy process is past its first call
        start = time.perf_counter()
        with DecodePool(spec, settings, args.decode_workers) as pool:
            for _, chunks in pool.units(entries):
                for _ in chunks:
                    pass
        return clips / (time.perf_counter() - start)
    finally:
        stop.set()
        busy.join(timeout=30)


def _ray(manifest: Path, folder: Path, args: argparse.Namespace, settings: BatchSettings) -> dict[str, float]:
    import ray

    from motion_relevance.batch.ray_engine import (
        UnitActor,
        decode_stage_args,
        decode_unit,
        explain_stage_args,
    )

    source = ModelSource.of(args.model)
    spec = source.load()[1]
    entries = read_manifest(manifest)
    items = [{"row": e.row, "video": e.video, "path": e.path, "label": e.label} for e in entries]
    ray.data.DataContext.get_current().enable_progress_bars = False

    start = time.perf_counter()
    decoded = (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(decode_unit, fn_kwargs={"spec": spec, "settings": settings},
                     **decode_stage_args(args.decode_workers))
        .materialize()
    )
    decode_s = time.perf_counter() - start

    start = time.perf_counter()
    out = decoded.map_batches(
        UnitActor,
        fn_constructor_kwargs={"source": source, "settings": settings, "maps_root": None, "tmp_root": None},
        **explain_stage_args(args.workers, args.threads, 0),
    ).take_all()
    explain_s = time.perf_counter() - start  # includes the actors' start (model building), as the pipeline does
    assert len(out) == len(entries)

    start = time.perf_counter()
    result = run_batch(manifest, folder / "ray", model=args.model, methods=args.methods, threads=args.threads,
                       engine="ray", decode_workers=args.decode_workers, clip_batch=args.clip_batch,
                       ray=RayOptions(workers=args.workers, cpus_per_worker=args.threads))  # fmt: skip
    pipeline_s = time.perf_counter() - start
    assert result.failed == 0
    clips = result.clips // len(settings.methods)
    return {"clips": clips, "decode": clips / decode_s, "explain": clips / explain_s, "pipeline": clips / pipeline_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--model", default="synthetic-motion")
    parser.add_argument("--methods", default="saliency,gradcam")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the model's process or actor")
    parser.add_argument("--decode-workers", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="Ray actors")
    parser.add_argument("--clip-batch", type=int, default=8)
    parser.add_argument("--engines", default="local,ray")
    args = parser.parse_args()

    settings = BatchSettings(methods=tuple(args.methods.split(",")), clip_batch=args.clip_batch, threads=args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = make_manifest(folder, args.videos, args.frames, args.width, args.height)
        if "local" in args.engines:
            results["local"] = _local(manifest, folder, args, settings)
        if "ray" in args.engines:
            import ray

            ray.init(num_cpus=args.threads * args.workers + args.decode_workers, include_dashboard=False,
                     logging_level="ERROR")  # fmt: skip
            try:
                results["ray"] = _ray(manifest, folder, args, settings)
            finally:
                ray.shutdown()

    print(f"{args.videos} videos x {args.frames} frames at {args.width}x{args.height}, {args.model}, methods "
          f"{args.methods}; {args.decode_workers} decode worker(s), {args.threads} model thread(s); "
          f"{os.cpu_count()} cores")  # fmt: skip
    print("| engine | clips | decode only (clips/s) | explain only (clips/s) | pipeline (clips/s) | pipeline / min "
          "| decode beside a busy model (clips/s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for engine, r in results.items():
        ratio = r["pipeline"] / min(r["decode"], r["explain"])
        contended = f"{r['contended']:.2f}" if "contended" in r else "–"
        print(f"| {engine} | {r['clips']} | {r['decode']:.2f} | {r['explain']:.2f} | {r['pipeline']:.2f} | {ratio:.2f} "
              f"| {contended} |")  # fmt: skip


if __name__ == "__main__":
    main()
