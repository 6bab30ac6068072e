"""What measuring the motion reliance adds to `explain`: the demo (I3D, the example clip,
saliency) with ``reliance=0`` and with the default 8 frame orders, alternating, in one run.

    .venv/bin/python benchmarks/bench_reliance.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--method", default="saliency")
    args = parser.parse_args()
    from motion_relevance.report import explain_video
    from motion_relevance.report.demo import DEMO_MODEL, demo_clip

    times: dict[int, list[float]] = {0: [], 8: []}
    with tempfile.TemporaryDirectory() as tmp:
        explain_video(demo_clip(), Path(tmp) / "warm", model=DEMO_MODEL, methods=args.method, reliance=0)
        for r in range(args.repeats):
            for k in ((0, 8) if r % 2 == 0 else (8, 0)):
                t = time.perf_counter()
                explain_video(demo_clip(), Path(tmp) / f"{r}-{k}", model=DEMO_MODEL, methods=args.method, reliance=k)
                times[k].append(time.perf_counter() - t)
    base, with_reliance = statistics.median(times[0]), statistics.median(times[8])
    print(f"explain_video, {args.method}, I3D, the demo clip (medians of {args.repeats}):")
    print(f"  reliance 0: {base:.1f} s   reliance 8: {with_reliance:.1f} s   ratio {with_reliance / base:.2f}")


if __name__ == "__main__":
    main()
