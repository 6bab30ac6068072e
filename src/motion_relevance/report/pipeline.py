"""Video in, explanations out: the pipeline behind ``motion-relevance explain`` and the demo.

``explain_video`` reads a video window by window (``motion_relevance.video.iter_clips``), so
memory does not grow with the video's length:

1. *predict*: one forward pass per window; the video's class probabilities are the mean of
   the windows' softmax; ``target="auto"`` explains the top class;
2. *explain*: per window and method, ``explain`` -> ``selective_relevance`` -> overlays
   streamed into ``<method>.mp4`` (frame | base explanation | motion part), the report's
   quantised data, the filmstrip's sampled cells and the running motion-share sums;
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from motion_relevance.errors import InvalidInputError, UnknownNameError
from motion_relevance.models.spec import InputSpec
from motion_relevance.report.filmstrip import sample_columns, write_filmstrip
from motion_relevance.report.html import ReportWriter
from motion_relevance.report.outdir import StagedDir
from motion_relevance.report.overlay import label, overlay
from motion_relevance.report.viewer import ViewerWindow, check_sigma, quantise_window
from motion_relevance.selective import PADDINGS, selective_relevance
from motion_relevance.video import ClipWindow, VideoWriter, iter_clips, probe

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


def parse_methods(methods: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> known method names, in order, without duplicates."""
    from motion_relevance.attribution import list_methods

    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods)]
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise InvalidInputError("give at least one explanation method (see `motion-relevance methods`)")
    known = [info.name for info in list_methods()]
    for name in names:
        if name not in known:
            raise UnknownNameError(f"unknown method {name!r}; known methods: {', '.join(known)}")
    return names


def resolve_target(target: int | str | None, spec: InputSpec, num_classes: int, probabilities: np.ndarray) -> int:
    """``None``/``"auto"``: the top class; an int (or digits); otherwise a label name."""
    if target is None or (isinstance(target, str) and target.strip().lower() == "auto"):
        return int(np.argmax(probabilities))
    if isinstance(target, str) and target.strip().lstrip("-").isdigit():
        target = int(target.strip())
    if isinstance(target, bool) or not isinstance(target, (int, np.integer, str)):
        raise InvalidInputError(f"target must be 'auto', a class index or a label, got {target!r}")
    if isinstance(target, str):
        return spec.label_index(target)
    if not 0 <= int(target) < num_classes:
        raise InvalidInputError(f"target class {target} is out of range: the model has {num_classes} classes (0..{num_classes - 1})")
    return int(target)


def _label(spec: InputSpec, index: int) -> str | None:
    return spec.labels[index] if spec.labels is not None and index < len(spec.labels) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value if not (isinstance(value, float) and not math.isfinite(value)) else None
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _bars(progress: bool, names: Sequence[str], total: int | None, initial: int = 0) -> list[Any]:
    if not progress:
        return []
    from tqdm.auto import tqdm

    return [
        tqdm(total=total, initial=initial, desc=f"{name:<24s}", unit="window", position=i, leave=True)
        for i, name in enumerate(names)
    ]


def _close_bars(bars: Sequence[Any], *, leave: bool = True) -> None:
    for bar in bars:
        bar.leave = leave and bar.leave
        bar.close()


def _scale_box(box: tuple[float, float, float, float], f: float) -> tuple[float, float, float, float]:
    return (box[0] * f, box[1] * f, box[2] * f, box[3] * f)


def _is_auto(target: int | str | None) -> bool:
    return target is None or (isinstance(target, str) and target.strip().lower() == "auto")


@dataclass(frozen=True)
class _Job:
    """What to explain and how: the settings every phase shares."""

    path: Path
    module: nn.Module
    spec: InputSpec
    model_name: str
    weights: str | None
    methods: tuple[str, ...]
    options: dict[str, dict[str, Any]]
    sigma: float
    target: int | str | None
    start: float | None
    end: float | None
    stride: int | None
    max_side: int | None
    padding: str
    progress: bool

    def clips(self, *, quiet: bool = False) -> Iterator[tuple[ClipWindow, np.ndarray]]:
        return iter_clips(
            self.path, self.spec, stride=self.stride, start=self.start, end=self.end,
            max_side=self.max_side, quiet=quiet,
        )  # fmt: skip

    @property
    def device(self) -> torch.device:
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


