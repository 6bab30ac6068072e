"""`motion-relevance evaluate --quick` end to end, real-clip part (motion score on moving and
frozen clips, optical-flow precision) on the example clip with the real I3D (needs ``motion-relevance weights fetch i3d-kinetics400``; ``make test`` runs it)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from motion_relevance.evidence.benchmark import example_videos
from motion_relevance.evidence.files import FILES
from motion_relevance.models import weights as wts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = [
    pytest.mark.weights,
    pytest.mark.slow,
    pytest.mark.skipif(
        not wts.is_cached("i3d-kinetics400"),
        reason="I3D weights not in the cache; run `motion-relevance weights fetch i3d-kinetics400`",
    ),
    pytest.mark.skipif(not example_videos(EXAMPLES), reason="no example videos in examples/"),
]


def test_quick_evaluation_with_real_clips(tmp_path: Path) -> None:
    from motion_relevance.cli import main

    out = tmp_path / "quick"
    videos = list(example_videos(EXAMPLES))[:1]
    assert main(["evaluate", "--quick", "--videos", *videos, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    flow = [r for r in rows if r["section"] == "real"]
    assert {r["metric"] for r in flow} >= {"flow_precision_base", "flow_precision_selective",
                                           "motion_score", "frozen_motion_score",
                                           "flow_mask_fraction"}
    for r in flow:
        if r["value"]:
            assert 0.0 <= float(r["value"]) <= 1.0, r
    assert all(r["model"] == "i3d-kinetics400" for r in flow)
    base = [float(r["value"]) for r in flow if r["metric"] == "flow_precision_base"]
    assert base and not any(math.isnan(v) for v in base)
    assert "skipped" not in (out / "results.md").read_text()
