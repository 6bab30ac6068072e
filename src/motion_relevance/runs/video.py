"""One video, window by window: the orchestration behind ``explain_video`` (``report/``
renders and writes what this yields).

1. ``VideoRequest.check``: settings, methods, model recipe and the video's header are checked
   before anything heavy runs; ``request.load()`` builds the model on its device.
2. ``predict_video``: one forward pass per window; the video's class probabilities are the
   mean of the windows' softmax.
3. ``explain_windows``: per window and method, ``explain`` and the selective step; the
   per-method numbers (motion share, motion score, sparsity, mask fraction, seconds) add up
   in ``MethodTotals`` over the frames each window owns. With ``context_frames`` k > 0 each
   window is explained with the k real frames before and after it (``runs.context``).

The video is read window by window (``video.iter_clips``), so memory does not grow with its
length.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from motion_relevance.checks import optional_positive_int
from motion_relevance.errors import InvalidInputError
from motion_relevance.metrics.motion_reliance import MotionReliance
from motion_relevance.models.spec import InputSpec
from motion_relevance.motion_score import motion_score
from motion_relevance.runs.context import ExplainSettings, with_context
from motion_relevance.runs.model import Model, ModelSource, module_device, resolve_device
from motion_relevance.runs.progress import ProgressCallback, report
from motion_relevance.runs.recipe import DEFAULT_RELIANCE, Recipe
from motion_relevance.runs.settings import SelectiveSettings, check_stride
from motion_relevance.runs.steps import Step
from motion_relevance.runs.stream import Chunk, stream
from motion_relevance.runs.targets import check_target
from motion_relevance.video import ClipWindow, VideoInfo, iter_clips, probe


@dataclass(frozen=True)
class VideoRequest:
    """A checked request to explain one video (nothing is built yet)."""

    info: VideoInfo
    source: ModelSource
    recipe: Recipe
    target: int | str | None
    start: float | None
    end: float | None
    stride: int | None
    max_side: int | None
    device: torch.device

    @classmethod
    def check(
        cls,
        video: str | os.PathLike[str],
        *,
        model: Model,
        spec: InputSpec | None = None,
        weights: str | os.PathLike[str] | None = None,
        num_classes: int | None = None,
        methods: str | Sequence[str] = ("saliency",),
        method_options: Mapping[str, Mapping[str, Any]] | None = None,
        sigma: float = 1.0,
        padding: str = "replicate",
        derivative: str = "abs",
        target: int | str | None = None,
        start: float | None = None,
        end: float | None = None,
        stride: int | None = None,
        max_side: int | None = None,
        device: str | torch.device | None = None,
        ties: str = "first",
        context_frames: int = 0,
        precision: str = "float32",
        tf32: bool = False,
        reliance: int = DEFAULT_RELIANCE,
    ) -> VideoRequest:
        """Check every setting and the video's header; one-line errors, nothing heavy."""
        recipe = Recipe(
            methods=methods, options=method_options or {},
            selective=SelectiveSettings(sigma, padding, derivative),
            explaining=ExplainSettings(ties, context_frames, precision, tf32), reliance=reliance,
        )  # fmt: skip
        source = ModelSource.of(model, spec=spec, weights=weights, num_classes=num_classes)
        if device is None and source.built is not None:  # a built model stays where it is
            resolved_device = module_device(source.built[0])
        else:
            resolved_device = resolve_device(device)
        stride = optional_positive_int("stride", stride)
        info = probe(video, count_frames=False)  # a bad video fails here, before any heavy work
        return cls(info, source, recipe, target, start, end, stride, max_side, resolved_device)

    @property
    def methods(self) -> tuple[str, ...]:
        return self.recipe.methods

    @property
    def options(self) -> Mapping[str, Mapping[str, Any]]:
        return self.recipe.options

    @property
    def settings(self) -> SelectiveSettings:
        return self.recipe.selective

    @property
    def explaining(self) -> ExplainSettings:
        return self.recipe.explaining

    def load(self) -> VideoRun:
        """Build the model on the run's device and check what needs its InputSpec."""
        module, spec = self.source.load()
        check_stride(self.stride, spec.frames)
        check_target(self.target, spec)
        self.explaining.check_model(spec)
        return VideoRun(self, module.to(self.device).eval(), spec)


