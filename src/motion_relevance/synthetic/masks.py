"""Shape masks and ground-truth motion masks of the synthetic benchmark.

Shapes are boolean sprites drawn on a small square grid; the ground-truth *motion mask* of a
clip marks every voxel whose content changes between neighbouring frames because an object
moves: where the moving object is at frame ``t``, was at ``t - 1`` or will be at ``t + 1``.
"""

from __future__ import annotations

import numpy as np

from motion_relevance.errors import InvalidInputError, UnknownNameError

#: Shapes that can carry a label (the ``appearance`` variant's classes, in label order).
LABEL_SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "cross")
#: Shapes used only for distractors that must never be confused with a label shape.
DISTRACTOR_SHAPES: tuple[str, ...] = ("ring",)
SHAPES: tuple[str, ...] = LABEL_SHAPES + DISTRACTOR_SHAPES


def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean ``(size, size)`` sprite of ``shape``, centred, filling most of the square."""
    if shape not in SHAPES:
        raise UnknownNameError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    if size < 5:
        raise InvalidInputError(f"shape size must be >= 5 pixels, got {size}")
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - c, xx - c
    r = size / 2.0
    if shape == "disc":
        return dy**2 + dx**2 <= r**2
    if shape == "square":
        return (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= 0.8 * r)
    if shape == "triangle":  # apex up, base at the bottom
        top, bottom = -r, r
        frac = (dy - top) / (bottom - top)  # 0 at the apex, 1 at the base
        return (frac >= 0) & (frac <= 1) & (np.abs(dx) <= frac * r)
    if shape == "cross":
        arm = r / 3.0
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    # ring
    d2 = dy**2 + dx**2
    return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)


def temporal_dilation(support: np.ndarray) -> np.ndarray:
    """Motion mask from an object's per-frame support ``(..., T, H, W)``: support at t-1, t or t+1."""
    support = np.asarray(support, dtype=bool)
    if support.ndim < 3:
        raise InvalidInputError(f"support must be (..., T, H, W), got shape {support.shape}")
    out = support.copy()
    out[..., 1:, :, :] |= support[..., :-1, :, :]
    out[..., :-1, :, :] |= support[..., 1:, :, :]
    return out


__all__ = ["DISTRACTOR_SHAPES", "LABEL_SHAPES", "SHAPES", "shape_mask", "temporal_dilation"]
