"""One orchestration layer: what every command does the same way.

``Recipe`` is the one settings record (methods and options, selective and explain settings,
seed, motion-reliance permutations), checked once; ``stream`` is the one window loop, turning
chunks of preprocessed windows into per-chunk results that the report, the batch store and the
evidence benchmark consume.

A run needs a model (``ModelSource``: preset name, ``"module:function"``, builder or built
module, and ``resolve_device``), methods (``resolve_methods``: one naming rule everywhere),
settings (``SelectiveSettings``; ``ExplainSettings`` for max-pool ties and context frames,
with ``with_context`` giving a video's windows their real neighbouring frames), a target (``resolve_target``) and a way to report progress
(``Progress`` callbacks; only the CLI draws bars). ``explain_and_select`` is the step every
command repeats. ``runs.video`` is the one-video run behind ``report.explain_video``; the batch
unit (``batch.pipeline``) and the evaluation sit on the same pieces.
"""

from __future__ import annotations

from motion_relevance.runs.context import ExplainSettings, split_context, with_context
from motion_relevance.runs.methods import parse_methods, resolve_methods
from motion_relevance.runs.model import (
    Model,
    ModelBuilder,
    ModelSource,
    module_device,
    one_line,
    resolve_device,
)
from motion_relevance.runs.progress import Progress, ProgressCallback, check_callback
from motion_relevance.runs.recipe import DEFAULT_RELIANCE, Recipe
from motion_relevance.runs.settings import SelectiveSettings, check_stride
from motion_relevance.runs.steps import Step, explain_and_select
from motion_relevance.runs.stream import Chunk, ChunkResult, stream
from motion_relevance.runs.targets import (
    AUTO_TARGETS,
    check_target,
    is_auto,
    label_name,
    resolve_target,
)
from motion_relevance.runs.video import (
    MethodTotals,
    RelianceSummary,
    RelianceTotals,
    VideoPrediction,
    VideoRequest,
    VideoRun,
    WindowSteps,
    explain_windows,
    predict_video,
)

__all__ = [
    "AUTO_TARGETS",
    "DEFAULT_RELIANCE",
    "Chunk",
    "ChunkResult",
    "ExplainSettings",
    "MethodTotals",
    "Model",
    "ModelBuilder",
    "ModelSource",
    "Progress",
    "ProgressCallback",
    "Recipe",
    "RelianceSummary",
    "RelianceTotals",
    "SelectiveSettings",
    "Step",
    "VideoPrediction",
    "VideoRequest",
    "VideoRun",
    "WindowSteps",
    "check_callback",
    "check_stride",
    "check_target",
    "explain_and_select",
    "explain_windows",
    "is_auto",
    "label_name",
    "module_device",
    "one_line",
    "parse_methods",
    "predict_video",
    "resolve_device",
    "resolve_methods",
    "resolve_target",
    "split_context",
    "stream",
    "with_context",
]
