"""Metrics of explanations: ground-truth motion precision, motion-share separation (AUROC),
sparsity, frozen clips, the frozen-frame decomposition baseline, deletion faithfulness and
optical-flow precision, reliance by intervention and bootstrap CIs; :mod:`motion_relevance.evidence` runs them as a benchmark.
"""

from __future__ import annotations

from motion_relevance.metrics.decomposition import (
    FrozenFrameDecomposition,
    frozen_frame_decomposition,
)
from motion_relevance.metrics.deletion import DeletionResult, deletion_faithfulness, remove_voxels
from motion_relevance.metrics.flow import FlowPrecision, flow_magnitude, flow_mask, flow_precision
from motion_relevance.metrics.frozen import FrozenAccuracy, freeze, frozen_accuracy
from motion_relevance.metrics.precision import MotionPrecision, mask_precision, motion_precision
from motion_relevance.metrics.separation import auroc
from motion_relevance.metrics.sparsity import nonzero_voxels, sparsity_ratio

__all__ = [
    "DeletionResult",
    "FlowPrecision",
    "FrozenAccuracy",
    "FrozenFrameDecomposition",
    "MotionPrecision",
    "auroc",
    "deletion_faithfulness",
    "flow_magnitude",
    "flow_mask",
    "flow_precision",
    "freeze",
    "frozen_accuracy",
    "frozen_frame_decomposition",
    "mask_precision",
    "motion_precision",
    "nonzero_voxels",
    "remove_voxels",
    "sparsity_ratio",
]
