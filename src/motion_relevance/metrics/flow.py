"""Optical-flow precision: on real clips without ground truth, optical flow stands in for it.

OpenCV's Farneback flow is computed between consecutive frames; a frame's *flow mask* is where
the flow magnitude exceeds that frame's standard deviation of magnitudes. An explanation is
thresholded the same way (``sum_c |R|`` above its per-clip standard deviation) and its
precision is TP / (TP + FP) against the flow mask. The selective explanation is the thresholded
base explanation restricted to the selective-relevance mask, so both are judged on the same
voxels and the comparison asks only whether the mask removes more false than true positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from motion_relevance.errors import InvalidInputError
from motion_relevance.metrics.precision import as_voxel_mask, voxel_magnitude

#: Farneback parameters (OpenCV's documented example values).
FARNEBACK = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}


def flow_magnitude(frames: np.ndarray) -> np.ndarray:
    """Farneback flow magnitude ``(T, H, W)`` of uint8 RGB frames ``(T, H, W, 3)``.

    Frame ``t`` gets the flow from ``t`` to ``t + 1`` (located on frame ``t``'s pixels); the
    last frame gets the flow from it back to the previous frame.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InvalidInputError(
            f"frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} {frames.shape}"
        )
    if frames.shape[0] < 2:
        raise InvalidInputError(f"optical flow needs at least 2 frames, got {frames.shape[0]}")
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    out = np.empty(frames.shape[:3], dtype=np.float32)
    for t in range(len(grey)):
        nxt = t + 1 if t + 1 < len(grey) else t - 1
        flow = cv2.calcOpticalFlowFarneback(grey[t], grey[nxt], None, **FARNEBACK)
        out[t] = np.hypot(flow[..., 0], flow[..., 1])
    return out


def flow_mask(frames: np.ndarray) -> np.ndarray:
    """bool ``(T, H, W)``: flow magnitude above its per-frame standard deviation."""
    mag = flow_magnitude(frames)
    std = mag.reshape(mag.shape[0], -1).std(axis=1, ddof=1)
    return mag > std[:, None, None]


def threshold_explanation(relevance: torch.Tensor) -> torch.Tensor:
    """bool ``(N, T, H, W)``: voxels whose ``sum_c |R|`` exceeds its per-clip std."""
    mag = voxel_magnitude(relevance)
    std = mag.reshape(mag.shape[0], -1).std(dim=1, correction=1)
    return mag > std.view(-1, 1, 1, 1)


@dataclass(frozen=True)
class FlowPrecision:
    """TP / (TP + FP) against the flow mask, ``(N,)``, NaN where nothing is positive."""

    base: torch.Tensor
    selective: torch.Tensor
    base_positives: torch.Tensor
    selective_positives: torch.Tensor


def _precision(positive: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    tp = (positive & truth).sum(dim=(1, 2, 3)).double()
    p = positive.sum(dim=(1, 2, 3)).double()
    return torch.where(p > 0, tp / p.clamp_min(1.0), torch.nan)


def flow_precision(
    relevance: torch.Tensor,
    flow: torch.Tensor | np.ndarray,
    selective_mask: torch.Tensor,
) -> FlowPrecision:
    """Precision of the thresholded base explanation and of its selective part against
    ``flow`` masks ``(N, T, H, W)`` (see the module docstring)."""
    truth = as_voxel_mask(flow, relevance)
    sel = as_voxel_mask(selective_mask, relevance)
    base_pos = threshold_explanation(relevance)
    sel_pos = base_pos & sel
    return FlowPrecision(
        base=_precision(base_pos, truth),
        selective=_precision(sel_pos, truth),
        base_positives=base_pos.sum(dim=(1, 2, 3)),
        selective_positives=sel_pos.sum(dim=(1, 2, 3)),
    )


__all__ = [
    "FARNEBACK",
    "FlowPrecision",
    "flow_magnitude",
    "flow_mask",
    "flow_precision",
    "threshold_explanation",
]
