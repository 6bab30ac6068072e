"""The demo's pieces with the real I3D (needs `motion-relevance weights fetch i3d-kinetics400`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from motion_relevance.models import weights
from motion_relevance.report import explain_video, read_report, viewer_stats
from motion_relevance.report.demo import DEMO_METHODS, DEMO_MODEL, demo_clip
from motion_relevance.video import probe

pytestmark = [pytest.mark.weights, pytest.mark.slow]


def test_demo_clip_ships_with_its_licence() -> None:
    clip = demo_clip()
    info = probe(clip)
    assert (info.num_frames, info.fps, info.width, info.height) == (32, 25.0, 640, 360)
    licence = (clip.parent / "LICENSE-big_buck_bunny.txt").read_text()
    assert "CC BY 3.0" in licence and "Blender Foundation" in licence
    assert set(DEMO_METHODS) >= {"saliency", "integrated_gradients", "gradcam"}
    assert any(m.startswith("lrp") for m in DEMO_METHODS)


@pytest.mark.skipif(not weights.is_cached(DEMO_MODEL), reason="run `motion-relevance weights fetch i3d-kinetics400`")
def test_i3d_explains_the_demo_clip(tmp_path: Path) -> None:
    # Half the clip and the cheapest method keep this to seconds; `make demo` runs all four.
    result = explain_video(demo_clip(), tmp_path / "out", model=DEMO_MODEL, methods="gradcam", end=0.64)
    summary = json.loads(result.summary.read_text())
    assert result.frames == 16 and result.windows == 1 and not summary["video"]["loop_padded"]
    labels = [p["label"] for p in summary["predictions"]]
    assert len(labels) == 5 and all(isinstance(label, str) and label for label in labels)
    assert summary["target"]["label"] == labels[0]
    share = summary["methods"]["gradcam"]["motion_share"]
    assert 0.0 < share < 1.0
    data = read_report(result.report)
    assert data.meta["map_size"] == [224, 224]
    assert viewer_stats(data.windows["gradcam"], 1.0).motion_share == pytest.approx(share, abs=2e-3)
