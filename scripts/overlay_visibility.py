"""How much of each method's map the report's overlays show: the share of the explained voxels
drawn at an opacity of at least 0.2, before and after issue 12's display change.

Before: each window scaled by its own 99th percentile of ``|sum_c R|``, opacity
``0.75 * |x| ** 0.8`` (the browser's int8 map quantised by the window's peak). Now: one scale per
method over the video (``overlay.DisplayScale``, 99.5th percentile), the report's int8 maps and
``overlay.colorize``. Usage: ``python scripts/overlay_visibility.py [VIDEO] [MODEL]``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import motion_relevance as mr
from motion_relevance.report.overlay import DisplayScale, colorize, robust_max
from motion_relevance.report.viewer import quantise_window
from motion_relevance.video import iter_clips

LEVEL = 0.2
METHODS = (("saliency", {}), ("integrated_gradients", {"n_steps": 4}), ("gradcam", {}))


def main(video: str = "examples/big_buck_bunny_stretch.mp4", model_name: str = "synthetic-motion") -> None:
    torch.manual_seed(0)
    model, spec = mr.load_model(model_name)
    for method, options in METHODS:
        before, stored = [], []
        scale = DisplayScale()
        for window, frames in iter_clips(video, spec, quiet=True):
            rel = mr.explain(model, spec.preprocess(frames), method, **options).relevance[0]
            e = rel.sum(0)[window.owned].numpy()
            scale.add(e)
            peak = float(np.abs(e).max()) or 1.0
            shown = np.rint(e / (peak / 127)) * (peak / 127)  # the earlier int8 map
            before.append(0.75 * np.clip(np.abs(shown) / robust_max(e, 99.0), 0, 1) ** 0.8)
            stored.append(quantise_window(rel, mr.selective_relevance(rel[None]).temporal_gradient[0], window))
        vmax = scale.value()
        after = [colorize(v.relevance.astype(np.float32) * v.relevance_scale, vmax=vmax)[..., 3] for v in stored]

        def share(maps: list[np.ndarray]) -> float:
            return float(np.mean(np.concatenate([m.ravel() for m in maps]) >= LEVEL))

        print(f"{method:22s} voxels at opacity >= {LEVEL}: before {share(before):.3f}, now {share(after):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