@dataclass
class _MethodState:
    """Running numbers and open outputs of one method while the windows stream by."""

    name: str
    options: dict[str, Any]
    writer: VideoWriter
    seconds: float = 0.0
    kept: float = 0.0
    total: float = 0.0
    nonzero_base: int = 0
    nonzero_motion: int = 0
    mask_voxels: int = 0
    voxels: int = 0
    cells: dict[str, list[np.ndarray]] = field(default_factory=lambda: {"base": [], "motion": [], "static": []})

    def summary(self, sigma: float) -> MethodSummary:
        return MethodSummary(
            name=self.name,
            motion_share=self.kept / self.total if self.total > 0 else 0.0,
            sparsity=self.nonzero_motion / self.nonzero_base if self.nonzero_base else None,
            mask_fraction=self.mask_voxels / max(1, self.voxels),
            sigma=sigma,
            seconds=self.seconds,
            video=self.writer.path.name,
            options=_jsonable(self.options),
        )


@dataclass(frozen=True)
class _Prediction:
    probabilities: np.ndarray
    windows: tuple[ClipWindow, ...]
    frame_size: tuple[int, int]
    seconds: float


# ------------------------------------------------------------------------------------ pipeline


def explain_video(
    video: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | nn.Module,
    spec: InputSpec | None = None,
    weights: str | os.PathLike[str] | None = None,
    methods: str | Sequence[str] = ("saliency",),
    sigma: float = 1.0,
    target: int | str | None = None,
    start: float | None = None,
    end: float | None = None,
    stride: int | None = None,
    max_side: int | None = MAX_SIDE,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    padding: str = "replicate",
    progress: bool = False,
) -> ExplainResult:
    """Explain ``video`` with each of ``methods`` and write the report folder ``out``.

    ``model``: a preset name (loaded with ``weights``) or an ``nn.Module`` with its ``spec``.
    ``target``: None/"auto" (the video's top class), a class index or a label name.
    ``start``/``end``: seconds; ``stride``: frames between window starts (default and
    maximum: the window length). ``max_side``: larger frames are downscaled while decoding.
    ``method_options``: per-method options, e.g. ``{"integrated_gradients": {"n_steps": 16}}``.
    ``progress``: show tqdm bars per method and window (the CLI does).
    """
    started = time.perf_counter()
    names = parse_methods(methods)
    sigma = check_sigma(sigma)
    if padding not in PADDINGS:
        raise InvalidInputError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    unknown = set(method_options or {}) - set(names)
    if unknown:
        raise InvalidInputError(f"options given for methods that are not run: {', '.join(sorted(unknown))}")
    options = {name: dict((method_options or {}).get(name, {})) for name in names}
    info = probe(video, count_frames=False)  # a bad video fails here, before any heavy work
    staged = StagedDir(out)  # and so does an output folder that cannot be written
    try:
        if isinstance(model, str):
            from motion_relevance.models import load_model

            module, spec = load_model(model, weights=None if weights is None else str(weights))
            model_name = model
        else:
            spec = spec if spec is not None else getattr(model, "input_spec", None)
            if not isinstance(model, nn.Module) or not isinstance(spec, InputSpec):
                raise InvalidInputError("give a model preset name, or an nn.Module together with its InputSpec")
            module, model_name = model, type(model).__name__
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= spec.frames):
            raise InvalidInputError(f"stride must be between 1 and the clip length {spec.frames}, got {stride!r}")
        if spec.num_classes is not None and not _is_auto(target):
            resolve_target(target, spec, spec.num_classes, np.zeros(spec.num_classes))  # fail early
        job = _Job(
            info.path, module, spec, model_name, None if weights is None else str(weights), tuple(names),
            options, sigma, target, start, end, stride, max_side, padding, progress,
        )  # fmt: skip
        prediction = _predict(job)
        return _explain_and_write(job, prediction, staged, info.fps, started)
    except BaseException:
        staged.abort()
        raise


