"""Model presets: a name gives a PyTorch video model in eval mode and the InputSpec to feed it.

``load_model("i3d-kinetics400")`` (DeepMind's Kinetics-400 I3D, fetched once with
``motion-relevance weights fetch i3d-kinetics400``), ``"c3d"``, torchvision's ``r3d_18``,
``mc3_18``, ``r2plus1d_18``, ``s3d``, ``mvit_v2_s``, ``swin3d_t`` (user weights) and the
synthetic-benchmark presets. Each preset is a ``Preset`` record declared next to its
architecture, with one ``Weights`` record (source, sha256, licence, labels, InputSpec); weights
handling lives in ``motion_relevance.models.weights``.
"""

from __future__ import annotations

from motion_relevance.models.preset import Preset, Weights
from motion_relevance.models.registry import ModelInfo, list_models, load_model
from motion_relevance.models.spec import InputSpec, check_clip_length

__all__ = ["InputSpec", "ModelInfo", "Preset", "Weights", "check_clip_length", "list_models", "load_model"]
