"""How well a per-clip score separates two groups of clips: AUROC (Mann-Whitney U)."""

from __future__ import annotations

import numpy as np
import torch

from motion_relevance.errors import InvalidInputError


def auroc(positive: torch.Tensor | np.ndarray, negative: torch.Tensor | np.ndarray) -> float:
    """Probability that a random positive scores higher than a random negative (ties count
    one half): 1 separates perfectly, 0.5 is chance. NaN scores are dropped."""
    pos = np.asarray(torch.as_tensor(positive).detach().cpu(), dtype=np.float64).ravel()
    neg = np.asarray(torch.as_tensor(negative).detach().cpu(), dtype=np.float64).ravel()
    pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
    if pos.size == 0 or neg.size == 0:
        raise InvalidInputError(
            f"AUROC needs at least one score in each group, got {pos.size} and {neg.size}"
        )
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    # Average ranks (1-based) over runs of tied scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], scores.size]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


__all__ = ["auroc"]
