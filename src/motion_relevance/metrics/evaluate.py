"""The evidence benchmark: every metric for every model x method x sigma, as one tidy table.

On held-out clips of the synthetic benchmark (ground truth of what moves), for each reference
model, explanation method and sigma:

- ``precision``: motion precision of the base and of the selective explanation, the selective
  part's recall of the relevance on the moving object, their F1, the motion share and the
  sparsity ratio (non-zero voxels, selective / base);
- ``frozen``: motion share left on frozen clips, default (replicate) and zero padding;
- ``deletion``: target-logit drop when the motion-selected voxels, as many top static voxels,
  or as many random voxels are frozen;
- ``separation``: AUROC of the motion share between two models (motion vs appearance, motion
  vs shortcut);
- ``decomposition``: the 2019 frozen-frame decomposition, precision and cost vs selective;
- ``accuracy``: test and frozen-clip accuracy of each model;
- ``flow`` (real videos): optical-flow precision of the base and selective explanation.

:func:`run_evaluation` returns an :class:`Evaluation` (rows + per-clip distributions);
:mod:`motion_relevance.report.evaluation` writes it as CSV, Markdown and plots.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from motion_relevance.errors import InvalidInputError, MotionRelevanceError, UnknownNameError
from motion_relevance.metrics.decomposition import frozen_frame_decomposition
from motion_relevance.metrics.deletion import deletion_faithfulness
from motion_relevance.metrics.flow import flow_mask, flow_precision
from motion_relevance.metrics.frozen import freeze, frozen_accuracy
from motion_relevance.metrics.precision import mask_precision, voxel_magnitude
from motion_relevance.metrics.separation import auroc
from motion_relevance.metrics.sparsity import sparsity_ratio
from motion_relevance.models.spec import InputSpec
from motion_relevance.selective import selective_relevance

log = logging.getLogger(__name__)

SYNTHETIC_MODELS: tuple[str, ...] = ("synthetic-motion", "synthetic-appearance", "synthetic-shortcut")
#: Model pairs whose motion-share distributions are compared by AUROC (first should be higher).
SEPARATION_PAIRS: tuple[tuple[str, str], ...] = (
    ("synthetic-motion", "synthetic-appearance"),
    ("synthetic-motion", "synthetic-shortcut"),
)
SECTIONS: tuple[str, ...] = (
    "accuracy", "precision", "frozen", "deletion", "separation", "decomposition", "flow", "summary",
)
COLUMNS: tuple[str, ...] = ("section", "model", "method", "sigma", "metric", "value", "n")


@dataclass(frozen=True)
class EvaluationConfig:
    """The grid and the sample sizes of one evaluation run."""

    models: tuple[str, ...] = SYNTHETIC_MODELS
    methods: tuple[str, ...] | None = None
    """Explanation methods; None means every registered method."""
    sigmas: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
    default_sigma: float = 1.0
    """Sigma used for the per-model tables, the deletion test and the decomposition baseline."""
    clips: int = 48
    """Held-out test clips explained per model."""
    frozen_clips: int = 16
    """How many of them are also explained frozen (motion share left on frozen clips)."""
    accuracy_clips: int = 512
    seed: int = 0
    batch_size: int = 16
    deletion: bool = True
    decomposition_methods: tuple[str, ...] | None = None
    """Methods for the frozen-frame baseline (on ``synthetic-motion``); None: all ``methods``."""
    decomposition_clips: int = 8
    real_videos: tuple[str, ...] = ()
    """Real video files for the optical-flow part (empty: skipped)."""
    real_model: str = "i3d-kinetics400"
    real_methods: tuple[str, ...] = ("saliency", "input_x_gradient", "guided_backprop", "gradcam",
                                     "lrp_epsilon_plus_flat")
    real_clips_per_video: int = 1
    real_frames: int | None = 32
    """Frames per real clip (None: the real model's ``spec.frames``; the example clip has 32)."""
    real_max_side: int | None = 320
    method_options: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {"integrated_gradients": {"n_steps": 16}, "smoothgrad": {"samples": 8}}
    )
    """Extra options per method, passed to ``explain`` (fewer passes than the defaults for the
    multi-pass methods, to keep the full run within CPU reach)."""

    @classmethod
    def full(cls, **overrides: Any) -> EvaluationConfig:
        """The full grid (every method, six sigmas, 48 clips per model)."""
        return replace(cls(), **overrides)

    @classmethod
    def quick(cls, **overrides: Any) -> EvaluationConfig:
        """A small grid that runs in a minute or two on a laptop CPU (used by CI)."""
        base = cls(
            methods=("saliency", "input_x_gradient", "gradcam", "lrp_epsilon_plus_flat"),
            sigmas=(0.5, 1.0, 2.0),
            clips=16,
            frozen_clips=8,
            accuracy_clips=64,
            decomposition_methods=("input_x_gradient",),
            decomposition_clips=4,
            real_methods=("saliency",),
            real_clips_per_video=1,
            real_frames=16,
            real_max_side=256,
        )
        return replace(base, **overrides)

    def check(self) -> None:
        if not self.models:
            raise InvalidInputError("the evaluation needs at least one model")
        for name in self.models:
            if name not in SYNTHETIC_MODELS:
                raise InvalidInputError(
                    f"{name!r} is not a synthetic benchmark model; choose from {', '.join(SYNTHETIC_MODELS)}"
                )
        if not self.sigmas or any((not math.isfinite(s)) or s < 0 for s in self.sigmas):
            raise InvalidInputError(f"sigmas must be finite numbers >= 0, got {self.sigmas}")
        if self.default_sigma not in self.sigmas:
            raise InvalidInputError(
                f"default_sigma {self.default_sigma} must be one of the sigmas {self.sigmas}"
            )
        if self.real_frames is not None and self.real_frames < 2:
            raise InvalidInputError(f"real_frames must be >= 2, got {self.real_frames}")
        for name in ("clips", "frozen_clips", "accuracy_clips", "batch_size", "decomposition_clips",
                     "real_clips_per_video"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Row:
    """One number of the results table: a mean over ``n`` clips (or a single value, n = 1)."""

    section: str
    model: str
    method: str
    sigma: float | None
    metric: str
    value: float
    n: int


@dataclass(frozen=True)
class Distribution:
    """Per-clip values behind a row (for plots)."""

    model: str
    method: str
    sigma: float | None
    metric: str
    values: np.ndarray


@dataclass(frozen=True)
class Evaluation:
    """Everything a run measured, plus its configuration and notes (skipped parts)."""

    config: EvaluationConfig
    rows: tuple[Row, ...]
    distributions: tuple[Distribution, ...]
    notes: tuple[str, ...]
    seconds: float

    def value(self, section: str, model: str, method: str, sigma: float | None, metric: str) -> float:
        """The value of one row (NaN when absent)."""
        for r in self.rows:
            if (r.section, r.model, r.method, r.metric) == (section, model, method, metric) and (
                r.sigma == sigma or (r.sigma is not None and sigma is not None and math.isclose(r.sigma, sigma))
            ):
                return r.value
        return float("nan")

    def select(self, **where: Any) -> list[Row]:
        """Rows whose fields equal every given value."""
        return [r for r in self.rows if all(getattr(r, k) == v for k, v in where.items())]


# ---------------------------------------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.distributions: list[Distribution] = []

    def add(self, section: str, model: str, method: str, sigma: float | None, metric: str,
            values: torch.Tensor | np.ndarray | float, *, keep: bool = False) -> None:
        arr = np.asarray(torch.as_tensor(values).detach().cpu().double()).ravel()
        finite = arr[~np.isnan(arr)]
        value = float(finite.mean()) if finite.size else float("nan")
        self.rows.append(Row(section, model, method, sigma, metric, value, int(finite.size)))
        if keep:
            self.distributions.append(Distribution(model, method, sigma, metric, arr))


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="evaluate", unit="step")

    def step(self, label: str) -> None:
        log.info("%s", label)
        if self.bar is not None:
            self.bar.set_postfix_str(label[:40])
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def _timer(store: list[float]) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    store.append(time.perf_counter() - t0)


