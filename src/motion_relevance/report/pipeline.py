"""Video in, explanations out: the files behind ``motion-relevance explain`` and the demo.

``explain_video`` runs the video through the orchestration layer (``runs.video``: predict,
then explain and split window by window, in bounded memory) and renders what it yields:

1. *predict*: ``runs.video.predict_video``; ``target="auto"`` explains the top class;
2. *explain*: per window and method, the step's overlays are streamed into ``<method>.mp4``
   (frame | base explanation | motion part), the report's quantised data and the filmstrip's
   sampled cells;
3. *write*: ``report.html``, ``filmstrip.png`` and ``summary.json``.

Everything is written into a hidden temporary folder beside ``out`` that is renamed to
``out`` at the very end, so a failure leaves no partial output behind. An existing ``out``
is replaced only when it is empty or an earlier output (it holds ``summary.json``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec
from motion_relevance.report.filmstrip import sample_columns, write_filmstrip
from motion_relevance.report.html import ReportWriter
from motion_relevance.report.outdir import StagedDir
from motion_relevance.report.overlay import label, overlay
from motion_relevance.report.viewer import ViewerWindow, quantise_window
from motion_relevance.runs import (
    MethodTotals,
    ProgressCallback,
    Step,
    VideoPrediction,
    VideoRequest,
    VideoRun,
    check_callback,
    explain_windows,
    is_auto,
    label_name,
    parse_methods,
    predict_video,
    resolve_target,
)
from motion_relevance.video import ClipWindow, VideoWriter

log = logging.getLogger(__name__)

#: Longest frame side fed to the pipeline: larger videos are downscaled while decoding.
MAX_SIDE = 1280
#: Height in pixels of one filmstrip cell image.
FILMSTRIP_CELL = 200
FILMSTRIP_COLUMNS = 6
TOP_K = 5
#: Beyond this many frames the report gets large (it stores every frame's maps): log a hint.
LONG_REPORT_FRAMES = 1500

DEFINITIONS = {
    "motion_share": "sum|motion part| / sum|relevance| over the explained frames (voxel magnitude sum_c|R|)",
    "sparsity": "non-zero voxels of the motion part / non-zero voxels of the base explanation",
    "mask_fraction": "fraction of voxels inside the motion mask (|temporal derivative| > sigma * std)",
    "seconds": "wall-clock seconds spent in the base method and the selective step for this method",
    "seconds_selective": "wall-clock seconds spent in the selective step alone for this method",
}


@dataclass(frozen=True)
class Prediction:
    """One of the video's top classes (mean softmax over its windows)."""

    index: int
    label: str | None
    probability: float


@dataclass(frozen=True)
class MethodSummary:
    """Per-method numbers of ``summary.json`` (see ``DEFINITIONS``)."""

    name: str
    motion_share: float
    sparsity: float | None
    mask_fraction: float
    sigma: float
    seconds: float
    video: str
    options: dict[str, Any] = field(default_factory=dict)
    seconds_selective: float = 0.0


@dataclass(frozen=True)
class ExplainResult:
    """Where ``explain_video`` wrote its outputs and what it found."""

    out_dir: Path
    report: Path
    summary: Path
    filmstrip: Path
    videos: dict[str, Path]
    target: int
    target_label: str | None
    predictions: tuple[Prediction, ...]
    methods: tuple[MethodSummary, ...]
    frames: int
    windows: int
    seconds: dict[str, float]


# ------------------------------------------------------------------------------------- helpers


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value if not (isinstance(value, float) and not math.isfinite(value)) else None
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _scale_box(box: tuple[float, float, float, float], f: float) -> tuple[float, float, float, float]:
    return (box[0] * f, box[1] * f, box[2] * f, box[3] * f)


@dataclass
class _MethodOutput:
    """The open outputs of one method while the windows stream by."""

    totals: MethodTotals
    options: dict[str, Any]
    writer: VideoWriter
    cells: dict[str, list[np.ndarray]] = field(default_factory=lambda: {"base": [], "motion": [], "static": []})

    def summary(self, sigma: float) -> MethodSummary:
        t = self.totals
        return MethodSummary(
            name=t.name,
            motion_share=t.motion_share,
            sparsity=t.sparsity,
            mask_fraction=t.mask_fraction,
            sigma=sigma,
            seconds=t.seconds,
            video=self.writer.path.name,
            options=_jsonable(self.options),
            seconds_selective=t.seconds_selective,
        )


# ------------------------------------------------------------------------------------ pipeline


