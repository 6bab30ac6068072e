"""What starting decode workers from a fork server (or by spawn) costs against a plain fork.

Each measurement runs in a fresh Python process, which builds a ``DecodePool`` of two workers
and reads the first video's chunks (start-up + first decode), then does the same with a second
pool in the same process (a fork server, once started, serves every later pool). Start methods
alternate, repeated; the table gives medians and the ratio to fork measured in this one run.

    .venv/bin/python benchmarks/bench_worker_start.py [--repeats 5]

Fork is measured here in a process that has decoded nothing before its workers start, the one
case where it is safe (see ``motion_relevance.runs.processes``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = r"""
import json, sys, time
sys.path.insert(0, {tests!r})
import motion_relevance.runs.processes as processes
processes.START_METHOD = {method!r}
from motion_relevance.batch import read_manifest
from motion_relevance.batch.pipeline import BatchSettings
from motion_relevance.batch.prefetch import DecodePool
from tiny_models import build_tiny

spec = build_tiny()[1]
settings = BatchSettings(methods=("saliency",))
entries = read_manifest({manifest!r})[:1]
times = []
for _ in range(2):
    t = time.perf_counter()
    with DecodePool(spec, settings, workers=2) as pool:
        for _, chunks in pool.units(entries):
            list(chunks)
        times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent / "tests"))
    from tiny_models import make_dataset

    methods = ("fork", "forkserver", "spawn")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_dataset(Path(tmp) / "videos")
        cold: dict[str, list[float]] = {m: [] for m in methods}
        warm: dict[str, list[float]] = {m: [] for m in methods}
        for r in range(args.repeats):
            for method in methods[r % 3 :] + methods[: r % 3]:  # rotate the order
                code = CHILD.format(tests=str(HERE.parent / "tests"), method=method, manifest=str(manifest))
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                first, second = json.loads(out.stdout.strip().splitlines()[-1])
                cold[method].append(first)
                warm[method].append(second)
    print(f"{'start method':<12} {'first pool (s)':>15} {'x fork':>7} {'later pool (s)':>15} {'x fork':>7}")
    base_cold, base_warm = statistics.median(cold["fork"]), statistics.median(warm["fork"])
    for m in methods:
        c, w = statistics.median(cold[m]), statistics.median(warm[m])
        print(f"{m:<12} {c:>15.3f} {c / base_cold:>7.2f} {w:>15.3f} {w / base_warm:>7.2f}")
    print(f"({args.repeats} repeats, medians; 2 workers, start-up + the first video's chunks)")


if __name__ == "__main__":
    main()
