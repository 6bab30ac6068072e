"""Deletion faithfulness: does removing the motion-selected voxels hurt the model's decision?

Removing a voxel replaces it by what an *operator* gives there (per channel):

- ``"temporal_mean"``: the clip's temporal mean at that pixel (freezes the clip locally). It
  cannot change static content, so it favours motion voxels by construction;
- ``"blur"``: the frame blurred spatially (5x5 box), which changes edges and texture whether
  they move or not;
- ``"zero"``: 0, the mean of the normalised input.

With ``changed_only`` every selection is drawn from the voxels the operator actually changes
(by more than ``1e-6`` in some channel), so motion, static and random compete on equal terms.
The drop of the target logit is compared for three selections of the same size ``k`` (the
number of motion-selected voxels of each clip that may be chosen):

- ``motion``: the voxels of the selective-relevance mask;
- ``static``: the ``k`` voxels of the static part with the largest ``sum_c |R|``;
- ``random``: ``k`` voxels drawn uniformly (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from motion_relevance.checks import one_of
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


#: Operators that say what a removed voxel becomes.
OPERATORS: tuple[str, ...] = ("temporal_mean", "blur", "zero")


def replacement(clips: torch.Tensor, operator: str = "temporal_mean") -> torch.Tensor:
    """What every voxel of ``clips`` (N, C, T, H, W) becomes when it is removed."""
    if operator == "temporal_mean":
        return clips.mean(dim=2, keepdim=True).expand_as(clips)
    if operator == "blur":
        n, c, t, h, w = clips.shape
        frames = clips.transpose(1, 2).reshape(n * t, c, h, w)
        padded = torch.nn.functional.pad(frames, (2, 2, 2, 2), mode="replicate")
        blurred = torch.nn.functional.avg_pool2d(padded, 5, stride=1)
        return blurred.reshape(n, t, c, h, w).transpose(1, 2)
    if operator == "zero":
        return torch.zeros_like(clips)
    raise InvalidInputError(f"operator must be one of {', '.join(OPERATORS)}, got {operator!r}")


def remove_voxels(clips: torch.Tensor, selection: torch.Tensor, operator: str = "temporal_mean") -> torch.Tensor:
    """``clips`` with the voxels of bool ``selection`` ``(N, T, H, W)`` replaced (``operator``)."""
    return _swap(clips, selection, replacement(clips, operator))


def changed_voxels(clips: torch.Tensor, operator: str, tol: float = 1e-6) -> torch.Tensor:
    """Bool ``(N, T, H, W)``: voxels that ``operator`` changes by more than ``tol`` in a channel."""
    return _changed(clips, replacement(clips, operator), tol)


def _swap(clips: torch.Tensor, selection: torch.Tensor, replaced: torch.Tensor) -> torch.Tensor:
    return torch.where(selection.unsqueeze(1), replaced, clips)


def _changed(clips: torch.Tensor, replaced: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    return ((replaced - clips).abs() > tol).any(dim=1)


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
    operator: str = "temporal_mean",
    changed_only: bool = False,
) -> DeletionResult:
    """Target-logit drops when the motion-selected, the most relevant static, or random voxels
    (same count per clip) are replaced by ``operator``'s values; with ``changed_only`` all three
    are drawn from the voxels the operator changes."""
    if clips.ndim != 5 or relevance.shape[0] != clips.shape[0] or relevance.shape[2:] != clips.shape[2:]:
        raise InvalidInputError(
            f"clips {tuple(clips.shape)} and relevance {tuple(relevance.shape)} must be (N, C, T, H, W) alike"
        )
    target = torch.as_tensor(target, dtype=torch.int64).reshape(-1)
    one_of("operator", operator, OPERATORS)
    mask = as_voxel_mask(motion_mask, relevance)
    replaced = replacement(clips, operator)  # once, for the changed voxels and all three selections
    allowed = _changed(clips, replaced) if changed_only else torch.ones_like(mask)
    mask = mask & allowed
    k = mask.sum(dim=(1, 2, 3))
    static = _top_k(voxel_magnitude(relevance), ~mask & allowed, k)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(mask.shape, generator=gen)
    random = _top_k(noise, allowed, k)

    base = _target_logit(model, clips, target, batch_size)
    drops = {}
    for name, sel in (("motion", mask), ("static", static), ("random", random)):
        drops[name] = base - _target_logit(model, _swap(clips, sel, replaced), target, batch_size)
    return DeletionResult(removed=k, **drops)


__all__ = ["OPERATORS", "DeletionResult", "changed_voxels", "deletion_faithfulness", "remove_voxels", "replacement"]