def explain_video(
    video: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | nn.Module,
    spec: InputSpec | None = None,
    weights: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    methods: str | Sequence[str] = ("saliency",),
    sigma: float = 1.0,
    target: int | str | None = None,
    start: float | None = None,
    end: float | None = None,
    stride: int | None = None,
    max_side: int | None = MAX_SIDE,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    padding: str = "replicate",
    derivative: str = "abs",
    device: str | torch.device | None = None,
    progress: ProgressCallback | None = None,
) -> ExplainResult:
    """Explain ``video`` with each of ``methods`` and write the report folder ``out``.

    ``model``: a preset name (loaded with ``weights`` and ``num_classes``) or an ``nn.Module``
    with its ``spec``. ``target``: None/"auto" (the video's top class), a class index or a label
    name. ``start``/``end``: seconds; ``stride``: frames between window starts (default and
    maximum: the window length). ``max_side``: larger frames are downscaled while decoding.
    ``method_options``: per-method options, e.g. ``{"integrated_gradients": {"n_steps": 16}}``.
    ``device``: None runs a preset on CUDA when available (a given module where it is).
    ``progress``: called with ``runs.Progress`` events (the CLI draws bars from them).
    """
    started = time.perf_counter()
    progress = check_callback(progress)
    if derivative != "abs":
        raise InvalidInputError(
            f"the report's sigma slider needs derivative='abs', got {derivative!r}; the one-sided "
            "variant is available in the library (selective_relevance) and in `motion-relevance batch`"
        )
    request = VideoRequest.check(
        video, model=model, spec=spec, weights=weights, num_classes=num_classes, methods=methods,
        method_options=method_options, sigma=sigma, padding=padding, derivative=derivative,
        target=target, start=start, end=end, stride=stride, max_side=max_side, device=device,
    )  # fmt: skip
    staged = StagedDir(out)  # an output folder that cannot be written fails before the model loads
    try:
        run = request.load()
        prediction = predict_video(run, progress)
        return _explain_and_write(run, prediction, staged, started, progress)
    except BaseException:
        staged.abort()
        raise


