"""Deletion faithfulness: does removing the motion-selected voxels hurt the model's decision?

Removing a voxel replaces it with the clip's temporal mean at that pixel (per channel), i.e. it
freezes the clip locally. The drop of the target logit is compared for three selections of the
same size ``k`` (the number of motion-selected voxels of each clip):

- ``motion``: the voxels of the selective-relevance mask;
- ``static``: the ``k`` voxels of the static part with the largest ``sum_c |R|``;
- ``random``: ``k`` voxels drawn uniformly (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from motion_relevance.errors import InvalidInputError
from motion_relevance.metrics.precision import as_voxel_mask, voxel_magnitude


@dataclass(frozen=True)
class DeletionResult:
    """Target-logit drops ``(N,)`` (original minus after removal) per selection."""

    motion: torch.Tensor
    static: torch.Tensor
    random: torch.Tensor
    removed: torch.Tensor
    """``(N,)`` number of voxels removed in each selection."""


def remove_voxels(clips: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """``clips`` with the voxels of bool ``selection`` ``(N, T, H, W)`` set to the temporal mean."""
    mean = clips.mean(dim=2, keepdim=True).expand_as(clips)
    return torch.where(selection.unsqueeze(1), mean, clips)


def _top_k(scores: torch.Tensor, allowed: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool selection of the ``k[i]`` highest ``scores`` among ``allowed`` voxels of each clip."""
    flat = torch.where(allowed, scores, -torch.inf).reshape(scores.shape[0], -1)
    order = flat.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
    chosen = (rank < k.view(-1, 1)) & torch.isfinite(flat)
    return chosen.reshape(scores.shape)


@torch.no_grad()
def _target_logit(model: nn.Module, clips: torch.Tensor, target: torch.Tensor, batch: int) -> torch.Tensor:
    out = [model(clips[i : i + batch]) for i in range(0, len(clips), batch)]
    return torch.cat(out).gather(1, target.view(-1, 1))[:, 0]


def deletion_faithfulness(
    model: nn.Module,
    clips: torch.Tensor,
    target: torch.Tensor,
    relevance: torch.Tensor,
    motion_mask: torch.Tensor,
    *,
    seed: int = 0,
    batch_size: int = 16,
) -> DeletionResult:
    """Target-logit drops when the motion-selected, the most relevant static, or random voxels
    (same count per clip) are replaced by their temporal mean."""
    if clips.ndim != 5 or relevance.shape[0] != clips.shape[0] or relevance.shape[2:] != clips.shape[2:]:
        raise InvalidInputError(
            f"clips {tuple(clips.shape)} and relevance {tuple(relevance.shape)} must be (N, C, T, H, W) alike"
        )
    target = torch.as_tensor(target, dtype=torch.int64).reshape(-1)
    mask = as_voxel_mask(motion_mask, relevance)
    k = mask.sum(dim=(1, 2, 3))
    static = _top_k(voxel_magnitude(relevance), ~mask, k)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(mask.shape, generator=gen)
    random = _top_k(noise, torch.ones_like(mask), k)

    base = _target_logit(model, clips, target, batch_size)
    drops = {}
    for name, sel in (("motion", mask), ("static", static), ("random", random)):
        drops[name] = base - _target_logit(model, remove_voxels(clips, sel), target, batch_size)
    return DeletionResult(removed=k, **drops)


__all__ = ["DeletionResult", "deletion_faithfulness", "remove_voxels"]
