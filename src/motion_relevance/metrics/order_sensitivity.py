"""Order sensitivity of an explanation: how much each frame's relevance changes when the other
frames are put in a different order.

For a random frame permutation ``pi``, explain the permuted clip and move each frame's relevance
back to the frame it belongs to: ``R'(x) = pi^-1 R(pi x)``. A model whose output ignores frame
order explains every frame the same whatever the order (gradients and the LRP and CAM maps of
such models are permutation-equivariant), so ``R' = R``; a model that uses motion sees other
neighbours and explains the frame differently. The score, per clip,

    mean over pi of  sum |R - R'|  /  (sum |R| + sum |R'|)

lies in [0, 1] and is exactly 0 (within float rounding) for order-invariant models, whatever
moves in the clip, with deterministic methods (a random method such as SmoothGrad draws noise
that is not permuted with the frames, so it reads above 0 even then): unlike the motion score, it does not read motion of the input as reliance.
It needs ``permutations`` further explanations per clip. Candidate for the explanation-based
number of issue 23: measured against the behavioural reliance in ``docs/evidence.md``, not yet
shown to users.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from motion_relevance.attribution import explain
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec


@dataclass(frozen=True)
class OrderSensitivity:
    """Per clip: how much the explanation changes when the frame order changes."""

    score: torch.Tensor
    """(N,) in [0, 1]: mean over the permutations of sum|R - R'| / (sum|R| + sum|R'|)."""
    per_permutation: torch.Tensor
    """(N, K): the same for each permutation."""
    target: torch.Tensor
    """(N,) int64: the explained class (the same in every permuted explanation)."""


def order_sensitivity(
    model: nn.Module,
    clips: torch.Tensor,
    method: str,
    *,
    spec: InputSpec | None = None,
    target: int | torch.Tensor | None = None,
    permutations: int = 4,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> OrderSensitivity:
    """The order sensitivity of ``method``'s explanations of ``clips`` (see the module docstring);
    ``options`` are the method's, ``target`` defaults to the predicted class (explained the same
    in every permuted clip)."""
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise InvalidInputError(f"permutations must be an integer >= 1, got {permutations!r}")
    if not isinstance(clips, torch.Tensor) or clips.ndim != 5 or clips.shape[2] < 2:
        raise InvalidInputError("clips must be a float tensor (N, C, T, H, W) with T >= 2")
    kw = dict(options or {})
    base = explain(model, clips, method, spec=spec, target=target, seed=seed, **kw)
    r = base.relevance.detach()
    generator = torch.Generator().manual_seed(seed)
    frames = clips.shape[2]
    values = []
    for _ in range(permutations):
        order = torch.randperm(frames, generator=generator).to(clips.device)
        back = torch.argsort(order)
        permuted = explain(model, clips[:, :, order], method, spec=spec, target=base.target, seed=seed, **kw)
        r2 = permuted.relevance.detach()[:, :, back]
        num = (r - r2).abs().sum(dim=(1, 2, 3, 4)).double()
        den = (r.abs().sum(dim=(1, 2, 3, 4)) + r2.abs().sum(dim=(1, 2, 3, 4))).double()
        values.append(torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(den)))
    per = torch.stack(values, dim=1).float().cpu()
    return OrderSensitivity(per.mean(dim=1), per, base.target.cpu())


__all__ = ["OrderSensitivity", "order_sensitivity"]
