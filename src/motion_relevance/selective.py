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
import os
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import Literal

import numpy as np
import torch

from motion_relevance.errors import InvalidInputError

Padding = Literal["replicate", "zeros"]
Derivative = Literal["abs", "signed"]

PADDINGS: tuple[str, ...] = ("replicate", "zeros")
DERIVATIVES: tuple[str, ...] = ("abs", "signed")

#: ``MOTION_RELEVANCE_SELECTIVE_KERNEL=torch`` forces the eager path (default ``numba``: the
#: fused kernels wherever they apply).
ENV_VAR = "MOTION_RELEVANCE_SELECTIVE_KERNEL"
_kernels_missing = False  # set when importing the fused kernels (Numba) failed

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

    relevance: torch.Tensor = field(repr=False)
    """The input relevance (not copied)."""
    motion: torch.Tensor = field(repr=False)
    """Relevance kept by the mask, same shape and dtype as the input."""
    mask: torch.Tensor = field(repr=False)
    """bool, ``(N, 1, T, H, W)``: voxels whose relevance changes faster than the threshold."""
    temporal_gradient: torch.Tensor = field(repr=False)
    """``D``, ``(N, 1, T, H, W)``: the (absolute or signed) temporal derivative."""
    threshold: torch.Tensor
    """``(N,)``: ``sigma * std(D)`` per clip."""
    motion_share: torch.Tensor
    """``(N,)``: ``sum|motion| / sum|relevance|`` per clip, the spatial-bias number."""
    sigma: float
    padding: str
    derivative: str

    @cached_property
    def motion_score(self) -> torch.Tensor:
        """``(N,)`` in [0, 1]: the motion score, ``sum|F(t-1) - F(t+1)| /
        sum(|F(t-1)| + |F(t+1)|)`` with ``F`` the smoothed channel sum of the relevance
        (``motion_relevance.motion_score``): unlike ``motion_share`` it does not rescale with
        the map, so a tiny flicker scores near 0 and a moving blob near 1. It measures whether
        the explanation moves, not whether the model relies on motion (``mr.motion_reliance``)."""
        from motion_relevance.motion_score import motion_score

        score = motion_score(self.relevance if self.relevance.ndim == 5 else self.relevance[None])
        return score if self.relevance.ndim == 5 else score[0]

    @cached_property
    def static(self) -> torch.Tensor:
        """``relevance - motion`` (computed on first access); ``motion + static`` is exact."""
        return self.relevance - self.motion


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


def _l1_per_clip(x: torch.Tensor, work: torch.dtype) -> torch.Tensor:
    """``sum|x|`` over every axis but the first, accumulated in ``work``."""
    return x.reshape(x.shape[0], -1).abs().sum(dim=1, dtype=work)


def _channel_sum(rel: torch.Tensor, work: torch.dtype, magnitude: bool = False) -> torch.Tensor:
    """``E = sum_c R`` (or ``sum_c |R|``) as a new ``work``-dtype tensor ``(N, T, H, W)``.

    Adding the few channels one by one is about twice as fast as ``sum(dim=1)`` here.
    """
    out = rel[:, 0].to(work, copy=True)
    if magnitude:
        out.abs_()
    for c in range(1, rel.shape[1]):
        out.add_(rel[:, c].abs() if magnitude else rel[:, c])
    return out


def _raise_if_not_finite(relevance: torch.Tensor, reduced: torch.Tensor) -> None:
    """``reduced`` holds sums of ``|R|``; they are finite exactly when every voxel of R is."""
    if bool(torch.isfinite(reduced).all()):
        return
    bad = int((~torch.isfinite(relevance)).sum())
    if bad == 0:  # finite inputs whose channel sum overflowed the dtype
        raise InvalidInputError("relevance values are too large: their channel sum overflows")
    raise InvalidInputError(
        f"relevance contains {bad} NaN/Inf voxel(s) of {relevance.numel()}; "
        "fix the explanation (e.g. check the model's output) before the selective step"
    )


def _raise_if_overflowing(threshold: torch.Tensor) -> None:
    """A non-finite threshold from finite voxels means the derivative overflowed the dtype."""
    if not bool(torch.isfinite(threshold).all()):
        raise InvalidInputError("relevance values are too large: their temporal derivative overflows")


def _smooth_121(src: torch.Tensor, dst: torch.Tensor, dim: int, replicate: bool) -> torch.Tensor:
    """``dst = [1, 2, 1] * src`` along ``dim`` (cross-correlation, padding 1); returns ``dst``."""
    n = src.shape[dim]
    if n == 1:
        return torch.mul(src, 4.0 if replicate else 2.0, out=dst)
    torch.add(src.narrow(dim, 0, n - 2), src.narrow(dim, 2, n - 2), out=dst.narrow(dim, 1, n - 2))
    first, last = dst.select(dim, 0), dst.select(dim, n - 1)
    first.copy_(src.select(dim, 1))
    last.copy_(src.select(dim, n - 2))
    if replicate:
        first.add_(src.select(dim, 0))
        last.add_(src.select(dim, n - 1))
    return dst.add_(src, alpha=2.0)


def _time_difference(src: torch.Tensor, dst: torch.Tensor, replicate: bool) -> torch.Tensor:
    """``dst[t] = src[t-1] - src[t+1]`` along dim 1 with edge padding; returns ``dst``."""
    n = src.shape[1]
    if n == 1:  # both neighbours are the padding: they cancel under either rule
        return dst.zero_()
    torch.sub(src[:, : n - 2], src[:, 2:], out=dst[:, 1 : n - 1])
    if replicate:
        torch.sub(src[:, 0], src[:, 1], out=dst[:, 0])
        torch.sub(src[:, n - 2], src[:, n - 1], out=dst[:, n - 1])
    else:
        torch.neg(src[:, 1], out=dst[:, 0])
        dst[:, n - 1].copy_(src[:, n - 2])
    return dst


