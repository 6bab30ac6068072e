"""``motion-relevance demo``: I3D (Kinetics-400) explains a real clip with four methods.

The clip is ``examples/big_buck_bunny_stretch.mp4`` (32 frames of Big Buck Bunny, CC BY 3.0,
see the licence note beside it). The methods are saliency, integrated gradients (8
Gauss-Legendre steps, to keep the demo within about three minutes on two CPU cores), Grad-CAM
and LRP (epsilon / z+ / flat). The output folder holds the report, one side-by-side video per
method, the filmstrip and summary.json.
"""

from __future__ import annotations

import os
from pathlib import Path

from motion_relevance.errors import VideoError
from motion_relevance.report.pipeline import explain_video
from motion_relevance.runs import ProgressCallback

DEMO_CLIP = "big_buck_bunny_stretch.mp4"
DEMO_MODEL = "i3d-kinetics400"
DEMO_METHODS = ("saliency", "integrated_gradients", "gradcam", "lrp_epsilon_plus_flat")
DEMO_OPTIONS = {"integrated_gradients": {"n_steps": 8}}
DEMO_SIGMA = 1.0


def demo_clip() -> Path:
    """The demo's clip: ``$MOTION_RELEVANCE_DEMO_VIDEO``, else ``examples/`` of the source tree
    or of the current folder."""
    env = os.environ.get("MOTION_RELEVANCE_DEMO_VIDEO")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[3] / "examples" / DEMO_CLIP,
        Path.cwd() / "examples" / DEMO_CLIP,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise VideoError(
        f"demo clip examples/{DEMO_CLIP} not found; run the demo from a clone of the repository "
        "or set MOTION_RELEVANCE_DEMO_VIDEO to a video file"
    )


def run_demo(out_dir: str | os.PathLike[str] = "demo-output", *, progress: ProgressCallback | None = None) -> Path:
    """Run the demo into ``out_dir`` and return the path of its ``report.html``; ``progress``
    receives ``runs.Progress`` events."""
    result = explain_video(
        demo_clip(),
        out_dir,
        model=DEMO_MODEL,
        methods=DEMO_METHODS,
        sigma=DEMO_SIGMA,
        method_options=DEMO_OPTIONS,
        progress=progress,
    )
    return result.report


__all__ = ["DEMO_CLIP", "DEMO_METHODS", "DEMO_MODEL", "DEMO_OPTIONS", "demo_clip", "run_demo"]
