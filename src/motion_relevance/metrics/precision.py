"""Ground-truth motion precision: how much of an explanation's mass lies on what moves.

``precision = sum |R| inside the mask / sum |R|`` per clip, with ``|R|`` summed over channels.
It is NaN for a clip whose relevance is all zero (nothing to be precise about).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from motion_relevance.errors import InvalidInputError
from motion_relevance.selective import Padding, SelectiveRelevance, selective_relevance


def voxel_magnitude(relevance: torch.Tensor) -> torch.Tensor:
    """``sum_c |R|`` of ``(N, C, T, H, W)`` relevance, shaped ``(N, T, H, W)`` float32."""
    if relevance.ndim != 5:
        raise InvalidInputError(
            f"relevance must be (N, C, T, H, W), got shape {tuple(relevance.shape)}"
        )
    return relevance.abs().sum(dim=1, dtype=torch.float32)


def as_voxel_mask(mask: torch.Tensor | np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A bool ``(N, T, H, W)`` mask from ``(N, T, H, W)`` or ``(N, 1, T, H, W)``, checked
    against relevance ``like`` shaped ``(N, C, T, H, W)``."""
    m = torch.as_tensor(mask)
    if m.ndim == 5 and m.shape[1] == 1:
        m = m[:, 0]
    want = (like.shape[0], *like.shape[2:])
    if tuple(m.shape) != want:
        raise InvalidInputError(
            f"mask must have shape (N, T, H, W) = {want} to match the relevance, got {tuple(m.shape)}"
        )
    return m.to(device=like.device, dtype=torch.bool)


def mask_precision(relevance: torch.Tensor, mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(N,)`` fraction of ``sum_c |R|`` inside ``mask`` (NaN where the relevance is all zero)."""
    mag = voxel_magnitude(relevance)
    m = as_voxel_mask(mask, relevance)
    total = mag.sum(dim=(1, 2, 3))
    inside = (mag * m).sum(dim=(1, 2, 3))
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(total.dtype).tiny), torch.nan)


@dataclass(frozen=True)
class MotionPrecision:
    """Ground-truth motion precision of a base explanation and of its selective motion part."""

    base: torch.Tensor
    """``(N,)`` precision of the base relevance."""
    selective: torch.Tensor
    """``(N,)`` precision of ``selective_relevance(...).motion`` (NaN where the mask is empty)."""
    motion_share: torch.Tensor
    """``(N,)`` motion share of the split (see :mod:`motion_relevance.selective`)."""
    sigma: float


def motion_precision(
    relevance: torch.Tensor,
    motion_mask: torch.Tensor | np.ndarray,
    sigma: float = 1.0,
    *,
    padding: Padding = "replicate",
    selective: SelectiveRelevance | None = None,
) -> MotionPrecision:
    """Base vs selective precision against the ground-truth ``motion_mask`` (N, T, H, W)."""
    sel = selective if selective is not None else selective_relevance(relevance, sigma, padding=padding)
    return MotionPrecision(
        base=mask_precision(relevance, motion_mask),
        selective=mask_precision(sel.motion, motion_mask),
        motion_share=sel.motion_share,
        sigma=float(sel.sigma),
    )


def selective_recall(relevance: torch.Tensor, motion: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``(N,)`` share of the base relevance on the ground-truth voxels that ``motion`` keeps
    (NaN where the base has no relevance there)."""
    on_truth = (voxel_magnitude(relevance) * truth).sum(dim=(1, 2, 3))
    kept = (voxel_magnitude(motion) * truth).sum(dim=(1, 2, 3))
    return torch.where(on_truth > 0, kept / on_truth.clamp_min(1e-30), torch.nan)


def f1_score(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    """Harmonic mean ``2pr / (p + r)`` per clip; NaN counts as 0, and 0 when both are 0."""
    p, r = precision.nan_to_num(0.0), recall.nan_to_num(0.0)
    return torch.where(p + r > 0, 2 * p * r / (p + r).clamp_min(1e-30), 0.0)


__all__ = ["MotionPrecision", "as_voxel_mask", "f1_score", "mask_precision", "motion_precision",
           "selective_recall", "voxel_magnitude"]