@dataclass(frozen=True)
class VideoRun:
    """A request with its model built: what every pass over the video needs."""

    request: VideoRequest
    module: nn.Module
    spec: InputSpec

    @property
    def path(self) -> Path:
        return self.request.info.path

    def clips(self, *, quiet: bool = False) -> Iterator[tuple[ClipWindow, np.ndarray]]:
        """The video's windows and their frames, decoded as they are needed."""
        r = self.request
        return iter_clips(
            r.info.path, self.spec, stride=r.stride, start=r.start, end=r.end, max_side=r.max_side, quiet=quiet
        )


@dataclass(frozen=True)
class VideoPrediction:
    """The video's class probabilities (mean softmax over its windows) and its windows."""

    probabilities: np.ndarray
    windows: tuple[ClipWindow, ...]
    frame_size: tuple[int, int]
    """(height, width) of the decoded frames."""
    seconds: float


def predict_video(run: VideoRun, progress: ProgressCallback | None = None) -> VideoPrediction:
    """Pass 1: one forward pass per window (task ``"predict"``; its total is not known ahead)."""
    t0 = time.perf_counter()
    prob_sum: np.ndarray | None = None
    windows: list[ClipWindow] = []
    size = (0, 0)
    with torch.no_grad():
        for window, frames in run.clips():
            logits = run.module(run.spec.preprocess(frames).to(run.request.device))
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                raise InvalidInputError("the model must return logits shaped (N, classes)")
            p = torch.softmax(logits.double(), dim=1)[0].cpu().numpy()
            prob_sum = p if prob_sum is None else prob_sum + p
            windows.append(window)
            size = (int(frames.shape[1]), int(frames.shape[2]))
            report(progress, "predict", len(windows), None)
    assert prob_sum is not None  # iter_clips raises on a video without frames
    return VideoPrediction(prob_sum / len(windows), tuple(windows), size, time.perf_counter() - t0)


@dataclass
class MethodTotals:
    """Running numbers of one method over the frames the windows own."""

    name: str
    seconds_explain: float = 0.0
    seconds_selective: float = 0.0
    kept: float = 0.0
    """Σ|motion part| (voxel magnitude Σ_c|R|)."""
    total: float = 0.0
    """Σ|relevance|."""
    nonzero_base: int = 0
    nonzero_motion: int = 0
    mask_voxels: int = 0
    voxels: int = 0
    score_weighted: float = 0.0
    """Σ over windows of the window's motion score times the frames it owns."""
    owned_frames: int = 0

    def add(self, window: ClipWindow, step: Step) -> None:
        """Count the frames ``window`` owns of one step's (single-clip) result."""
        magnitude = step.explanation.relevance[0].detach().abs().sum(0)[window.owned].double().cpu()
        mask = step.selective.mask[0, 0, window.owned].cpu()
        self.kept += float((magnitude * mask).sum())
        self.total += float(magnitude.sum())
        self.nonzero_base += int((magnitude > 0).sum())
        self.nonzero_motion += int(((magnitude > 0) & mask).sum())
        self.mask_voxels += int(mask.sum())
        self.voxels += mask.numel()
        self.score_weighted += float(motion_score(step.explanation.relevance[:1])[0]) * window.num_owned
        self.owned_frames += window.num_owned
        self.seconds_explain += step.seconds_explain
        self.seconds_selective += step.seconds_selective

    @property
    def motion_share(self) -> float:
        return self.kept / self.total if self.total > 0 else 0.0

    @property
    def motion_score(self) -> float:
        """Mean over windows of ``motion_score`` of each window's relevance, weighted by the
        frames each window owns."""
        return self.score_weighted / self.owned_frames if self.owned_frames else 0.0

    @property
    def sparsity(self) -> float | None:
        """Non-zero voxels of the motion part / non-zero voxels of the base explanation."""
        return self.nonzero_motion / self.nonzero_base if self.nonzero_base else None

    @property
    def mask_fraction(self) -> float:
        return self.mask_voxels / max(1, self.voxels)

    @property
    def seconds(self) -> float:
        return self.seconds_explain + self.seconds_selective


