"""Video in, explanations out: the files behind ``motion-relevance explain`` and the demo.

``explain_video`` runs the video through the orchestration layer (``runs.video``: predict,
then explain and split window by window, in bounded memory) and renders what it yields:

1. *predict*: ``runs.video.predict_video``; ``target="auto"`` explains the top class;
2. *explain*: per window and method, the step's quantised data go to the report and to a
   render folder, and each method's display scale (``overlay.DisplayScale``: the 99.5th
   percentile of its ``|sum_c R|`` over the whole video) is counted;
3. *render*: the video is read once more and every method drawn with its one scale, clipped
   above, into ``<method>.mp4`` (frame | base explanation | motion part) and the filmstrip;
   the report's viewer uses the same scale and the same quantised maps;
4. *write*: ``report.html``, ``filmstrip.png`` and ``summary.json``.

Everything is written into a hidden temporary folder beside ``out`` that is renamed to
``out`` at the very end, so a failure leaves no partial output behind. An existing ``out``
is replaced only when it is empty or an earlier output (it holds ``summary.json``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
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
from motion_relevance.report.overlay import DisplayScale, label, overlay
from motion_relevance.report.viewer import ViewerWindow, quantise_window
from motion_relevance.runs import (
    DEFAULT_RELIANCE,
    MethodTotals,
    ProgressCallback,
    RelianceSummary,
    RelianceTotals,
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

#: One line per number a user reads (summary.json, the report, the CLI).
MEANINGS = {
    "motion_reliance": "share of the model's evidence for the target that depends on the frames' temporal order, "
    "measured by shuffling frames (0 = order ignored, 1 = all evidence from order)",
    "motion_score": "share of the explanation that changes between neighbouring frames, relative to its own "
    "size (0 = static, 1 = all moving); whether the explanation moves, not whether the model relies on motion",
    "motion_share": "share of relevance above sigma std of its own temporal derivative (relative threshold: "
    "also high for tiny flicker)",
}

DEFINITIONS = {
    "motion_reliance": MEANINGS["motion_reliance"] + "; per window M+/(M+ + A+) with M = e(x) - mean_pi e(pi x) "
    "over random frame permutations pi and A = mean_pi e(pi x) - e(grey clip), e the target's log-odds "
    "(mr.motion_reliance); averaged over windows weighted by the frames each owns; low/high: the mean of the "
    "windows' 95 % permutation intervals; effects: evidence lost under block shuffles, reversal and freezing, "
    "in units of the window's total evidence",
    "motion_score": MEANINGS["motion_score"] + "; per window sum|F(t-1)-F(t+1)| / sum(|F(t-1)|+|F(t+1)|) of the "
    "smoothed channel sum F (motion_relevance.motion_score), averaged over windows weighted by the frames each owns",
    "motion_share": "the paper's number: " + MEANINGS["motion_share"] + "; sum|motion part| / sum|relevance| over "
    "the explained frames (voxel magnitude sum_c|R|)",
    "sparsity": "non-zero voxels of the motion part / non-zero voxels of the base explanation",
    "mask_fraction": "fraction of voxels inside the motion mask (|temporal derivative| > sigma * std)",
    "seconds": "wall-clock seconds spent in the base method and the selective step for this method",
    "seconds_selective": "wall-clock seconds spent in the selective step alone for this method",
    "ties": "how max pools passed gradient through tied maxima: 'first' (Captum/Zennit) or 'shared' evenly",
    "context_frames": "real neighbouring frames each window was explained with on each side, cropped away "
    "afterwards (the edge frame repeats where the decoded video ends)",
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
    motion_score: float
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
    reliance: RelianceSummary | None = None
    """The video's motion reliance (None when the run did not measure it)."""


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
    scale: DisplayScale = field(default_factory=DisplayScale)
    """High percentile of ``|sum_c R|`` over the video: full colour in every picture of it."""
    relevance_scales: dict[int, float] = field(default_factory=dict)
    """Per window index, the scale of its stored int8 relevance."""

    def summary(self, sigma: float) -> MethodSummary:
        t = self.totals
        return MethodSummary(
            name=t.name,
            motion_share=t.motion_share,
            motion_score=t.motion_score,
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
    ties: str = "first",
    context_frames: int = 0,
    precision: str = "float32",
    tf32: bool = False,
    reliance: int = DEFAULT_RELIANCE,
) -> ExplainResult:
    """Explain ``video`` with each of ``methods`` and write the report folder ``out``.

    ``model``: a preset name (loaded with ``weights`` and ``num_classes``) or an ``nn.Module``
    with its ``spec``. ``target``: None/"auto" (the video's top class), a class index or a label
    name. ``start``/``end``: seconds; ``stride``: frames between window starts (default and
    maximum: the window length). ``max_side``: larger frames are downscaled while decoding.
    ``method_options``: per-method options, e.g. ``{"integrated_gradients": {"n_steps": 16}}``.
    ``device``: None runs a preset on CUDA when available (a given module where it is).
    ``ties`` and ``context_frames``: ``explain``'s (max-pool ties "first" or "shared"; each window
    explained with that many real neighbouring frames of the video on each side, cropped away);
    ``precision`` ("float32" or "bf16") and ``tf32`` likewise (``docs/batch.md`` has their effect).
    ``reliance``: random frame permutations per window for the motion reliance (0: not measured).
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
        ties=ties, context_frames=context_frames, precision=precision, tf32=tf32, reliance=reliance,
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
    position = 0  # frames drawn so far
    render_dir = staged.path / ".render"
    render_dir.mkdir()
    t0 = time.perf_counter()
    try:
        totals = {m: o.totals for m, o in outputs.items()}
        windows: list[ClipWindow] = []
        reliance_totals = RelianceTotals(request.recipe.reliance)
        items = explain_windows(run, target, totals, progress, num_windows=len(pred.windows), reliance=reliance_totals)
        for item in items:
            windows.append(item.window)
            report.add_frames(item.frames[item.window.owned])
            for i, (name, step) in enumerate(item.steps.items()):
                report.add_window(name, _store_window(step, item.window, outputs[name], render_dir / f"{i}-{item.window.index}.npz"))
        vmax = {m: o.scale.value() for m, o in outputs.items()}
        for k, (window, frames) in enumerate(run.clips(quiet=True)):
            if k >= len(windows) or window.frame_indices != windows[k].frame_indices:
                raise InvalidInputError(f"{run.path} changed while it was being explained; run again")
            owned = frames[window.owned]
            picked = [c - position for c in columns if position <= c < position + window.num_owned]
            small = [cv2.resize(owned[p], cell_size, interpolation=cv2.INTER_AREA) for p in picked]
            frame_cells += small
            column_titles += [f"t = {window.owned_indices[p] / fps:.2f} s" for p in picked]
            for i, (name, output) in enumerate(outputs.items()):
                stored = render_dir / f"{i}-{window.index}.npz"
                _render_window(stored, window, owned, small, picked, box, cell_f, output, sigma, vmax[name])
            position += window.num_owned
        shutil.rmtree(render_dir)
        for output in outputs.values():
            output.writer.close()
        explain_seconds = time.perf_counter() - t0
    except BaseException:
        for output in outputs.values():
            output.writer.abort()
        report.discard()
        raise

    summaries = tuple(output.summary(sigma) for output in outputs.values())
    reliance = reliance_totals.summary()
    reliance_row = None if reliance is None else asdict(reliance)
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
            "reliance": reliance_row,
            "methods": {
                m.name: {
                    "motion_share": m.motion_share, "motion_score": m.motion_score, "seconds": m.seconds,
                    "display_max": vmax[m.name],
                }
                for m in summaries
            },
            "meanings": MEANINGS,
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
        "motion_reliance": reliance_row,
        "sigma": sigma,
        "padding": request.settings.padding,
        "derivative": request.settings.derivative,
        **request.explaining.describe(),
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
        reliance=reliance,
    )


def _store_window(step: Step, window: ClipWindow, output: _MethodOutput, path: Path) -> ViewerWindow:
    """Quantise one window of one method for the report, keep its int8 map and mask in ``path``
    for drawing once the method's scale is known, and count its magnitudes into that scale."""
    rel = step.explanation.relevance[0].detach().float().cpu()  # (C, T, h, w)
    viewer = quantise_window(rel, step.selective.temporal_gradient[0].cpu(), window)
    output.scale.add(rel.sum(0)[window.owned].numpy())
    output.relevance_scales[window.index] = viewer.relevance_scale
    np.savez(path, e=viewer.relevance, mask=step.selective.mask[0, 0, window.owned].cpu().numpy())
    return viewer


def _render_window(
    stored: Path, window: ClipWindow, owned: np.ndarray, small: list[np.ndarray], picked: list[int],
    box: tuple[float, float, float, float], cell_f: float, output: _MethodOutput, sigma: float, vmax: float,
) -> None:
    """Draw one window of one method into its video and filmstrip cells, from the report's own
    quantised map, with the method's scale ``vmax`` (the report's viewer draws the same)."""
    with np.load(stored) as data:
        base = data["e"].astype(np.float32) * np.float32(output.relevance_scales[window.index])
        mask = data["mask"]
    motion = np.where(mask, base, 0.0).astype(np.float32)
    static = base - motion
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


__all__ = [
    "DEFINITIONS",
    "MAX_SIDE",
    "MEANINGS",
    "ExplainResult",
    "MethodSummary",
    "Prediction",
    "explain_video",
    "parse_methods",
    "resolve_target",
]
