"""Peak memory of `explain` on a long video / on a short one, same settings. Target: <= 1.10.

The pipeline reads, explains, renders and writes window by window, so its memory must not grow
with the video's length. Each run happens in a fresh Python process and reports its own peak
resident set size (``ru_maxrss``); the ratio of the two is printed (and the times, for context).

    python benchmarks/bench_long_video.py                 # 48 vs 480 frames, 640x360
    python benchmarks/bench_long_video.py --model i3d-kinetics400 --weights '' --frames 64 --methods saliency

Default model: the synthetic-motion preset with random weights (16-frame clips, 64x64): a
small model keeps the baseline small, which makes any growth with length *more* visible.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def make_video(path: Path, frames: int, height: int, width: int, fps: float = 25.0) -> Path:
    """A synthetic clip, written frame by frame: textured background, a disc moving around."""
    from motion_relevance.video import VideoWriter

    rng = np.random.default_rng(0)
    blocks = rng.integers(30, 200, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    background = np.ascontiguousarray(blocks.repeat(16, 0).repeat(16, 1)[:height, :width])
    yy, xx = np.mgrid[:height, :width]
    with VideoWriter(path, fps) as writer:
        for i in range(frames):
            frame = background.copy()
            cy = height / 2 + height / 4 * np.sin(i / 9)
            cx = width / 2 + width / 3 * np.cos(i / 13)
            frame[(yy - cy) ** 2 + (xx - cx) ** 2 < (height / 8) ** 2] = (240, 220, 40)
            writer.write(frame)
    return path


CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[6]))
from motion_relevance.report import explain_video
t = time.perf_counter()
result = explain_video(sys.argv[1], sys.argv[2], model=sys.argv[3], weights=sys.argv[4] or None,
                       methods=sys.argv[5], sigma=1.0)
seconds = time.perf_counter() - t
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"frames": result.frames, "windows": result.windows, "seconds": seconds, "peak_mib": peak_kib / 1024}))
"""


def run(video: Path, out: Path, args: argparse.Namespace) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(video), str(out), args.model, args.weights, args.methods, str(args.threads)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"explain failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="synthetic-motion")
    parser.add_argument("--weights", default="random", help="'' for the preset's own weights")
    parser.add_argument("--methods", default="saliency,gradcam")
    parser.add_argument("--frames", type=int, default=48, help="frames of the short video")
    parser.add_argument("--factor", type=int, default=10, help="how many times longer the long video is")
    parser.add_argument("--size", default="360x640", help="HxW of the videos")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        short = make_video(d / "short.mp4", args.frames, h, w)
        long = make_video(d / "long.mp4", args.frames * args.factor, h, w)
        a = run(short, d / "out-short", args)
        b = run(long, d / "out-long", args)
    ratio = b["peak_mib"] / a["peak_mib"]
    print(f"model {args.model}, methods {args.methods}, {h}x{w} px, {args.threads} threads")
    print(f"short: {a['frames']:5d} frames, {a['windows']:3d} windows, peak RSS {a['peak_mib']:7.1f} MiB, {a['seconds']:6.1f} s")
    print(f"long:  {b['frames']:5d} frames, {b['windows']:3d} windows, peak RSS {b['peak_mib']:7.1f} MiB, {b['seconds']:6.1f} s")
    print(f"peak RSS ratio long/short: {ratio:.3f} (target <= 1.10) {'OK' if ratio <= 1.10 else 'OVER TARGET'}")
    print(json.dumps({"short": a, "long": b, "rss_ratio": ratio}))


if __name__ == "__main__":
    main()