def _sobel(channel_sum: torch.Tensor, padding: str) -> torch.Tensor:
    """Signed temporal Sobel response ``K * E`` of ``E`` shaped ``(N, T, H, W)``.

    Applied as its separable factors (``[1, 2, 1]`` in height, then in width, then
    ``[1, 0, -1]`` in time), with the edge rule written out instead of a padded copy, in two
    buffers the size of ``E``. Equal to ``conv3d(E, TEMPORAL_SOBEL, padding=1)`` under zero
    padding, at a fraction of its cost. ``channel_sum`` is overwritten.
    """
    replicate = padding == "replicate"
    other = torch.empty_like(channel_sum)
    _smooth_121(channel_sum, other, 2, replicate)
    _smooth_121(other, channel_sum, 3, replicate)
    return _time_difference(channel_sum, other, replicate)


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
    float32, without a gradient (the selective mask built from it is piecewise constant).
    """
    _check_options(padding, derivative)
    rel, unbatched = _as_relevance(relevance)
    work = _work_dtype(rel.dtype)
    with torch.no_grad():
        _raise_if_not_finite(rel, _l1_per_clip(rel, work))
        d = _derivative(_channel_sum(rel, work), padding, derivative).unsqueeze(1)
    return d[0] if unbatched else d


def _per_clip_std(d: torch.Tensor) -> torch.Tensor:
    """Unbiased std over each clip's voxels (two-pass: mean, then the centred norm).

    The voxels are first divided by the power of two at their largest magnitude (exact), so
    that the squares neither underflow for tiny relevance nor overflow for huge relevance.
    A single voxel gives 0 instead of NaN.
    """
    flat = d.reshape(d.shape[0], -1)
    count = flat.shape[1]
    if count < 2:
        return torch.zeros(flat.shape[0], dtype=d.dtype, device=d.device)
    # max|D| from max and min: vector_norm(ord=inf) takes 25x as long here
    largest = torch.maximum(flat.amax(dim=1, keepdim=True), -flat.amin(dim=1, keepdim=True))
    scale = torch.ldexp(torch.ones_like(largest), torch.frexp(largest).exponent)
    centred = flat / scale
    centred -= centred.mean(dim=1, keepdim=True)
    return torch.linalg.vector_norm(centred, dim=1) * (scale[:, 0] / math.sqrt(count - 1))


def _fused_kernels(rel: torch.Tensor) -> ModuleType | None:
    """The fused-kernel module if it applies to ``rel``, else None (the eager path).

    It applies to float32/float64 CPU tensors that do not require grad, unless ``ENV_VAR`` says
    ``torch``. It is imported here, on first use, so that ``import motion_relevance`` does not
    load Numba. A forked child of a process that started Numba's thread pool takes the eager
    path (that pool does not survive a fork), as does a Python without a working Numba.
    """
    global _kernels_missing
    if os.environ.get(ENV_VAR, "numba") == "torch" or _kernels_missing:
        return None
    if rel.device.type != "cpu" or rel.dtype not in (torch.float32, torch.float64) or rel.requires_grad:
        return None
    try:
        from motion_relevance import selective_kernels as kernels
    except ImportError:  # Numba is a dependency; only a broken install gets here
        _kernels_missing = True
        return None
    return kernels if kernels.usable_in_this_process() else None


def _split_torch(
    rel: torch.Tensor, sigma: float, padding: str, derivative: str
) -> tuple[torch.Tensor, ...]:
    """The selective step in eager PyTorch (any device and dtype, keeps autograd).

    Returns motion, mask ``(N, 1, T, H, W)``, ``D`` ``(N, 1, T, H, W)``, threshold, and the
    per-clip ``sum|motion|`` and ``sum|R|``.
    """
    work = _work_dtype(rel.dtype)
    with torch.no_grad():  # the mask is piecewise constant: only ``motion`` carries a gradient
        magnitude = _channel_sum(rel, work, magnitude=True)  # sum_c |R|
        total = magnitude.sum(dim=(1, 2, 3))
        _raise_if_not_finite(rel, total)
        d = _derivative(_channel_sum(rel, work), padding, derivative)  # (N, T, H, W)
        threshold = sigma * _per_clip_std(d)
        mask = (d > threshold.view(-1, 1, 1, 1)).unsqueeze(1)
        kept = magnitude.mul_(mask[:, 0]).sum(dim=(1, 2, 3))
    motion = rel * mask
    return motion, mask, d.unsqueeze(1), threshold, kept, total


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
    kernels = _fused_kernels(rel)
    if kernels is not None:
        parts = kernels.split(rel, float(sigma), padding == "replicate", derivative == "abs")
        if not parts.finite:
            _raise_if_not_finite(rel, parts.total)
            _raise_if_overflowing(parts.threshold)
        motion, mask, d, threshold, share = parts[:5]
    else:
        motion, mask, d, threshold, kept, total = _split_torch(rel, float(sigma), padding, derivative)
        _raise_if_overflowing(threshold)
        share = torch.where(total > 0, kept / torch.where(total > 0, total, 1.0), 0.0)

    if unbatched:
        rel, motion, mask, d = rel[0], motion[0], mask[0], d[0]
        threshold, share = threshold[0], share[0]
    return SelectiveRelevance(
        relevance=rel,
        motion=motion,
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