def _predict(job: _Job) -> _Prediction:
    """Pass 1: the video's class probabilities (mean softmax of its windows) and its windows."""
    t0 = time.perf_counter()
    prob_sum: np.ndarray | None = None
    windows: list[ClipWindow] = []
    size = (0, 0)
    bars: list[Any] = []  # made after the first window, so early errors stay one clean line
    try:
        with torch.no_grad():
            for window, frames in job.clips():
                logits = job.module(job.spec.preprocess(frames).to(job.device))
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                    raise InvalidInputError("the model must return logits shaped (N, classes)")
                p = torch.softmax(logits.double(), dim=1)[0].cpu().numpy()
                prob_sum = p if prob_sum is None else prob_sum + p
                windows.append(window)
                size = (int(frames.shape[1]), int(frames.shape[2]))
                if not bars:
                    bars = _bars(job.progress, ["predict"], None, initial=1)
                else:
                    bars[0].update(1)
    except BaseException:
        _close_bars(bars, leave=False)
        raise
    _close_bars(bars)
    assert prob_sum is not None  # iter_clips raises on a video without frames
    return _Prediction(prob_sum / len(windows), tuple(windows), size, time.perf_counter() - t0)


def _explain_and_write(job: _Job, pred: _Prediction, staged: StagedDir, fps: float, started: float) -> ExplainResult:
    """Pass 2 (explain, render, stream) and the final files; commits ``staged``."""
    from motion_relevance.attribution import explain

    spec = job.spec
    target = resolve_target(job.target, spec, len(pred.probabilities), pred.probabilities)
    order = np.argsort(-pred.probabilities, kind="stable")[:TOP_K]
    predictions = tuple(Prediction(int(i), _label(spec, int(i)), float(pred.probabilities[i])) for i in order)
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
    target_tensor = torch.tensor([target])

    report = ReportWriter(staged.path / ".parts", job.methods, frame_size=(height, width), map_size=spec.size, crop_box=box)
    states = [_MethodState(m, job.options[m], VideoWriter(staged.path / f"{m}.mp4", fps=fps)) for m in job.methods]
    frame_cells: list[np.ndarray] = []
    column_titles: list[str] = []
    bars = _bars(job.progress, job.methods, len(pred.windows))
    position = 0  # report frames written so far
    t0 = time.perf_counter()
    try:
        for window, frames in job.clips(quiet=True):  # the pass-1 warnings are not repeated
            clip = spec.preprocess(frames).to(job.device)
            owned = frames[window.owned]
            picked = [c - position for c in columns if position <= c < position + window.num_owned]
            small = [cv2.resize(owned[p], cell_size, interpolation=cv2.INTER_AREA) for p in picked]
            frame_cells += small
            column_titles += [f"t = {window.owned_indices[p] / fps:.2f} s" for p in picked]
            report.add_frames(owned)
            for i, state in enumerate(states):
                t = time.perf_counter()
                expl = explain(job.module, clip, state.name, target=target_tensor, spec=spec, **state.options)
                sel = selective_relevance(expl.relevance, job.sigma, padding=job.padding)  # type: ignore[arg-type]
                state.seconds += time.perf_counter() - t
                report.add_window(state.name, _render_window(expl.relevance, sel, window, owned, small, picked, box, cell_f, state, job.sigma))
                if bars:
                    bars[i].update(1)
            position += window.num_owned
        explain_seconds = time.perf_counter() - t0
        for state in states:
            state.writer.close()
    except BaseException:
        _close_bars(bars, leave=False)
        for state in states:
            state.writer.abort()
        report.discard()
        raise
    _close_bars(bars)

    summaries = tuple(state.summary(job.sigma) for state in states)
    target_label = _label(spec, target)
    title = f"{job.path.name} · {job.model_name} · class {target_label or target} · σ = {job.sigma:g}"
    rows: list[tuple[str, list[np.ndarray]]] = [("frames", frame_cells)]
    for s in states:
        rows += [(f"{s.name}\nbase", s.cells["base"]), ("motion part", s.cells["motion"]), ("static part", s.cells["static"])]
    filmstrip = write_filmstrip(staged.path / "filmstrip.png", rows, column_titles, title=title)

    first_index = pred.windows[0].owned_indices[0]
    video_meta = {"name": job.path.name, "fps": fps, "frames": num_frames, "first_index": first_index, "width": width, "height": height}
    prediction_rows = [{"rank": r + 1, "index": p.index, "label": p.label, "probability": p.probability} for r, p in enumerate(predictions)]
    report.write(
        staged.path / "report.html",
        {
            "title": f"{job.path.name} — {job.model_name}",
            "sigma": job.sigma,
            "first_index": first_index,
            "video": video_meta,
            "model": job.model_name,
            "target": {"index": target, "label": target_label},
            "predictions": prediction_rows,
            "methods": {m.name: {"motion_share": m.motion_share, "seconds": m.seconds} for m in summaries},
        },
    )
    seconds = {"predict": pred.seconds, "explain_and_render": explain_seconds, "total": time.perf_counter() - started}
    summary = {
        "video": {
            **video_meta,
            "path": str(job.path),
            "start": job.start,
            "end": job.end,
            "windows": len(pred.windows),
            "window_frames": pred.windows[0].length,
            "loop_padded": pred.windows[0].padded,
        },
        "model": {"name": job.model_name, "weights": job.weights, "input_frames": spec.frames, "input_size": list(spec.size)},
        "target": {"index": target, "label": target_label, "chosen": "auto" if _is_auto(job.target) else "given"},
        "predictions": prediction_rows,
        "sigma": job.sigma,
        "padding": job.padding,
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
    relevance: torch.Tensor, sel: Any, window: ClipWindow, owned: np.ndarray, small: list[np.ndarray],
    picked: list[int], box: tuple[float, float, float, float], cell_f: float, state: _MethodState, sigma: float,
) -> ViewerWindow:
    """Add one window of one method to the running numbers, the video and the filmstrip cells;
    return its quantised data for the report."""
    rel = relevance[0].detach().float().cpu()  # (C, T, h, w)
    mask = sel.mask[0, 0, window.owned].cpu()
    magnitude = rel.abs().sum(0)[window.owned].double()
    state.kept += float((magnitude * mask).sum())
    state.total += float(magnitude.sum())
    state.nonzero_base += int((magnitude > 0).sum())
    state.nonzero_motion += int(((magnitude > 0) & mask).sum())
    state.mask_voxels += int(mask.sum())
    state.voxels += mask.numel()

    viewer = quantise_window(rel, sel.temporal_gradient[0], window)
    base = rel.sum(0)[window.owned].numpy()
    motion = np.where(mask.numpy(), base, 0.0).astype(np.float32)
    static = base - motion
    vmax = viewer.display_max  # the report draws with the same scale
    for i, frame in enumerate(owned):  # frame by frame: full-resolution float images are big
        panels = (
            label(frame, "frame"),
            label(overlay(frame, base[i], box=box, vmax=vmax), state.name),
            label(overlay(frame, motion[i], box=box, vmax=vmax), f"motion part (sigma={sigma:g})"),
        )
        state.writer.write(np.concatenate(panels, axis=1))
    cell_box = _scale_box(box, cell_f)
    for p, cell in zip(picked, small, strict=True):
        for kind, heat in (("base", base), ("motion", motion), ("static", static)):
            state.cells[kind].append(overlay(cell, heat[p], box=cell_box, vmax=vmax))
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
