"""bfloat16 vs float32 maps: relative L2, mask agreement, motion share and score, speed.

Run: ``.venv/bin/python benchmarks/precision.py`` (the trained ``synthetic-motion`` on 4 generated
clips and the trained I3D on the first 16 frames of ``examples/big_buck_bunny_stretch.mp4``;
needs ``make weights``). Prints one Markdown row per model and method (sigma = 1).
"""

from __future__ import annotations

import time

import numpy as np
import torch

import motion_relevance as mr
from motion_relevance.synthetic import generate
from motion_relevance.video import read_video

METHODS = ("saliency", "gradcam", "lrp_epsilon_plus_flat")


def compare(name: str, model: torch.nn.Module, spec: mr.InputSpec, x: torch.Tensor) -> None:
    for method in METHODS:
        maps, seconds = {}, {}
        for precision in ("float32", "bf16"):
            mr.explain(model, x[:1], method, spec=spec, precision=precision)  # warm-up
            start = time.perf_counter()
            maps[precision] = mr.explain(model, x, method, spec=spec, precision=precision).relevance
            seconds[precision] = time.perf_counter() - start
        a, b = (mr.selective_relevance(maps[p], 1.0) for p in ("float32", "bf16"))
        rel = float((maps["bf16"] - maps["float32"]).norm() / maps["float32"].norm())
        agree = float((a.mask == b.mask).float().mean())
        d_share = float((a.motion_share - b.motion_share).abs().max())
        d_score = float((a.motion_score - b.motion_score).abs().max())
        print(f"| {name} | {method} | {rel:.3f} | {agree:.4f} | {d_share:.4f} | {d_score:.4f} | "
              f"{seconds['float32'] / seconds['bf16']:.2f} |", flush=True)  # fmt: skip


def main() -> None:
    print("| model, clips | method | relative L2 | mask agreement | max |d share| | max |d score| | speed bf16/fp32 |")
    print("|---|---|---|---|---|---|---|")
    model, spec = mr.load_model("synthetic-motion")
    compare("synthetic-motion, 4 synthetic clips", model, spec, spec.preprocess(generate("motion", 4, size=64).frames))
    model, spec = mr.load_model("i3d-kinetics400")
    frames = np.asarray(read_video("examples/big_buck_bunny_stretch.mp4").frames)[:16]
    compare("i3d-kinetics400, 1 real clip (16 frames)", model, spec, spec.preprocess(frames[None]))


if __name__ == "__main__":
    main()
