"""Sparsity of explanations: how many voxels carry any relevance at all."""

from __future__ import annotations

import torch

from motion_relevance.metrics.precision import voxel_magnitude


def nonzero_voxels(relevance: torch.Tensor) -> torch.Tensor:
    """``(N,)`` number of ``(t, h, w)`` voxels where some channel of ``R`` is non-zero."""
    return (voxel_magnitude(relevance) > 0).sum(dim=(1, 2, 3))


def sparsity_ratio(base: torch.Tensor, selective: torch.Tensor) -> torch.Tensor:
    """``(N,)`` non-zero voxels of ``selective`` / of ``base`` (NaN where ``base`` is all zero).

    ``selective`` is ``base`` times a mask, so the ratio is at most 1.
    """
    b = nonzero_voxels(base).double()
    s = nonzero_voxels(selective).double()
    return torch.where(b > 0, s / b.clamp_min(1.0), torch.nan)


__all__ = ["nonzero_voxels", "sparsity_ratio"]
