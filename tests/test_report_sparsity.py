"""The report's per-method numbers against a computation that does not share the report's code.

``explain_video`` writes ``summary.json`` from the float pipeline; the report file stores the
quantised windows that the browser viewer reads. The viewer's Python reference
(``viewer_stats``) counts the selective mask from the stored data on its own path, so the
summary's sparsity and mask share can be checked against it: for saliency on this model every
voxel is non-zero, so sparsity (non-zero voxels of the motion part / of the base) is the share
of voxels in the mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from motion_relevance.models.spec import InputSpec
from motion_relevance.report import explain_video, read_report, viewer_stats
from motion_relevance.video import write_video


class SmallNet(nn.Module):
    """Two 3-D convolutions with smooth activations (no exact zeros in the gradient), 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv3d(3, 6, 3, padding=1)
        self.act1 = nn.Tanh()
        self.conv2 = nn.Conv3d(6, 8, 3, padding=1)
        self.act2 = nn.Tanh()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act2(self.conv2(self.act1(self.conv1(x))))).flatten(1))


SPEC = InputSpec(frames=6, size=(24, 24), labels=("a", "b", "c"), cam_layer="conv2")


def moving_square(t: int = 12, h: int = 24, w: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    blocks = rng.integers(40, 120, size=(h // 8, w // 8, 3), dtype=np.uint8)
    frames = np.repeat(blocks.repeat(8, 0).repeat(8, 1)[None], t, axis=0)
    for i in range(t):
        frames[i, 8:16, 2 + 2 * i : 10 + 2 * i] = (230, 200, 40)
    return np.ascontiguousarray(frames)


@pytest.mark.parametrize("sigma", [0.5, 1.5])
def test_summary_sparsity_is_the_mask_share_the_stored_report_gives(tmp_path: Path, sigma: float) -> None:
    clip = tmp_path / "square.mp4"
    write_video(clip, moving_square(), 10)
    out = tmp_path / "out"
    explain_video(clip, out, model=SmallNet().eval(), spec=SPEC, methods="saliency", sigma=sigma)
    summary = json.loads((out / "summary.json").read_text())["methods"]["saliency"]
    stats = viewer_stats(read_report(out / "report.html").windows["saliency"], sigma)
    share = stats.mask_voxels / stats.voxels
    assert abs(share - 0.5) > 0.05  # far from 1 - share: a flipped ratio cannot pass
    assert summary["sparsity"] == pytest.approx(share, abs=5e-3)
    assert summary["motion_share"] == pytest.approx(stats.motion_share, abs=5e-3)
