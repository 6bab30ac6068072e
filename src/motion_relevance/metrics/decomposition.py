"""The 2019 predecessor of selective relevance: the frozen-frame decomposition (baseline).

Hiley et al. 2019 ("Discriminating spatial and temporal relevance in deep Taylor
decompositions for explainable activity recognition") explain, for every frame ``t``, the clip
made of frame ``t`` repeated (no motion) and call the difference to the clip's own relevance at
``t`` the *temporal* relevance::

    spatial[:, :, t]  = mean over the frozen clip's frames of R(freeze(clip, t))
    temporal[:, :, t] = R(clip)[:, :, t] - spatial[:, :, t]

It costs T extra explanations per clip, where selective relevance costs one convolution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from motion_relevance.errors import InvalidInputError
from motion_relevance.metrics.frozen import freeze

#: ``explain_fn(clips, target) -> relevance`` for clips ``(B, C, T, H, W)`` and targets ``(B,)``.
ExplainFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FrozenFrameDecomposition:
    """Spatial/temporal split of a relevance volume by the frozen-frame method."""

    temporal: torch.Tensor
    """``(N, C, T, H, W)``: the clip's relevance minus its frozen-frame relevance."""
    spatial: torch.Tensor
    """``(N, C, T, H, W)``: per frame, the mean relevance of that frame repeated."""
    explanations_per_clip: int
    """Explanations the decomposition ran per clip (its cost in base explanations)."""


def frozen_frame_decomposition(
    explain_fn: ExplainFn,
    clips: torch.Tensor,
    target: torch.Tensor,
    relevance: torch.Tensor | None = None,
    *,
    frames_per_call: int | None = None,
) -> FrozenFrameDecomposition:
    """Decompose ``relevance`` (computed with ``explain_fn`` if None) into temporal and spatial.

    ``frames_per_call``: how many frozen versions of the batch to explain in one call (default:
    all T at once; lower it to bound memory).
    """
    if clips.ndim != 5:
        raise InvalidInputError(f"clips must be (N, C, T, H, W), got shape {tuple(clips.shape)}")
    n, _, t = clips.shape[:3]
    target = torch.as_tensor(target, dtype=torch.int64).reshape(-1)
    if target.numel() != n:
        raise InvalidInputError(f"need one target per clip, got {target.numel()} for {n} clips")
    calls = 0
    if relevance is None:
        relevance = explain_fn(clips, target)
        calls += n
    if relevance.shape[0] != n or relevance.shape[2:] != clips.shape[2:]:
        raise InvalidInputError(
            f"relevance shape {tuple(relevance.shape)} does not match clips {tuple(clips.shape)}"
        )
    step = t if frames_per_call is None else max(1, int(frames_per_call))
    spatial = torch.empty_like(relevance)
    for first in range(0, t, step):
        frames = list(range(first, min(t, first + step)))
        frozen = torch.cat([freeze(clips, f) for f in frames])  # (len(frames) * N, ...)
        rel = explain_fn(frozen, target.repeat(len(frames)))
        calls += frozen.shape[0]
        rel = rel.reshape(len(frames), n, *rel.shape[1:]).mean(dim=3)  # mean over time
        for i, f in enumerate(frames):
            spatial[:, :, f] = rel[i]
    return FrozenFrameDecomposition(
        temporal=relevance - spatial, spatial=spatial, explanations_per_clip=calls // n
    )


__all__ = ["ExplainFn", "FrozenFrameDecomposition", "frozen_frame_decomposition"]
