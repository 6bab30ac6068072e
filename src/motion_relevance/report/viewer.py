"""What the report's sigma slider computes, in Python, bit for bit like the browser does.

The HTML report stores, per method and window, the temporal derivative ``D`` and the voxel
magnitude ``M = sum_c |R|`` quantised to uint16 (``q = round(x / scale)``, ``scale = max / 65535``),
and the channel sum ``E = sum_c R`` quantised to int8 for drawing. When the slider moves, the
browser recomputes, for each window ``w``:

* ``std_w``: the unbiased std of the window's quantised ``D`` over all its ``T*H*W`` voxels,
  from exact integer sums: ``float(n*S2 - S1**2) / float(n*(n-1))``, then ``sqrt``;
* ``mask = q_D > sigma * std_w`` (the selective-relevance threshold, in quantised units);
* ``kept_w = sum(q_M * mask)`` and ``total_w = sum(q_M)`` over the frames the window owns.

The video's motion share is ``sum_w(scale_M[w] * kept_w) / sum_w(scale_M[w] * total_w)``,
accumulated window by window in float64. Every step is an exact integer sum or one IEEE
double operation in a fixed order, so ``viewer_stats`` here and the page's JavaScript give
*identical* numbers at any sigma. Against the float32 ``selective_relevance`` they differ only
for voxels within one quantisation step (max/65535) of the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from motion_relevance.checks import non_negative_float
from motion_relevance.errors import InvalidInputError
from motion_relevance.video.clips import ClipWindow

#: Levels of the uint16 quantisation of the derivative and the magnitude.
LEVELS_U16 = 65535
#: Levels of the int8 quantisation of the signed relevance (display only).
LEVELS_I8 = 127
#: The int8 relevance spans this many times the window's robust maximum (``display_max``):
#: higher values are clipped, so one huge voxel cannot flatten the rest of the map to zero.
HEADROOM = 2.0


@dataclass(frozen=True)
class ViewerWindow:
    """One window of one method, quantised as the report stores it."""

    window: ClipWindow
    derivative: np.ndarray
    """uint16 ``(T, h, w)``: quantised ``D`` of every frame of the window."""
    derivative_scale: float
    magnitude: np.ndarray
    """uint16 ``(owned, h, w)``: quantised ``sum_c |R|`` of the owned frames."""
    magnitude_scale: float
    relevance: np.ndarray
    """int8 ``(owned, h, w)``: quantised ``sum_c R`` of the owned frames (for drawing), clipped
    at ``HEADROOM * display_max``."""
    relevance_scale: float
    display_max: float
    """Robust maximum (``overlay.PERCENTILE``) of ``|sum_c R|`` over the owned frames; the report
    draws every window of a method with one scale, the method's percentile over the video."""


@dataclass(frozen=True)
class ViewerStats:
    """The slider's numbers at one sigma (see the module docstring)."""

    sigma: float
    motion_share: float
    kept: float
    """``sum_w scale_M * kept_w``."""
    total: float
    mask_voxels: int
    """Owned voxels inside the motion mask."""
    voxels: int
    """Owned voxels in all."""
    stds: tuple[float, ...]
    """Per window, std of the quantised derivative (quantised units)."""
    frame_total: np.ndarray
    """float64 ``(frames,)``: ``scale_M * sum q_M`` per owned frame, in video order."""
    frame_motion: np.ndarray
    """float64 ``(frames,)``: the same inside the mask."""


def _quantise_unsigned(x: np.ndarray) -> tuple[np.ndarray, float]:
    peak = float(x.max()) if x.size else 0.0
    scale = peak / LEVELS_U16 if peak > 0 else 1.0
    q = np.rint(x / scale)
    return np.clip(q, 0, LEVELS_U16).astype(np.uint16), scale


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


