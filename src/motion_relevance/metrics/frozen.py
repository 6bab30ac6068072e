"""Frozen clips: one frame repeated over the whole clip, i.e. the clip with its motion removed.

A model that decides from motion should be at chance on frozen clips, and a motion explanation
of a frozen clip should be empty (motion share ~0 with the default replicate padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from motion_relevance.errors import InvalidInputError


def freeze(clips: torch.Tensor, frame: int | None = None) -> torch.Tensor:
    """Clips ``(N, C, T, H, W)`` with frame ``frame`` (default: the middle one) repeated T times."""
    if clips.ndim != 5:
        raise InvalidInputError(f"clips must be (N, C, T, H, W), got shape {tuple(clips.shape)}")
    t = clips.shape[2]
    index = t // 2 if frame is None else frame
    if not -t <= index < t:
        raise InvalidInputError(f"frame {frame} is out of range for clips of {t} frames")
    index %= t
    return clips[:, :, index : index + 1].expand_as(clips).contiguous()


@dataclass(frozen=True)
class FrozenAccuracy:
    """Accuracy of a classifier on clips and on the same clips frozen."""

    accuracy: float
    frozen_accuracy: float
    chance: float
    n: int


@torch.no_grad()
def predict(model: nn.Module, clips: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Arg-max class of every clip, evaluated in batches."""
    out = [model(clips[i : i + batch_size]).argmax(dim=1) for i in range(0, len(clips), batch_size)]
    return torch.cat(out)


def frozen_accuracy(
    model: nn.Module,
    clips: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    frame: int | None = None,
    batch_size: int = 32,
) -> FrozenAccuracy:
    """Accuracy on ``clips`` and on their frozen versions (chance is ``1 / num_classes``)."""
    if len(clips) != len(labels) or len(clips) == 0:
        raise InvalidInputError(
            f"need as many labels as clips (> 0), got {len(labels)} labels for {len(clips)} clips"
        )
    labels = torch.as_tensor(labels)
    acc = (predict(model, clips, batch_size) == labels).float().mean().item()
    frozen = freeze(clips, frame)
    facc = (predict(model, frozen, batch_size) == labels).float().mean().item()
    return FrozenAccuracy(accuracy=acc, frozen_accuracy=facc, chance=1.0 / num_classes, n=len(clips))


__all__ = ["FrozenAccuracy", "freeze", "frozen_accuracy", "predict"]