def _explainer(model: nn.Module, spec: InputSpec, method: str, cfg: EvaluationConfig) -> Callable[..., Any]:
    from motion_relevance.attribution import explain

    options = dict(cfg.method_options.get(method, {}))

    def run(clips: torch.Tensor, target: torch.Tensor | None = None) -> Any:
        return explain(model, clips, method, target=target, spec=spec, batch_size=cfg.batch_size, **options)

    return run


def _recall(relevance: torch.Tensor, motion: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Share of the base relevance on the moving object that the selective part keeps."""
    on_truth = (voxel_magnitude(relevance) * truth).sum(dim=(1, 2, 3))
    kept = (voxel_magnitude(motion) * truth).sum(dim=(1, 2, 3))
    return torch.where(on_truth > 0, kept / on_truth.clamp_min(1e-30), torch.nan)


def _f1(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    p, r = precision.nan_to_num(0.0), recall.nan_to_num(0.0)
    return torch.where(p + r > 0, 2 * p * r / (p + r).clamp_min(1e-30), 0.0)


def _methods(cfg: EvaluationConfig) -> tuple[str, ...]:
    """The methods to run, checked against the registry before any work starts."""
    from motion_relevance.attribution import list_methods

    known = tuple(m.name for m in list_methods())
    wanted = cfg.methods if cfg.methods is not None else known
    for name in (*wanted, *(cfg.decomposition_methods or ()), *(cfg.real_methods if cfg.real_videos else ())):
        if name not in known:
            raise UnknownNameError(f"unknown method {name!r}; see `motion-relevance methods`")
    if not wanted:
        raise InvalidInputError("the evaluation needs at least one method")
    return tuple(wanted)


def _accuracy(rec: _Recorder, name: str, model: nn.Module, spec: InputSpec, cfg: EvaluationConfig) -> None:
    from motion_relevance.synthetic import generate

    variant = name.removeprefix("synthetic-")
    agreements: list[tuple[str, float | None]] = [("", None)]
    if variant == "shortcut":
        agreements.append(("_cue_agrees_90", 0.9))
    for suffix, agreement in agreements:
        batch = generate(variant, cfg.accuracy_clips, split="test", seed=cfg.seed,
                         start=cfg.clips, cue_agreement=agreement)
        res = frozen_accuracy(model, spec.preprocess(batch.frames), torch.from_numpy(batch.labels),
                              num_classes=len(spec.labels or ()), batch_size=cfg.batch_size)
        rec.add("accuracy", name, "", None, f"test_accuracy{suffix}", torch.full((res.n,), res.accuracy))
        rec.add("accuracy", name, "", None, f"frozen_accuracy{suffix}",
                torch.full((res.n,), res.frozen_accuracy))
    rec.add("accuracy", name, "", None, "chance", 1.0 / len(spec.labels or (0,)))


def _synthetic_model(rec: _Recorder, name: str, cfg: EvaluationConfig, methods: Sequence[str],
                     shares: dict[tuple[str, str, float], torch.Tensor], progress: _Progress) -> None:
    from motion_relevance.models import load_model
    from motion_relevance.synthetic import generate

    model, spec = load_model(name)
    _accuracy(rec, name, model, spec, cfg)
    progress.step(f"{name}: accuracy")
    batch = generate(name.removeprefix("synthetic-"), cfg.clips, split="test", seed=cfg.seed)
    clips = spec.preprocess(batch.frames)
    truth = torch.from_numpy(batch.motion_mask)
    frozen = freeze(clips[: cfg.frozen_clips])
    decomposition = set(cfg.decomposition_methods if cfg.decomposition_methods is not None else methods)
    for method in methods:
        explainer = _explainer(model, spec, method, cfg)
        explainer(clips[:1])  # warm-up (imports, hooks), so the timings below are steady-state
        times: list[float] = []
        with _timer(times):
            expl = explainer(clips)
        seconds_explain = times[0] / len(clips)
        rel, target = expl.relevance.detach(), expl.target
        frozen_rel = explainer(frozen).relevance.detach()
        for sigma in cfg.sigmas:
            with _timer(times if sigma == cfg.default_sigma else []):
                sel = selective_relevance(rel, sigma)
            base_p = mask_precision(rel, truth)
            sel_p = mask_precision(sel.motion, truth)
            recall = _recall(rel, sel.motion, truth)
            keep = sigma == cfg.default_sigma
            rec.add("precision", name, method, sigma, "precision_base", base_p, keep=keep)
            rec.add("precision", name, method, sigma, "precision_selective", sel_p, keep=keep)
            both = ~(base_p.isnan() | sel_p.isnan())
            rec.add("precision", name, method, sigma, "selective_wins",
                    torch.where(both, (sel_p > base_p).double(), torch.nan))
            rec.add("precision", name, method, sigma, "recall_selective", recall)
            rec.add("precision", name, method, sigma, "f1_selective", _f1(sel_p, recall))
            rec.add("precision", name, method, sigma, "motion_share", sel.motion_share, keep=keep)
            rec.add("precision", name, method, sigma, "sparsity_ratio", sparsity_ratio(rel, sel.motion))
            shares[(name, method, sigma)] = sel.motion_share
            for padding in ("replicate", "zeros"):
                fs = selective_relevance(frozen_rel, sigma, padding=padding).motion_share
                rec.add("frozen", name, method, sigma, f"motion_share_frozen_{padding}", fs)
            if cfg.deletion and sigma == cfg.default_sigma:
                d = deletion_faithfulness(model, clips, target, rel, sel.mask, seed=cfg.seed,
                                          batch_size=cfg.batch_size)
                rec.add("deletion", name, method, sigma, "drop_motion", d.motion)
                rec.add("deletion", name, method, sigma, "drop_static", d.static)
                rec.add("deletion", name, method, sigma, "drop_random", d.random)
                rec.add("deletion", name, method, sigma, "removed_fraction",
                        d.removed.double() / truth[0].numel())
        seconds_selective = sum(times) / len(clips)
        if name == "synthetic-motion" and method in decomposition:
            n = min(cfg.decomposition_clips, len(clips))
            dtimes: list[float] = []
            with _timer(dtimes):
                dec = frozen_frame_decomposition(
                    lambda x, t, _e=explainer: _e(x, t).relevance.detach(),
                    clips[:n], target[:n], rel[:n])
            sel = selective_relevance(rel[:n], cfg.default_sigma)
            s = cfg.default_sigma
            rec.add("decomposition", name, method, s, "precision_base", mask_precision(rel[:n], truth[:n]))
            rec.add("decomposition", name, method, s, "precision_selective",
                    mask_precision(sel.motion, truth[:n]))
            rec.add("decomposition", name, method, s, "precision_frozen_frame",
                    mask_precision(dec.temporal, truth[:n]))
            rec.add("decomposition", name, method, s, "seconds_per_clip_selective",
                    torch.full((n,), seconds_selective))
            rec.add("decomposition", name, method, s, "seconds_per_clip_frozen_frame",
                    torch.full((n,), seconds_explain + dtimes[0] / n))
            rec.add("decomposition", name, method, s, "explanations_per_clip_frozen_frame",
                    torch.full((n,), float(dec.explanations_per_clip)))
        progress.step(f"{name}: {method}")


def _separation(rec: _Recorder, cfg: EvaluationConfig, methods: Sequence[str],
                shares: dict[tuple[str, str, float], torch.Tensor]) -> None:
    for high, low in SEPARATION_PAIRS:
        for method in methods:
            for sigma in cfg.sigmas:
                a, b = shares.get((high, method, sigma)), shares.get((low, method, sigma))
                if a is None or b is None:
                    continue
                rec.add("separation", f"{high} vs {low}", method, sigma, "auroc_motion_share",
                        auroc(a, b))


def _model_view(clips: torch.Tensor, spec: InputSpec) -> np.ndarray:
    """uint8 frames ``(N, T, H, W, 3)`` of what the model sees (the preprocessed clips undone)."""
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1, 1)
    pixels = ((clips * std + mean) / spec.scale).clamp(0, 255).round().to(torch.uint8)
    frames = pixels.permute(0, 2, 3, 4, 1).numpy()
    return frames[..., ::-1].copy() if spec.channel_order == "BGR" else frames


def _real(rec: _Recorder, cfg: EvaluationConfig, notes: list[str], progress: _Progress) -> None:
    from motion_relevance.models import load_model
    from motion_relevance.video import iter_clips

    try:
        model, spec = load_model(cfg.real_model)
    except MotionRelevanceError as exc:
        notes.append(f"optical-flow part skipped: {exc}")
        log.warning("optical-flow part skipped: %s", exc)
        for _ in range(len(cfg.real_videos) * len(cfg.real_methods)):
            progress.step("flow: skipped")
        return
    clip_list: list[np.ndarray] = []
    length = cfg.real_frames or spec.frames
    for path in cfg.real_videos:
        windows = iter_clips(path, length, stride=length, max_side=cfg.real_max_side)
        try:
            for k, (_, frames) in enumerate(windows):
                if k >= cfg.real_clips_per_video:
                    break
                clip_list.append(frames)
        except MotionRelevanceError as exc:
            notes.append(f"{path} skipped: {exc}")
            log.warning("%s skipped: %s", path, exc)
    if not clip_list:
        notes.append("optical-flow part skipped: no clips could be cut from the real videos")
        return
    clips = torch.cat([spec.preprocess(f) for f in clip_list])
    view = _model_view(clips, spec)
    truth = torch.from_numpy(np.stack([flow_mask(v) for v in view]))
    for method in cfg.real_methods:
        explainer = _explainer(model, spec, method, cfg)
        rel = torch.cat([explainer(clips[i : i + 1]).relevance.detach() for i in range(len(clips))])
        for sigma in cfg.sigmas:
            sel = selective_relevance(rel, sigma)
            fp = flow_precision(rel, truth, sel.mask)
            rec.add("flow", cfg.real_model, method, sigma, "flow_precision_base", fp.base)
            rec.add("flow", cfg.real_model, method, sigma, "flow_precision_selective", fp.selective)
            rec.add("flow", cfg.real_model, method, sigma, "motion_share", sel.motion_share)
        rec.add("flow", cfg.real_model, method, None, "flow_mask_fraction", truth.double().mean(dim=(1, 2, 3)))
        progress.step(f"flow: {method}")


def _summary(rec: _Recorder, cfg: EvaluationConfig, methods: Sequence[str]) -> None:
    """The sigma with the best mean F1 (selective precision x recall) on ``synthetic-motion``."""
    by_sigma: dict[float, list[float]] = {}
    for r in rec.rows:
        if r.section == "precision" and r.model == "synthetic-motion" and r.metric == "f1_selective":
            by_sigma.setdefault(float(r.sigma or 0.0), []).append(r.value)
    if not by_sigma:
        return
    means = {s: float(np.nanmean(v)) for s, v in by_sigma.items()}
    for s, v in sorted(means.items()):
        rec.add("summary", "synthetic-motion", "all", s, "mean_f1_selective", v)
    best = max(means, key=lambda s: (means[s], -s))
    rec.add("summary", "synthetic-motion", "all", None, "best_sigma_by_f1", best)


def example_videos(root: str | Path = "examples") -> tuple[str, ...]:
    """The real example videos (``*.mp4``, ``*.webm``, ``*.avi``) in ``root``, sorted."""
    folder = Path(root)
    if not folder.is_dir():
        return ()
    found = [p for ext in ("*.mp4", "*.webm", "*.avi", "*.mov") for p in folder.glob(ext)]
    return tuple(sorted(str(p) for p in found))


def run_evaluation(config: EvaluationConfig | None = None, *, progress: bool = False) -> Evaluation:
    """Run the benchmark described by ``config`` (default: the full grid)."""
    cfg = config if config is not None else EvaluationConfig()
    cfg.check()
    methods = _methods(cfg)
    from motion_relevance.models import list_models

    known_models = {m.name for m in list_models()}
    for name in (*cfg.models, *((cfg.real_model,) if cfg.real_videos else ())):
        if name not in known_models:
            raise UnknownNameError(f"unknown model {name!r}; see `motion-relevance models`")
    for path in cfg.real_videos:
        if not Path(path).is_file():
            raise InvalidInputError(f"real video {path} does not exist; pass existing video files")
    t0 = time.perf_counter()
    rec = _Recorder()
    notes: list[str] = []
    shares: dict[tuple[str, str, float], torch.Tensor] = {}
    real_steps = len(cfg.real_methods) if cfg.real_videos else 0
    bar = _Progress(len(cfg.models) * (1 + len(methods)) + real_steps, progress)
    try:
        for name in cfg.models:
            _synthetic_model(rec, name, cfg, methods, shares, bar)
        _separation(rec, cfg, methods, shares)
        _summary(rec, cfg, methods)
        if cfg.real_videos:
            _real(rec, cfg, notes, bar)
        else:
            notes.append("optical-flow part skipped: no real videos given")
    finally:
        bar.close()
    return Evaluation(
        config=cfg,
        rows=tuple(rec.rows),
        distributions=tuple(rec.distributions),
        notes=tuple(notes),
        seconds=time.perf_counter() - t0,
    )


__all__ = [
    "COLUMNS",
    "SECTIONS",
    "SEPARATION_PAIRS",
    "SYNTHETIC_MODELS",
    "Distribution",
    "Evaluation",
    "EvaluationConfig",
    "Row",
    "example_videos",
    "run_evaluation",
]
