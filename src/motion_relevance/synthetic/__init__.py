"""The ground-truth motion benchmark: procedural clips with per-voxel masks of what moves.

See :mod:`motion_relevance.synthetic.generator` for the three variants and
``scripts/train_synthetic.py`` and ``scripts/train_graded.py`` for the commands that train the
reference models.
"""

from __future__ import annotations

from motion_relevance.synthetic.generator import (
    APPEARANCE_LABELS,
    FRAMES,
    MOTION_LABELS,
    SIZE,
    SPLITS,
    VARIANTS,
    SyntheticBatch,
    generate,
    labels,
)
from motion_relevance.synthetic.masks import shape_mask, temporal_dilation

__all__ = [
    "APPEARANCE_LABELS",
    "FRAMES",
    "MOTION_LABELS",
    "SIZE",
    "SPLITS",
    "VARIANTS",
    "SyntheticBatch",
    "generate",
    "labels",
    "shape_mask",
    "temporal_dilation",
]
