"""Adapters that give multi-input video models the one-tensor interface ``explain`` expects.

``explain`` needs a module mapping one clip tensor (N, 3, T, H, W) to logits (N, K). Models that
take several pathways, such as SlowFast (a list ``[slow, fast]`` where the slow pathway sees
every ``alpha``-th frame), are wrapped so that every pathway is computed *from the one clip*
inside the forward pass; gradients and relevance of all pathways then flow back to the same
clip, at full temporal resolution::

    model = SlowFastInput(slowfast, alpha=4)      # e.g. pytorchvideo's slowfast_r50
    expl = mr.explain(model, clips, "integrated_gradients")
"""

from __future__ import annotations

import torch
from torch import nn

from motion_relevance.errors import InvalidInputError


class SlowFastInput(nn.Module):
    """Feed a two-pathway model ``[slow, fast]`` from one clip: ``fast`` is the clip, ``slow``
    takes ``T // alpha`` frames evenly spaced over it (as PySlowFast/pytorchvideo sample)."""

    def __init__(self, model: nn.Module, alpha: int = 4) -> None:
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, int) or alpha < 1:
            raise InvalidInputError(f"alpha must be a positive integer, got {alpha!r}")
        self.model = model
        self.alpha = alpha

    def pathways(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[slow, fast]`` for clips ``x`` (N, C, T, H, W)."""
        t = x.shape[2]
        if t < self.alpha:
            raise InvalidInputError(f"a SlowFast clip needs at least alpha={self.alpha} frames, got {t}")
        index = torch.linspace(0, t - 1, t // self.alpha, device=x.device).long()
        return [x.index_select(2, index), x]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.pathways(x))
