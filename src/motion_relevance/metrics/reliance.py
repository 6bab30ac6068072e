"""A model's measured reliance on motion, by intervention (ground truth for the motion score).

On scenes where both label cues agree (the moving object's direction and a static colour
patch), the model's probability of the true class is compared with the same scenes where
only the direction is made wrong and where only the cue colour is made wrong:

    drop_motion = p(y | agree) - p(y | motion wrong)
    drop_cue    = p(y | agree) - p(y | cue wrong)
    reliance    = drop_motion / (drop_motion + drop_cue)     (each drop clipped at 0)

so 1 means only motion moves the decision, 0 only the static cue; 0.5 when the two drops are
equal (or both are zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Reliance:
    """Mean true-class probabilities under each intervention and the reliance they imply."""

    p_agree: float
    p_motion_wrong: float
    p_cue_wrong: float
    accuracy: float
    """Accuracy on the ``agree`` clips."""
    reliance: float
    n: int


def reliance_from_probabilities(
    p_agree: torch.Tensor, p_motion_wrong: torch.Tensor, p_cue_wrong: torch.Tensor,
    accuracy: float = float("nan"),
) -> Reliance:
    """The reliance of per-clip true-class probabilities (see the module docstring)."""
    pa, pm, pc = (float(p.double().mean()) for p in (p_agree, p_motion_wrong, p_cue_wrong))
    return Reliance(pa, pm, pc, accuracy, reliance_of_means(pa, pm, pc), int(p_agree.shape[0]))


def reliance_of_means(p_agree: float, p_motion_wrong: float, p_cue_wrong: float) -> float:
    """The reliance of mean true-class probabilities: each drop clipped at 0, 0.5 when both are 0."""
    dm, dc = max(p_agree - p_motion_wrong, 0.0), max(p_agree - p_cue_wrong, 0.0)
    return 0.5 if dm + dc == 0 else dm / (dm + dc)


@torch.no_grad()
def true_class_probability(
    model: nn.Module, clips: torch.Tensor, labels: torch.Tensor, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip: softmax probability of ``labels`` and whether the argmax equals it."""
    probs, hits = [], []
    for i in range(0, clips.shape[0], batch_size):
        logits = model(clips[i : i + batch_size])
        y = labels[i : i + batch_size]
        probs.append(logits.softmax(dim=1).gather(1, y[:, None])[:, 0])
        hits.append(logits.argmax(dim=1) == y)
    return torch.cat(probs), torch.cat(hits)


def intervention_reliance(
    model: nn.Module,
    agree: torch.Tensor,
    motion_wrong: torch.Tensor,
    cue_wrong: torch.Tensor,
    labels: torch.Tensor,
) -> Reliance:
    """Reliance of ``model`` from three preprocessed renderings of the same scenes."""
    pa, hits = true_class_probability(model, agree, labels)
    pm, _ = true_class_probability(model, motion_wrong, labels)
    pc, _ = true_class_probability(model, cue_wrong, labels)
    return reliance_from_probabilities(pa, pm, pc, accuracy=float(hits.float().mean()))


__all__ = ["Reliance", "intervention_reliance", "reliance_from_probabilities", "reliance_of_means",
           "true_class_probability"]