def _explain_and_write(
    run: VideoRun, pred: VideoPrediction, staged: StagedDir, started: float, progress: ProgressCallback | None
) -> ExplainResult:
    """Pass 2 (explain, render, stream) and the final files; commits ``staged``."""
    request, spec = run.request, run.spec
    fps = request.info.fps
    sigma = request.settings.sigma
    model_name = request.source.name
    target = resolve_target(request.target, spec, len(pred.probabilities), pred.probabilities)
    order = np.argsort(-pred.probabilities, kind="stable")[:TOP_K]
    predictions = tuple(Prediction(int(i), label_name(spec, int(i)), float(pred.probabilities[i])) for i in order)
    num_frames = sum(w.num_owned for w in pred.windows)
    if num_frames > LONG_REPORT_FRAMES:
        log.warning(
            "explaining %d frames: the report embeds every frame's maps (about %.0f MB per method); "
            "use start/end to explain a shorter part",
            num_frames,
            num_frames * spec.size[0] * spec.size[1] * 4e-6,
        )
    height, width = pred.frame_size
    box = spec.crop_box(height, width)
    columns = sample_columns(num_frames, FILMSTRIP_COLUMNS)
    cell_f = FILMSTRIP_CELL / height
    cell_size = (max(1, round(width * cell_f)), FILMSTRIP_CELL)  # (w, h) for OpenCV

    report = ReportWriter(staged.path / ".parts", request.methods, frame_size=(height, width), map_size=spec.size, crop_box=box)
    outputs = {
        m: _MethodOutput(MethodTotals(m), request.options[m], VideoWriter(staged.path / f"{m}.mp4", fps=fps))
        for m in request.methods
    }
    frame_cells: list[np.ndarray] = []
    column_titles: list[str] = []
    position = 0  # report frames written so far
    t0 = time.perf_counter()
    try:
        totals = {m: o.totals for m, o in outputs.items()}
        for item in explain_windows(run, target, totals, progress, num_windows=len(pred.windows)):
            window, frames = item.window, item.frames
            owned = frames[window.owned]
            picked = [c - position for c in columns if position <= c < position + window.num_owned]
            small = [cv2.resize(owned[p], cell_size, interpolation=cv2.INTER_AREA) for p in picked]
            frame_cells += small
            column_titles += [f"t = {window.owned_indices[p] / fps:.2f} s" for p in picked]
            report.add_frames(owned)
            for name, step in item.steps.items():
                report.add_window(name, _render_window(step, window, owned, small, picked, box, cell_f, outputs[name], sigma))
            position += window.num_owned
        explain_seconds = time.perf_counter() - t0
        for output in outputs.values():
            output.writer.close()
    except BaseException:
        for output in outputs.values():
            output.writer.abort()
        report.discard()
        raise

    summaries = tuple(output.summary(sigma) for output in outputs.values())
    target_label = label_name(spec, target)
    title = f"{run.path.name} · {model_name} · class {target_label or target} · σ = {sigma:g}"
    rows: list[tuple[str, list[np.ndarray]]] = [("frames", frame_cells)]
    for name, o in outputs.items():
        rows += [(f"{name}\nbase", o.cells["base"]), ("motion part", o.cells["motion"]), ("static part", o.cells["static"])]
    filmstrip = write_filmstrip(staged.path / "filmstrip.png", rows, column_titles, title=title)

    first_index = pred.windows[0].owned_indices[0]
    video_meta = {"name": run.path.name, "fps": fps, "frames": num_frames, "first_index": first_index, "width": width, "height": height}
    prediction_rows = [{"rank": r + 1, "index": p.index, "label": p.label, "probability": p.probability} for r, p in enumerate(predictions)]
    report.write(
        staged.path / "report.html",
        {
            "title": f"{run.path.name} — {model_name}",
            "sigma": sigma,
            "first_index": first_index,
            "video": video_meta,
            "model": model_name,
            "target": {"index": target, "label": target_label},
            "predictions": prediction_rows,
            "methods": {m.name: {"motion_share": m.motion_share, "seconds": m.seconds} for m in summaries},
        },
    )
    seconds = {"predict": pred.seconds, "explain_and_render": explain_seconds, "total": time.perf_counter() - started}
    summary = {
        "video": {
            **video_meta,
            "path": str(run.path),
            "start": request.start,
            "end": request.end,
            "windows": len(pred.windows),
            "window_frames": pred.windows[0].length,
            "loop_padded": pred.windows[0].padded,
        },
        "model": {
            "name": model_name,
            "weights": request.source.weights,
            "num_classes": request.source.num_classes,
            "input_frames": spec.frames,
            "input_size": list(spec.size),
            "device": str(request.device),
        },
        "target": {"index": target, "label": target_label, "chosen": "auto" if is_auto(request.target) else "given"},
        "predictions": prediction_rows,
        "sigma": sigma,
        "padding": request.settings.padding,
        "derivative": request.settings.derivative,
        "methods": {m.name: {k: v for k, v in asdict(m).items() if k != "name"} for m in summaries},
        "seconds": seconds,
        "files": {"report": "report.html", "filmstrip": filmstrip.name, "videos": {m.name: m.video for m in summaries}},
        "definitions": DEFINITIONS,
    }
    (staged.path / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n", encoding="utf-8")
    out_dir = staged.commit()
    log.info("wrote %s", out_dir)
    return ExplainResult(
        out_dir=out_dir,
        report=out_dir / "report.html",
        summary=out_dir / "summary.json",
        filmstrip=out_dir / filmstrip.name,
        videos={m.name: out_dir / m.video for m in summaries},
        target=target,
        target_label=target_label,
        predictions=predictions,
        methods=summaries,
        frames=num_frames,
        windows=len(pred.windows),
        seconds=seconds,
    )


def _render_window(
    step: Step, window: ClipWindow, owned: np.ndarray, small: list[np.ndarray], picked: list[int],
    box: tuple[float, float, float, float], cell_f: float, output: _MethodOutput, sigma: float,
) -> ViewerWindow:
    """Draw one window of one method into its video and filmstrip cells; return its quantised
    data for the report."""
    rel = step.explanation.relevance[0].detach().float().cpu()  # (C, T, h, w)
    mask = step.selective.mask[0, 0, window.owned].cpu()
    viewer = quantise_window(rel, step.selective.temporal_gradient[0].cpu(), window)
    base = rel.sum(0)[window.owned].numpy()
    motion = np.where(mask.numpy(), base, 0.0).astype(np.float32)
    static = base - motion
    vmax = viewer.display_max  # the report draws with the same scale
    name = output.totals.name
    for i, frame in enumerate(owned):  # frame by frame: full-resolution float images are big
        panels = (
            label(frame, "frame"),
            label(overlay(frame, base[i], box=box, vmax=vmax), name),
            label(overlay(frame, motion[i], box=box, vmax=vmax), f"motion part (sigma={sigma:g})"),
        )
        output.writer.write(np.concatenate(panels, axis=1))
    cell_box = _scale_box(box, cell_f)
    for p, cell in zip(picked, small, strict=True):
        for kind, heat in (("base", base), ("motion", motion), ("static", static)):
            output.cells[kind].append(overlay(cell, heat[p], box=cell_box, vmax=vmax))
    return viewer


__all__ = [
    "DEFINITIONS",
    "MAX_SIDE",
    "ExplainResult",
    "MethodSummary",
    "Prediction",
    "explain_video",
    "parse_methods",
    "resolve_target",
]
