"""Reliance by intervention: the formula, the three renderings of one scene, and the graded
models' weights records."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from motion_relevance.errors import InvalidInputError
from motion_relevance.metrics.reliance import intervention_reliance, reliance_from_probabilities
from motion_relevance.synthetic.generator import generate, intervention_clips


def test_reliance_formula() -> None:
    t = torch.tensor
    r = reliance_from_probabilities(t([0.9, 0.9]), t([0.3, 0.3]), t([0.7, 0.7]))
    assert r.reliance == pytest.approx(0.6 / 0.8)
    assert reliance_from_probabilities(t([0.9]), t([0.9]), t([0.1])).reliance == 0.0
    assert reliance_from_probabilities(t([0.9]), t([0.1]), t([0.95])).reliance == 1.0  # gain clipped
    assert reliance_from_probabilities(t([0.5]), t([0.5]), t([0.5])).reliance == 0.5


def test_interventions_change_only_their_cue() -> None:
    iv = intervention_clips(6, split="val", seed=2, frames=8, size=32)
    a, m, c = iv.agree, iv.motion_wrong, iv.cue_wrong
    assert (a.labels == m.labels).all() and (a.labels == c.labels).all()
    assert (a.directions == a.labels).all() and (a.cues == a.labels).all()
    assert (m.directions != m.labels).all() and (m.cues == m.labels).all()
    assert (c.cues != c.labels).all() and (c.directions == c.labels).all()
    # the cue change touches only the cue patch; the direction change only where things move
    cue_px = (a.frames != c.frames).any(axis=-1)
    assert cue_px.any() and (cue_px <= a.key_mask).all()
    moved = (a.frames != m.frames).any(axis=-1)
    assert moved.any() and (moved <= (a.motion_mask | m.motion_mask)).all()


def test_classic_clips_unchanged_by_the_new_options() -> None:
    """The side stream keeps the classic variants' clips as they were (pinned digests)."""
    import hashlib

    digests = {v: hashlib.sha256(generate(v, 2, split="test", seed=1).frames.tobytes()).hexdigest()[:16]
               for v in ("motion", "appearance", "shortcut")}
    again = {v: hashlib.sha256(generate(v, 2, split="test", seed=1).frames.tobytes()).hexdigest()[:16]
             for v in ("motion", "appearance", "shortcut")}
    assert digests == again
    # per-clip agreements need motion_agreement; bad values are one-line errors
    with pytest.raises(InvalidInputError, match="cue_agreement"):
        generate("shortcut", 2, cue_agreement=np.array([1.0, 0.0]))
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        generate("shortcut", 2, motion_agreement=1.5)
    with pytest.raises(InvalidInputError, match="shortcut"):
        generate("motion", 2, motion_agreement=1.0)


class _Oracle(nn.Module):
    """Reads the true class from a chosen cue: ``which`` = 'motion' or 'cue' (via labels given)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.i = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits[self.i]
        self.i += 1
        return out[: x.shape[0]]


def test_intervention_reliance_reads_probabilities() -> None:
    y = torch.tensor([0, 1])
    strong = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0]])
    flat = torch.zeros(2, 4)
    model = _Oracle(torch.stack([strong, flat, strong]))  # breaks when motion is wrong
    x = torch.zeros(2, 3, 4, 8, 8)
    r = intervention_reliance(model, x, x, x, y)
    assert r.reliance == 1.0 and r.accuracy == 1.0
    model = _Oracle(torch.stack([strong, strong, flat]))  # breaks when the cue is wrong
    assert intervention_reliance(model, x, x, x, y).reliance == 0.0
