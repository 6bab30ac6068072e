"""Selective relevance: keep the part of an explanation that changes quickly over time.

Given a relevance volume ``R`` of shape ``(N, C, T, H, W)`` from any base explanation method:

1. ``E = sum_c R`` (channel sum);
2. ``G = K * E``: cross-correlation with the 3x3x3 temporal Sobel kernel ``K``
   (``[1, 0, -1]`` in time, ``[1, 2, 1]`` in height and in width), so
   ``G[t] = S(E[t-1]) - S(E[t+1])`` where ``S`` is the 3x3 spatial smoothing;
3. ``D = |G|`` (``derivative="abs"``) or ``D = G`` (``derivative="signed"``);
4. ``mask = D > sigma * std(D)``, unbiased std over each clip's ``T*H*W`` voxels;
5. ``motion = R * mask`` (broadcast over channels), ``static = R - motion``;
6. ``motion_share = sum|motion| / sum|R|`` per clip (0 where ``R`` is all zero).

``padding="zeros"`` is the authors' published algorithm (zero padding 1 on every axis).
It makes the first and last frame of any non-zero explanation look like motion, so the
default, ``padding="replicate"``, repeats the edge voxels instead: a map that is identical in
every frame then has an empty mask.

Short clips: with ``T == 1`` there is no temporal neighbour, so under ``"replicate"`` the
derivative is zero and the mask empty; under ``"zeros"`` the frame is compared against the
zero padding on both sides, which also cancels (``S(0) - S(0)``), so the mask is empty too.
With ``T == 2`` both frames get ``S(E[0]) - S(E[1])`` under ``"replicate"``; under
``"zeros"`` they get ``-S(E[1])`` and ``S(E[0])``, i.e. the relevance itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from motion_relevance.errors import InvalidInputError

Padding = Literal["replicate", "zeros"]
Derivative = Literal["abs", "signed"]

PADDINGS: tuple[str, ...] = ("replicate", "zeros")
DERIVATIVES: tuple[str, ...] = ("abs", "signed")

#: The 3x3x3 temporal Sobel kernel, time on the first axis (cross-correlation semantics).
TEMPORAL_SOBEL: torch.Tensor = torch.einsum(
    "t,h,w->thw",
    torch.tensor([1.0, 0.0, -1.0]),
    torch.tensor([1.0, 2.0, 1.0]),
    torch.tensor([1.0, 2.0, 1.0]),
)


@dataclass(frozen=True)
class SelectiveRelevance:
    """The motion/static split of one relevance volume (shapes follow the input's rank)."""

    motion: torch.Tensor
    """Relevance kept by the mask, same shape and dtype as the input."""
    static: torch.Tensor
    """``relevance - motion``; ``motion + static`` equals the input exactly."""
    mask: torch.Tensor
    """bool, ``(N, 1, T, H, W)``: voxels whose relevance changes faster than the threshold."""
    temporal_gradient: torch.Tensor
    """``D``, ``(N, 1, T, H, W)``: the (absolute or signed) temporal derivative."""
    threshold: torch.Tensor
    """``(N,)``: ``sigma * std(D)`` per clip."""
    motion_share: torch.Tensor
    """``(N,)``: ``sum|motion| / sum|relevance|`` per clip, the spatial-bias number."""
    sigma: float
    padding: str
    derivative: str


def _as_relevance(relevance: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    """Validate rank and dtype; return a 5-D tensor and whether the input was unbatched."""
    if isinstance(relevance, np.ndarray):
        relevance = torch.from_numpy(relevance)
    if not isinstance(relevance, torch.Tensor):
        raise InvalidInputError(
            f"relevance must be a torch.Tensor or numpy array, got {type(relevance).__name__}"
        )
    if relevance.ndim not in (4, 5):
        raise InvalidInputError(
            f"relevance must have shape (N, C, T, H, W) or (C, T, H, W), got {tuple(relevance.shape)}"
        )
    if not relevance.is_floating_point():
        raise InvalidInputError(
            f"relevance must be a floating-point tensor, got dtype {relevance.dtype}"
        )
    if relevance.numel() == 0:
        raise InvalidInputError(f"relevance is empty (shape {tuple(relevance.shape)})")
    unbatched = relevance.ndim == 4
    return (relevance.unsqueeze(0) if unbatched else relevance), unbatched


def _check_options(padding: str, derivative: str) -> None:
    if padding not in PADDINGS:
        raise InvalidInputError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if derivative not in DERIVATIVES:
        raise InvalidInputError(
            f"derivative must be one of {', '.join(DERIVATIVES)}, got {derivative!r}"
        )


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Compute the derivative in at least float32: half precision loses the threshold."""
    return torch.promote_types(dtype, torch.float32)


def _raise_if_not_finite(relevance: torch.Tensor, reduced: torch.Tensor) -> None:
    """``reduced`` is ``sum_c |R|``; it is finite exactly when every voxel of R is."""
    if bool(torch.isfinite(reduced).all()):
        return
    bad = int((~torch.isfinite(relevance)).sum())
    if bad == 0:  # finite inputs whose channel sum overflowed the dtype
        raise InvalidInputError("relevance values are too large: their channel sum overflows")
    raise InvalidInputError(
        f"relevance contains {bad} NaN/Inf voxel(s) of {relevance.numel()}; "
        "fix the explanation (e.g. check the model's output) before the selective step"
    )


def _sobel(channel_sum: torch.Tensor, padding: str) -> torch.Tensor:
    """Signed temporal Sobel response ``K * E`` of ``E`` shaped ``(N, T, H, W)``.

    Written as its separable factors on a padded copy: one difference in time, then the
    ``[1, 2, 1]`` smoothing in height and in width. This is the same cross-correlation as
    ``conv3d(E, TEMPORAL_SOBEL, padding=1)`` at a fraction of its cost.
    """
    x = channel_sum.unsqueeze(1)
    pad = (1, 1, 1, 1, 1, 1)
    x = F.pad(x, pad, mode="replicate") if padding == "replicate" else F.pad(x, pad)
    x = x.squeeze(1)
    g = x[:, :-2] - x[:, 2:]  # time: +E[t-1] - E[t+1]
    h = g[:, :, :-2] + g[:, :, 2:]
    h.add_(g[:, :, 1:-1], alpha=2.0)
    w = h[..., :-2] + h[..., 2:]
    w.add_(h[..., 1:-1], alpha=2.0)
    return w


def _derivative(channel_sum: torch.Tensor, padding: str, derivative: str) -> torch.Tensor:
    g = _sobel(channel_sum, padding)
    return g.abs_() if derivative == "abs" else g


def temporal_gradient(
    relevance: torch.Tensor,
    *,
    padding: Padding = "replicate",
    derivative: Derivative = "abs",
) -> torch.Tensor:
    """The temporal derivative ``D`` of a relevance volume, shaped ``(N, 1, T, H, W)``.

    Same rank as given: a ``(C, T, H, W)`` input gives ``(1, T, H, W)``. Computed in at least
    float32.
    """
    _check_options(padding, derivative)
    rel, unbatched = _as_relevance(relevance)
    work = _work_dtype(rel.dtype)
    _raise_if_not_finite(rel, torch.linalg.vector_norm(rel, ord=1, dim=1, dtype=work))
    d = _derivative(rel.sum(dim=1, dtype=work), padding, derivative).unsqueeze(1)
    return d[0] if unbatched else d


def _per_clip_std(d: torch.Tensor) -> torch.Tensor:
    """Unbiased std over each clip's voxels; 0 for a single voxel (instead of NaN)."""
    flat = d.reshape(d.shape[0], -1)
    if flat.shape[1] < 2:
        return torch.zeros(flat.shape[0], dtype=d.dtype, device=d.device)
    return torch.std(flat, dim=1, correction=1)


def selective_relevance(
    relevance: torch.Tensor,
    sigma: float = 1.0,
    *,
    padding: Padding = "replicate",
    derivative: Derivative = "abs",
) -> SelectiveRelevance:
    """Split ``relevance`` into its motion and static parts (see the module docstring).

    ``relevance``: ``(N, C, T, H, W)`` or ``(C, T, H, W)``, any floating dtype, any device.
    ``sigma``: threshold in standard deviations of the derivative (>= 0).
    ``padding``: ``"replicate"`` (default) or ``"zeros"`` (the authors' algorithm).
    ``derivative``: ``"abs"`` (default, two-sided) or ``"signed"`` (one-sided 2020 variant).
    """
    _check_options(padding, derivative)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma):
        raise InvalidInputError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma < 0:
        raise InvalidInputError(f"sigma must be >= 0, got {sigma}")
    rel, unbatched = _as_relevance(relevance)
    work = _work_dtype(rel.dtype)

    magnitude = torch.linalg.vector_norm(rel, ord=1, dim=1, dtype=work)  # (N, T, H, W)
    _raise_if_not_finite(rel, magnitude)
    d = _derivative(rel.sum(dim=1, dtype=work), padding, derivative)  # (N, T, H, W)

    threshold = float(sigma) * _per_clip_std(d)
    mask = d > threshold.view(-1, 1, 1, 1)

    total = magnitude.sum(dim=(1, 2, 3))
    kept = (magnitude * mask).sum(dim=(1, 2, 3))
    share = torch.where(total > 0, kept / torch.where(total > 0, total, 1.0), 0.0)

    mask = mask.unsqueeze(1)
    motion = rel * mask
    static = rel - motion
    d = d.unsqueeze(1)
    if unbatched:
        motion, static, mask, d = motion[0], static[0], mask[0], d[0]
        threshold, share = threshold[0], share[0]
    return SelectiveRelevance(
        motion=motion,
        static=static,
        mask=mask,
        temporal_gradient=d,
        threshold=threshold,
        motion_share=share,
        sigma=float(sigma),
        padding=padding,
        derivative=derivative,
    )


__all__ = [
    "DERIVATIVES",
    "PADDINGS",
    "TEMPORAL_SOBEL",
    "SelectiveRelevance",
    "selective_relevance",
    "temporal_gradient",
]