def quantise_window(
    relevance: torch.Tensor | np.ndarray,
    temporal_gradient: torch.Tensor | np.ndarray,
    window: ClipWindow,
) -> ViewerWindow:
    """Quantise one clip's relevance ``(C, T, h, w)`` and derivative ``(1, T, h, w)`` or ``(T, h, w)``."""
    from motion_relevance.report.overlay import robust_max

    r = _as_numpy(relevance)
    d = _as_numpy(temporal_gradient)
    if r.ndim != 4:
        raise InvalidInputError(f"relevance must be (C, T, H, W) for one clip, got {r.shape}")
    d = d.reshape(d.shape[-3:])
    if d.shape != r.shape[1:] or d.shape[0] != window.length:
        raise InvalidInputError(
            f"derivative {d.shape} and relevance {r.shape} do not match a {window.length}-frame window"
        )
    if (d < 0).any():
        raise InvalidInputError("the viewer needs the absolute temporal derivative (derivative='abs')")
    owned = r[:, window.owned]
    q_d, d_scale = _quantise_unsigned(d)
    q_m, m_scale = _quantise_unsigned(np.abs(owned).sum(axis=0))
    e = owned.sum(axis=0)
    peak = float(np.abs(e).max()) if e.size else 0.0
    display_max = robust_max(e) if peak > 0 else 1.0
    e_scale = min(peak, HEADROOM * display_max) / LEVELS_I8 if peak > 0 else 1.0
    q_e = np.clip(np.rint(e / e_scale), -LEVELS_I8, LEVELS_I8).astype(np.int8)
    return ViewerWindow(
        window=window,
        derivative=q_d,
        derivative_scale=d_scale,
        magnitude=q_m,
        magnitude_scale=m_scale,
        relevance=q_e,
        relevance_scale=e_scale,
        display_max=display_max,
    )


def quantised_std(q: np.ndarray) -> float:
    """Unbiased std of integer data from exact integer sums (0 for fewer than 2 values)."""
    n = int(q.size)
    if n < 2:
        return 0.0
    flat = q.reshape(-1).astype(np.uint64)
    s1 = int(flat.sum(dtype=np.uint64))
    s2 = int((flat * flat).sum(dtype=np.uint64))
    var = float(n * s2 - s1 * s1) / float(n * (n - 1))
    return math.sqrt(var)


def check_sigma(sigma: float) -> float:
    return non_negative_float("sigma", sigma)


def window_mask(vw: ViewerWindow, sigma: float, std: float | None = None) -> np.ndarray:
    """bool ``(owned, h, w)``: the viewer's motion mask of one window's owned frames."""
    std = quantised_std(vw.derivative) if std is None else std
    threshold = check_sigma(sigma) * std
    return vw.derivative[vw.window.owned] > threshold


def viewer_stats(windows: Sequence[ViewerWindow], sigma: float) -> ViewerStats:
    """The numbers the report's slider shows at ``sigma`` (identical to the browser's)."""
    sigma = check_sigma(sigma)
    kept = total = 0.0
    mask_voxels = voxels = 0
    stds: list[float] = []
    frame_total: list[np.ndarray] = []
    frame_motion: list[np.ndarray] = []
    for vw in windows:
        std = quantised_std(vw.derivative)
        stds.append(std)
        mask = window_mask(vw, sigma, std)
        m = vw.magnitude.astype(np.int64)
        per_frame_total = m.sum(axis=(1, 2))
        per_frame_kept = (m * mask).sum(axis=(1, 2))
        kept += vw.magnitude_scale * int(per_frame_kept.sum())
        total += vw.magnitude_scale * int(per_frame_total.sum())
        mask_voxels += int(mask.sum())
        voxels += int(mask.size)
        frame_total.append(vw.magnitude_scale * per_frame_total.astype(np.float64))
        frame_motion.append(vw.magnitude_scale * per_frame_kept.astype(np.float64))
    return ViewerStats(
        sigma=sigma,
        motion_share=kept / total if total > 0 else 0.0,
        kept=kept,
        total=total,
        mask_voxels=mask_voxels,
        voxels=voxels,
        stds=tuple(stds),
        frame_total=np.concatenate(frame_total) if frame_total else np.zeros(0),
        frame_motion=np.concatenate(frame_motion) if frame_motion else np.zeros(0),
    )


__all__ = [
    "HEADROOM",
    "LEVELS_I8",
    "LEVELS_U16",
    "ViewerStats",
    "ViewerWindow",
    "check_sigma",
    "quantise_window",
    "quantised_std",
    "viewer_stats",
    "window_mask",
]
