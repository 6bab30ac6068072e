"""The motion score: how much of an explanation changes over time, relative to its own size.

The paper's motion share thresholds the temporal derivative relative to its own spread, so a
map that barely flickers still has "motion": the threshold scales down with the flicker. The
motion score instead compares each voxel's change with the relevance that is there:

    F = S(sum_c R)                       spatially smoothed channel sum, S = [1,2,1] x [1,2,1]
    change(t)    = |F(t-1) - F(t+1)|      the paper's temporal derivative D, before its threshold
    magnitude(t) = |F(t-1)| + |F(t+1)|
    motion_score = sum change / sum magnitude      over each clip's T*H*W voxels

It lies in [0, 1] (triangle inequality): 0 when the map is the same in every frame (whatever
its scale), 1 when the relevance at t-1 and t+1 never overlaps or flips sign (something moved),
and a flicker of relative size eps scores about eps. Time is padded by replicating the first and
last frames, as in ``selective_relevance``'s default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SMOOTH = torch.tensor([1.0, 2.0, 1.0])


def _smoothed_channel_sum(relevance: torch.Tensor) -> torch.Tensor:
    """``S(sum_c R)`` as ``(N, T, H, W)`` in at least float32, edges replicated in space."""
    work = torch.promote_types(relevance.dtype, torch.float32)
    e = relevance.to(work).sum(dim=1)  # (N, T, H, W)
    n, t, h, w = e.shape
    k = _SMOOTH.to(device=e.device, dtype=work)
    x = e.reshape(n * t, 1, h, w)
    x = F.conv2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), k.view(1, 1, 3, 1))
    x = F.conv2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), k.view(1, 1, 1, 3))
    return x.reshape(n, t, h, w)


def motion_score(relevance: torch.Tensor, *, edge_frames: int = 0) -> torch.Tensor:
    """``(N,)`` motion score of ``(N, C, T, H, W)`` relevance (see the module docstring).

    ``edge_frames`` leaves that many frames at each end of the clip out of both sums.
    """
    with torch.no_grad():
        f = _smoothed_channel_sum(relevance)
        prev = torch.cat([f[:, :1], f[:, :-1]], dim=1)
        nxt = torch.cat([f[:, 1:], f[:, -1:]], dim=1)
        change = (prev - nxt).abs()
        magnitude = prev.abs() + nxt.abs()
        if edge_frames:
            keep = slice(edge_frames, f.shape[1] - edge_frames)
            change, magnitude = change[:, keep], magnitude[:, keep]
        num = change.sum(dim=(1, 2, 3))
        den = magnitude.sum(dim=(1, 2, 3))
        return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)