@dataclass(frozen=True)
class RelianceSummary:
    """The video's motion reliance: the windows' numbers averaged, each weighted by the frames it
    owns (``mr.motion_reliance`` per window)."""

    score: float
    low: float
    high: float
    """Mean of the windows' 95 % permutation intervals (Monte Carlo error of each window's
    permutation mean, not an interval over clips)."""
    effects: dict[str, float | None]
    """Intervention -> evidence lost, in units of each window's total evidence (None where no
    window could take it)."""
    permutations: int


@dataclass
class RelianceTotals:
    """Running motion reliance over the frames the windows own."""

    permutations: int
    weighted: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def add(self, window: ClipWindow, reliance: MotionReliance) -> None:
        """Count one (single-clip) window's reliance."""
        values = {"score": reliance.score[0], "low": reliance.ci[0, 0], "high": reliance.ci[0, 1]}
        values.update({f"effect:{k}": v[0] for k, v in reliance.effects.items()})
        for key, value in values.items():
            v = float(value)
            self.weighted.setdefault(key, 0.0)
            self.weights.setdefault(key, 0.0)
            if v == v:  # NaN: the intervention did not apply to this window
                self.weighted[key] += v * window.num_owned
                self.weights[key] += window.num_owned

    def _mean(self, key: str) -> float | None:
        return self.weighted[key] / self.weights[key] if self.weights.get(key) else None

    def summary(self) -> RelianceSummary | None:
        """None when no window was measured."""
        if not self.weights.get("score"):
            return None
        effects = {k.split(":", 1)[1]: self._mean(k) for k in self.weighted if k.startswith("effect:")}
        return RelianceSummary(
            self._mean("score") or 0.0, self._mean("low") or 0.0, self._mean("high") or 0.0, effects, self.permutations
        )


@dataclass(frozen=True)
class WindowSteps:
    """One window of the video with every method's step on it."""

    window: ClipWindow
    frames: np.ndarray
    """uint8 (T, H, W, 3): the window's decoded frames."""
    steps: dict[str, Step] = field(default_factory=dict)
    reliance: MotionReliance | None = None
    """The window's motion reliance (``recipe.reliance`` > 0)."""


def explain_windows(
    run: VideoRun,
    target: int,
    totals: Mapping[str, MethodTotals],
    progress: ProgressCallback | None = None,
    num_windows: int | None = None,
    reliance: RelianceTotals | None = None,
) -> Iterator[WindowSteps]:
    """Pass 2: the video's windows, one per chunk, through ``runs.stream`` (explaining class
    ``target``); adds each step to ``totals`` (and each window's motion reliance to
    ``reliance``) and reports one task per method."""
    r = run.request
    for name in r.methods:
        report(progress, name, 0, num_windows)
    frames_of: dict[int, np.ndarray] = {}

    def chunks() -> Iterator[Chunk]:  # one window per chunk; its frames kept for the report
        windows = with_context(run.clips(quiet=True), r.explaining.context_frames)  # pass-1 warnings not repeated
        for window, frames, extended in windows:
            frames_of[window.index] = frames
            yield Chunk((window,), len(frames), run.spec.preprocess(extended))

    results = stream(run.module, run.spec, chunks(), r.recipe, target=torch.tensor([target]))
    for k, result in enumerate(results, start=1):
        window = result.chunk.windows[0]
        for name, step in result.steps.items():
            totals[name].add(window, step)
            report(progress, name, k, num_windows)
        if reliance is not None and result.reliance is not None:
            reliance.add(window, result.reliance)
        yield WindowSteps(window, frames_of.pop(window.index), dict(result.steps), result.reliance)


__all__ = [
    "MethodTotals",
    "RelianceSummary",
    "RelianceTotals",
    "VideoPrediction",
    "VideoRequest",
    "VideoRun",
    "WindowSteps",
    "explain_windows",
    "predict_video",
]
