"""motion_relevance: separate the motion part of a video model's explanation from its static part.

Public API (see ``docs/architecture.md``)::

    model, spec = mr.load_model("i3d-kinetics400")
    video = mr.read_video("clip.mp4")
    clips = spec.preprocess(video.frames)
    expl = mr.explain(model, clips, method="integrated_gradients")
    sel = mr.selective_relevance(expl.relevance, sigma=1.0)
    rel = mr.motion_reliance(model, clips)     # behavioural: frame-order interventions
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from motion_relevance.errors import MotionRelevanceError
from motion_relevance.selective import SelectiveRelevance, selective_relevance, temporal_gradient

try:
    __version__ = version("motion-relevance")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

# Heavier stages load on first use, so `import motion_relevance` stays light.
_LAZY = {
    "explain": "motion_relevance.attribution",
    "Explanation": "motion_relevance.attribution",
    "list_methods": "motion_relevance.attribution",
    "load_model": "motion_relevance.models",
    "list_models": "motion_relevance.models",
    "InputSpec": "motion_relevance.models",
    "read_video": "motion_relevance.video",
    "motion_reliance": "motion_relevance.metrics.motion_reliance",
    "MotionReliance": "motion_relevance.metrics.motion_reliance",
    "Video": "motion_relevance.video",
}

if TYPE_CHECKING:
    from motion_relevance.attribution import Explanation, explain, list_methods
    from motion_relevance.metrics.motion_reliance import MotionReliance, motion_reliance
    from motion_relevance.models import InputSpec, list_models, load_model
    from motion_relevance.video import Video, read_video


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'motion_relevance' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Explanation",
    "InputSpec",
    "MotionRelevanceError",
    "MotionReliance",
    "SelectiveRelevance",
    "Video",
    "__version__",
    "explain",
    "list_methods",
    "list_models",
    "load_model",
    "motion_reliance",
    "read_video",
    "selective_relevance",
    "temporal_gradient",
]
