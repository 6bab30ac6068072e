"""The evidence benchmark, v2: does a motion number track how much a model relies on motion?

Ground truth of *reliance*, not only of masks: the graded-reliance family
(``synthetic-graded-LLL-sS``, 5 motion levels x 3 seeds) is trained on two-cue clips, and each
model's reliance on motion is measured by intervention (``metrics.reliance``). Every model
explains the **same** held-out test scenes (both cues agree), so model and data are not
confounded. Steps, in order:

1. **Validation** (``split="val"``, never reported as evidence): the explanation settings
   (``ties`` x ``context_frames``) are chosen by the mean over methods of
   ``AUROC(motion_score; level 100 vs level 0) - mean frozen-clip motion_score`` on the seed-0
   models, and sigma (for the paper's share and selective precision) by the mean F1 of
   selective precision and recall on the level-100 seed-0 model.
2. **Test**: per model and method, the motion score, the paper's motion share and two
   baselines that could explain a result away: ``B0`` (share of ``|R|`` on voxels whose input
   changes, no selective step) and a random mask of the paper's mask's size; the same on
   frozen scenes; selective vs base precision on the moving object (level-100 models).
3. **Summaries with bootstrap 95 % CIs**: Spearman rho of each model's mean score vs its
   measured reliance (models resampled), AUROC level 100 vs level 0 (clips resampled), frozen
   scores, the flicker test and a moving blob.
4. **Real clips** (optional): a pretrained model on real videos and their frozen versions,
   motion score and optical-flow precision with CIs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from motion_relevance.attribution import explain
from motion_relevance.errors import InvalidInputError, MotionRelevanceError
from motion_relevance.metrics.deletion import deletion_faithfulness
from motion_relevance.metrics.flow import flow_mask, flow_precision
from motion_relevance.metrics.motion_reliance import motion_reliance
from motion_relevance.metrics.precision import (
    f1_score,
    mask_precision,
    selective_recall,
    voxel_magnitude,
)
from motion_relevance.metrics.reliance import (
    Reliance,
    reliance_from_probabilities,
    true_class_probability,
)
from motion_relevance.metrics.separation import auroc
from motion_relevance.metrics.sparsity import sparsity_ratio
from motion_relevance.metrics.statistics import (
    Estimate,
    auroc_ci,
    mean_ci,
    reliance_ci,
    spearman_ci,
)
from motion_relevance.models.spec import InputSpec
from motion_relevance.motion_score import motion_score
from motion_relevance.runs.methods import resolve_methods
from motion_relevance.runs.progress import ProgressCallback, report
from motion_relevance.selective import selective_relevance

log = logging.getLogger(__name__)

#: Candidate explanation settings compared on the validation split: (ties, context frames).
SETTINGS_CANDIDATES: tuple[tuple[str, int], ...] = (("first", 0), ("shared", 0), ("first", 16),
                                                    ("shared", 16))
#: Method options compared on the validation split (at the chosen ties and context), per method:
#: the first is the method's default. SmoothGrad's noise drawn for every voxel adds flicker,
#: i.e. motion, to every noisy copy; drawn once per copy and repeated in every frame it adds none.
#: Occlusion's 4-frame windows make its map constant over blocks of 4 frames, which the score
#: (comparing t-1 with t+1) sees only at block edges; 2-frame windows (twice the passes) less so.
OPTION_CANDIDATES: Mapping[str, tuple[Mapping[str, Any], ...]] = {
    "smoothgrad": ({"noise_in_time": "independent"}, {"noise_in_time": "static"}),
    "occlusion": ({"window": (4, 16, 16)}, {"window": (2, 16, 16)}),
}
SECTIONS: tuple[str, ...] = ("validation", "reliance", "score", "correlation", "separation",
                             "frozen", "flicker", "precision", "deletion", "real", "settings")
COLUMNS: tuple[str, ...] = ("section", "model", "method", "metric", "value", "low", "high", "n")
#: The numbers compared against measured reliance, beside the motion score.
SCORES: tuple[str, ...] = ("motion_score", "motion_share", "b0_input_change", "random_mask")
FLICKER_EPS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclass(frozen=True)
class EvaluationConfig:
    """What one evaluation run explains, and how much of it."""

    levels: tuple[int, ...] = (0, 30, 40, 50, 100)
    """Motion levels of the family (``GRADED_LEVELS``): chosen from the validation reliance of
    trial models so that measured reliance spreads from 0 to 1 (``docs/evidence.md``)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] | None = None
    """Explanation methods; None means every registered method."""
    clips: int = 24
    """Held-out test scenes, explained by every model."""
    frozen_clips: int = 8
    reliance_clips: int = 1024
    """Scenes of each intervention per model (forward passes only; the reliance CI is about +-0.02)."""
    val_clips: int = 12
    val_frozen_clips: int = 4
    candidates: tuple[tuple[str, int], ...] = SETTINGS_CANDIDATES
    option_candidates: Mapping[str, tuple[Mapping[str, Any], ...]] = field(
        default_factory=lambda: dict(OPTION_CANDIDATES)
    )
    """Per method, option sets compared on the validation split; the best joins ``method_options``."""
    sigmas: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)
    resamples: int = 1000
    seed: int = 0
    real_videos: tuple[str, ...] = ()
    real_model: str = "i3d-kinetics400"
    real_methods: tuple[str, ...] = ("saliency", "input_x_gradient", "guided_backprop", "gradcam",
                                     "lrp_epsilon_plus_flat")
    real_clips_per_video: int = 1
    real_frames: int = 16
    real_max_side: int = 256
    method_options: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {"integrated_gradients": {"n_steps": 8},
                                 "smoothgrad": {"samples": 8}}
    )
    workers: int = 1
    """Processes that explain the test models in parallel (one torch thread each); how the run
    runs, not what it computes: the rows agree to float32 rounding (about 1e-8 relative) for any
    number."""
    batch_size: int = 8
    """Passes per forward of the multi-pass methods (IG, SmoothGrad, occlusion): batching them
    cut their time by 1.8x on the graded models; it does not change the maps."""

    @classmethod
    def quick(cls, **overrides: Any) -> EvaluationConfig:
        """A small run for CI (two levels, one seed, three methods, a few clips)."""
        base = cls(levels=(0, 100), seeds=(0,), methods=("saliency", "gradcam",
                   "lrp_epsilon_plus_flat"), clips=8, frozen_clips=4, reliance_clips=64,
                   val_clips=4, val_frozen_clips=2, candidates=(("first", 0), ("shared", 16)),
                   sigmas=(1.0, 2.0), resamples=200, real_methods=("saliency",),
                   real_frames=8, real_max_side=160)
        return replace(base, **overrides)

    def check(self) -> None:
        from motion_relevance.models.synthetic_presets import GRADED_LEVELS, GRADED_SEEDS

        if 0 not in self.levels or 100 not in self.levels:
            raise InvalidInputError("the evaluation needs levels 0 and 100 (the two ends)")
        for level in self.levels:
            if level not in GRADED_LEVELS:
                raise InvalidInputError(f"level {level} is not one of {GRADED_LEVELS}")
        for seed in self.seeds:
            if seed not in GRADED_SEEDS:
                raise InvalidInputError(f"seed {seed} is not one of {GRADED_SEEDS}")
        for name in ("clips", "frozen_clips", "reliance_clips", "val_clips", "val_frozen_clips",
                     "resamples", "real_clips_per_video", "batch_size", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if self.frozen_clips > self.clips or self.val_frozen_clips > self.val_clips:
            raise InvalidInputError("frozen clips must not outnumber the clips they freeze")
        if not self.sigmas or any(not math.isfinite(s) or s < 0 for s in self.sigmas):
            raise InvalidInputError(f"sigmas must be finite numbers >= 0, got {self.sigmas}")
        if not self.candidates:
            raise InvalidInputError("at least one (ties, context_frames) candidate is needed")
        if self.real_frames < 4:
            raise InvalidInputError(f"real_frames must be >= 4, got {self.real_frames}")


@dataclass(frozen=True)
class Row:
    """One reported number: an estimate with its 95 % CI (NaN bounds where none applies)."""

    section: str
    model: str
    method: str
    metric: str
    value: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class ModelScores:
    """Per-clip values of one model and method on the test scenes (for plots)."""

    model: str
    method: str
    reliance: float
    values: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Evaluation:
    """Everything a run measured, its configuration and the settings chosen on validation."""

    config: EvaluationConfig
    rows: tuple[Row, ...]
    scores: tuple[ModelScores, ...]
    ties: str
    context_frames: int
    sigma: float
    notes: tuple[str, ...]
    seconds: float
    chosen_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Method options chosen on the validation split (``option_candidates``)."""

    def value(self, section: str, model: str, method: str, metric: str) -> float:
        """The value of one row (NaN when absent)."""
        for r in self.rows:
            if (r.section, r.model, r.method, r.metric) == (section, model, method, metric):
                return r.value
        return math.nan

    def select(self, **where: Any) -> list[Row]:
        """Rows whose fields equal every given value."""
        return [r for r in self.rows if all(getattr(r, k) == v for k, v in where.items())]


# ---------------------------------------------------------------------------------------------
# pure helpers


def input_change_mask(frames: np.ndarray) -> torch.Tensor:
    """bool ``(N, T, H, W)``: voxels whose pixels differ between t-1 and t+1 (edges replicated)."""
    f = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.int16)  # (N, T, H, W, 3)
    prev = torch.cat([f[:, :1], f[:, :-1]], dim=1)
    nxt = torch.cat([f[:, 1:], f[:, -1:]], dim=1)
    return (prev != nxt).any(dim=-1)


def share_on(relevance: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(N,)`` share of ``sum_c |R|`` on the voxels of ``mask`` ``(N, T, H, W)``."""
    mag = voxel_magnitude(relevance).double()
    total = mag.sum(dim=(1, 2, 3))
    return torch.where(total > 0, (mag * mask).sum(dim=(1, 2, 3)) / total.clamp_min(1e-300), 0.0)


def random_mask_like(mask: torch.Tensor, seed: int) -> torch.Tensor:
    """A random mask with as many voxels per clip as ``mask`` (N, ..., uniform positions)."""
    gen = torch.Generator().manual_seed(seed)
    flat = mask.reshape(mask.shape[0], -1)
    out = torch.zeros_like(flat)
    for i in range(flat.shape[0]):
        k = int(flat[i].sum())
        out[i, torch.randperm(flat.shape[1], generator=gen)[:k]] = True
    return out.view_as(mask)


def flicker(relevance: torch.Tensor, eps: float, seed: int = 0) -> torch.Tensor:
    """The time mean of ``relevance`` times ``1 + eps (a(t) - 1)``, ``a`` fixed uniform [0, 2]."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(relevance.shape[2], generator=gen, dtype=torch.float64) * 2.0
    mean = relevance.double().mean(dim=2, keepdim=True)
    return (mean * (1.0 + eps * (a.view(1, 1, -1, 1, 1) - 1.0))).float()


def moving_blob(frames: int = 16, size: int = 32, speed: float = 2.0) -> torch.Tensor:
    """``(1, 3, T, H, W)`` relevance: a Gaussian blob crossing the frame at ``speed`` px/frame."""
    t = torch.arange(frames, dtype=torch.float32).view(-1, 1, 1)
    y = torch.arange(size, dtype=torch.float32).view(1, -1, 1)
    x = torch.arange(size, dtype=torch.float32).view(1, 1, -1)
    cx = (size - speed * frames) / 2 + speed * t
    blob = torch.exp(-((y - size / 2) ** 2 + (x - cx) ** 2) / (2 * 1.5**2))
    return blob.expand(3, -1, -1, -1)[None].contiguous()


# ---------------------------------------------------------------------------------------------
# scenes and explanations


@dataclass(frozen=True)
class _Scenes:
    """Test or validation scenes: the explained clips with their real neighbouring frames."""

    clips: torch.Tensor  # (N, 3, T, H, W)
    before: torch.Tensor  # (N, 3, K, H, W) real frames before each clip
    after: torch.Tensor
    frames: np.ndarray  # uint8 (N, T, H, W, 3) of the clips
    labels: torch.Tensor
    motion_mask: torch.Tensor  # (N, T, H, W) ground truth of what moves
    spec: InputSpec


_MAX_CONTEXT = 16


def _scenes(n: int, split: str, seed: int, spec: InputSpec) -> _Scenes:
    from motion_relevance.synthetic.generator import generate

    k, t = _MAX_CONTEXT, spec.frames
    b = generate("shortcut", n, split=split, seed=seed, frames=t + 2 * k, size=spec.size[0],
                 motion_agreement=1.0, cue_agreement=1.0)
    long_spec = dataclasses.replace(spec, frames=t + 2 * k)
    full = long_spec.preprocess(b.frames)
    return _Scenes(
        clips=full[:, :, k : k + t].contiguous(), before=full[:, :, :k].contiguous(),
        after=full[:, :, k + t :].contiguous(), frames=b.frames[:, k : k + t],
        labels=torch.from_numpy(b.labels), motion_mask=torch.from_numpy(b.motion_mask[:, k : k + t]),
        spec=spec,
    )


def _frozen(scenes: _Scenes, n: int) -> _Scenes:
    """The first ``n`` scenes frozen: their middle frame repeated, context included."""
    mid = scenes.clips[:n, :, scenes.clips.shape[2] // 2 : scenes.clips.shape[2] // 2 + 1]
    frames = scenes.frames[:n, scenes.frames.shape[1] // 2][:, None].repeat(scenes.frames.shape[1], 1)
    return _Scenes(
        clips=mid.expand_as(scenes.clips[:n]).contiguous(),
        before=mid.expand_as(scenes.before[:n]).contiguous(),
        after=mid.expand_as(scenes.after[:n]).contiguous(),
        frames=frames, labels=scenes.labels[:n],
        motion_mask=torch.zeros_like(scenes.motion_mask[:n]), spec=scenes.spec,
    )


def _explain(model: nn.Module, scenes: _Scenes, method: str, ties: str, context: int,
             cfg: EvaluationConfig) -> torch.Tensor:
    options = dict(cfg.method_options.get(method, {}))
    ctx = None
    if context:
        ctx = (scenes.before[:, :, _MAX_CONTEXT - context :], scenes.after[:, :, :context])
    expl = explain(model, scenes.clips, method, spec=scenes.spec, ties=ties, context_frames=context,
                   context=ctx, seed=cfg.seed, batch_size=cfg.batch_size, **options)
    return expl.relevance.detach()


# ---------------------------------------------------------------------------------------------
# the run


class _Rows:
    def __init__(self, resamples: int, seed: int) -> None:
        self.rows: list[Row] = []
        self.resamples, self.seed = resamples, seed

    def add(self, section: str, model: str, method: str, metric: str, est: Estimate | float,
            n: int = 1) -> None:
        if not isinstance(est, Estimate):
            est = Estimate(float(est), math.nan, math.nan, n)
        self.rows.append(Row(section, model, method, metric, est.value, est.low, est.high, est.n))

    def mean(self, section: str, model: str, method: str, metric: str, values: Any) -> None:
        arr = np.asarray(torch.as_tensor(values).double().cpu()).ravel()
        self.add(section, model, method, metric, mean_ci(arr, resamples=self.resamples, seed=self.seed))


def _family(cfg: EvaluationConfig, notes: list[str]) -> list[tuple[str, int, int]]:
    from motion_relevance.models.synthetic_presets import (
        SYNTHETIC_PRESETS,
        graded_name,
        synthetic_weights_available,
    )

    found, missing = [], []
    for level in cfg.levels:
        for seed in cfg.seeds:
            name = graded_name(level, seed)
            ok = name in SYNTHETIC_PRESETS and synthetic_weights_available(name)
            (found if ok else missing).append((name, level, seed))
    if missing:
        notes.append("models without shipped weights, skipped: " + ", ".join(m[0] for m in missing))
    if not any(lv == 0 for _, lv, _ in found) or not any(lv == 100 for _, lv, _ in found):
        raise InvalidInputError("the graded models of levels 0 and 100 are not installed; "
                                "train them with scripts/train_graded.py")
    return found


def _with_options(cfg: EvaluationConfig, options: Mapping[str, Mapping[str, Any]]) -> EvaluationConfig:
    """``cfg`` with ``options`` added to each named method's ``method_options``."""
    merged = {**cfg.method_options, **{m: {**cfg.method_options.get(m, {}), **o} for m, o in options.items()}}
    return replace(cfg, method_options=merged)


def _validate(cfg: EvaluationConfig, methods: Sequence[str], family: list[tuple[str, int, int]],
              rows: _Rows, progress: ProgressCallback | None
              ) -> tuple[str, int, float, dict[str, dict[str, Any]]]:
    """Choose (ties, context_frames), then each method's options among ``option_candidates``,
    then sigma, on the validation split."""
    from motion_relevance.models import load_model

    ends = {}
    for name, level, seed in family:
        if level in (0, 100) and (level not in ends or seed < ends[level][1]):
            ends[level] = (name, seed)
    models = {lv: load_model(ends[lv][0]) for lv in (0, 100)}
    spec = models[100][1]
    scenes = _scenes(cfg.val_clips, "val", cfg.seed, spec)
    frozen = _frozen(scenes, cfg.val_frozen_clips)
    best, best_key = cfg.candidates[0], -math.inf
    done, total = 0, len(cfg.candidates) * len(methods)
    level100: dict[tuple[str, int], dict[str, torch.Tensor]] = {}  # reused for sigma below
    for ties, context in cfg.candidates:
        objective = []
        kept = level100.setdefault((ties, context), {})
        for method in methods:
            kept[method] = _explain(models[100][0], scenes, method, ties, context, cfg)
            s = {0: motion_score(_explain(models[0][0], scenes, method, ties, context, cfg)),
                 100: motion_score(kept[method])}
            f = torch.cat([motion_score(_explain(models[lv][0], frozen, method, ties, context, cfg))
                           for lv in (0, 100)])
            a = auroc(s[100], s[0])
            objective.append(a - float(f.mean()))
            rows.add("validation", f"ties={ties} context={context}", method, "auroc_minus_frozen",
                     a - float(f.mean()), n=len(scenes.clips))
            done += 1
            report(progress, "validation", done, total, unit="step")
        key = float(np.mean(objective))
        rows.add("validation", f"ties={ties} context={context}", "all", "mean_objective", key)
        if key > best_key + 1e-9:
            best, best_key = (ties, context), key
    ties, context = best
    chosen: dict[str, dict[str, Any]] = {}
    for method in methods:
        candidates = cfg.option_candidates.get(method, ())
        if len(candidates) < 2:
            continue
        best_options, best_value = dict(candidates[0]), -math.inf
        for candidate in candidates:
            trial = _with_options(cfg, {method: candidate})
            s = {lv: motion_score(_explain(models[lv][0], scenes, method, ties, context, trial)) for lv in (0, 100)}
            f = torch.cat([motion_score(_explain(models[lv][0], frozen, method, ties, context, trial))
                           for lv in (0, 100)])
            value = auroc(s[100], s[0]) - float(f.mean())
            label = " ".join(f"{k}={v}" for k, v in candidate.items())
            rows.add("validation", f"ties={ties} context={context} {label}", method, "auroc_minus_frozen", value,
                     n=len(scenes.clips))  # fmt: skip
            if value > best_value + 1e-9:
                best_options, best_value = dict(candidate), value
        chosen[method] = best_options
        if best_options != dict(candidates[0]):  # the level-100 maps sigma is chosen on follow the choice
            trial = _with_options(cfg, {method: best_options})
            level100[best][method] = _explain(models[100][0], scenes, method, ties, context, trial)
    # sigma: best mean F1 of selective precision and recall on the level-100 model
    f1: dict[float, list[float]] = {s: [] for s in cfg.sigmas}
    for method in methods:
        rel = level100[best][method]
        for sigma in cfg.sigmas:
            sel = selective_relevance(rel, sigma)
            p = mask_precision(sel.motion, scenes.motion_mask)
            r = selective_recall(rel, sel.motion, scenes.motion_mask)
            f1[sigma].append(float(f1_score(p, r).mean()))
    means = {s: float(np.mean(v)) for s, v in f1.items()}
    for s, v in means.items():
        rows.add("validation", ends[100][0], "all", f"mean_f1_sigma_{s:g}", v)
    sigma = max(means, key=lambda s: (means[s], -s))
    return ties, context, sigma, chosen


def _per_model(cfg: EvaluationConfig, name: str, methods: Sequence[str], scenes: _Scenes,
               frozen: _Scenes, ties: str, context: int, sigma: float, rows: _Rows,
               progress: ProgressCallback | None, done: list[int], total: int
               ) -> tuple[Reliance, dict[str, dict[str, np.ndarray]]]:
    from motion_relevance.models import load_model
    from motion_relevance.synthetic.generator import intervention_clips

    model, spec = load_model(name)
    iv = intervention_clips(cfg.reliance_clips, split="test", seed=cfg.seed, start=cfg.clips,
                            frames=spec.frames, size=spec.size[0])
    labels = torch.from_numpy(iv.agree.labels)
    (pa, hits), (pm, _), (pc, _) = (true_class_probability(model, spec.preprocess(b.frames), labels)
                                    for b in (iv.agree, iv.motion_wrong, iv.cue_wrong))
    rel = reliance_from_probabilities(pa, pm, pc, accuracy=float(hits.float().mean()))
    rows.add("reliance", name, "", "reliance", reliance_ci(pa.numpy(), pm.numpy(), pc.numpy(),
                                                           resamples=cfg.resamples, seed=cfg.seed))
    rows.add("reliance", name, "", "accuracy_agree", rel.accuracy, n=rel.n)
    for metric in ("p_agree", "p_motion_wrong", "p_cue_wrong"):
        rows.add("reliance", name, "", metric, getattr(rel, metric), n=rel.n)
    # the behavioural reliance users are shown (mr.motion_reliance), on the explained scenes
    behavioural = motion_reliance(model, scenes.clips, target=scenes.labels, permutations=16, seed=cfg.seed).score
    rows.mean("reliance", name, "", "motion_reliance", behavioural)
    changed = input_change_mask(scenes.frames)
    out: dict[str, dict[str, np.ndarray]] = {}
    for method in methods:
        r = _explain(model, scenes, method, ties, context, cfg)
        sel = selective_relevance(r, sigma)
        values = {
            "motion_score": motion_score(r),
            "motion_share": sel.motion_share,
            "b0_input_change": share_on(r, changed),
            "random_mask": share_on(r, random_mask_like(sel.mask[:, 0], cfg.seed)),
        }
        fr = _explain(model, frozen, method, ties, context, cfg)
        fsel = selective_relevance(fr, sigma)
        values["frozen_motion_score"] = motion_score(fr)
        values["frozen_motion_share"] = fsel.motion_share
        for metric, v in values.items():
            rows.mean("score" if not metric.startswith("frozen") else "frozen", name, method,
                      metric, v)
        rows.mean("score", name, method, "sparsity_ratio", sparsity_ratio(r, sel.motion))
        rows.mean("score", name, method, "mask_fraction", sel.mask.double().mean(dim=(1, 2, 3, 4)))
        if name.startswith("synthetic-graded-100"):
            base_p = mask_precision(r, scenes.motion_mask)
            sel_p = mask_precision(sel.motion, scenes.motion_mask)
            rand_p = mask_precision(r * random_mask_like(sel.mask, cfg.seed + 1), scenes.motion_mask)
            rows.mean("precision", name, method, "precision_base", base_p)
            rows.mean("precision", name, method, "precision_selective", sel_p)
            rows.mean("precision", name, method, "precision_random_mask", rand_p)
            rows.mean("precision", name, method, "chance", scenes.motion_mask.double().mean(dim=(1, 2, 3)))
            values["precision_base"], values["precision_selective"] = base_p, sel_p
        # deletion with operators that also change static content (5x5 spatial blur; zero, the
        # normalised mean, which also removes colour), every selection drawn from the voxels
        # the operator changes
        for op, suffix in (("blur", ""), ("zero", "_zero")):
            dl = deletion_faithfulness(model, scenes.clips, scenes.labels, r, sel.mask[:, 0], seed=cfg.seed,
                                       operator=op, changed_only=True)  # fmt: skip
            for metric, v in (("drop_motion", dl.motion), ("drop_static", dl.static), ("drop_random", dl.random)):
                rows.mean("deletion", name, method, metric + suffix, v)
            values[f"deletion_motion_minus_static{suffix}"] = dl.motion - dl.static
            values[f"deletion_motion_minus_random{suffix}"] = dl.motion - dl.random
        values["motion_reliance"] = behavioural
        out[method] = {k: np.asarray(torch.as_tensor(v).double()) for k, v in values.items()}
        if name.startswith("synthetic-graded-100"):
            for eps in FLICKER_EPS:
                fl = flicker(r, eps, cfg.seed)
                rows.mean("flicker", name, method, f"motion_score_eps_{eps:g}", motion_score(fl))
                rows.mean("flicker", name, method, f"motion_share_eps_{eps:g}",
                          selective_relevance(fl, sigma).motion_share)
        done[0] += 1
        report(progress, "models x methods", done[0], total, unit="step")
    return rel, out


def _model_job(cfg: EvaluationConfig, name: str, methods: Sequence[str], scenes: _Scenes, frozen: _Scenes,
               ties: str, context: int, sigma: float) -> tuple[Reliance, dict[str, dict[str, np.ndarray]], list[Row]]:
    """``_per_model`` in a worker process: its rows come back with its results."""
    torch.set_num_threads(1)
    rows = _Rows(cfg.resamples, cfg.seed)
    rel, values = _per_model(cfg, name, methods, scenes, frozen, ties, context, sigma, rows, None, [0], 0)
    return rel, values, rows.rows


def _all_models(cfg: EvaluationConfig, family: list[tuple[str, int, int]], methods: Sequence[str],
                scenes: _Scenes, frozen: _Scenes, ties: str, context: int, sigma: float, rows: _Rows,
                progress: ProgressCallback | None, done: list[int], total: int
                ) -> Iterator[tuple[str, Reliance, dict[str, dict[str, np.ndarray]]]]:
    """Every test model's results in family order, from ``cfg.workers`` processes (started by
    ``runs.processes``, one torch thread each) or from this one."""
    if cfg.workers == 1 or len(family) == 1:
        for name, _, _ in family:
            rel, values = _per_model(cfg, name, methods, scenes, frozen, ties, context, sigma, rows,
                                     progress, done, total)  # fmt: skip
            yield name, rel, values
        return
    from concurrent.futures import ProcessPoolExecutor

    from motion_relevance.runs.processes import process_context, workers_starting

    ctx = process_context(__name__)
    with ProcessPoolExecutor(max_workers=min(cfg.workers, len(family)), mp_context=ctx) as pool:
        with workers_starting():  # started on the first submit
            futures = [(name, pool.submit(_model_job, cfg, name, methods, scenes, frozen, ties, context, sigma))
                       for name, _, _ in family]  # fmt: skip
        for name, future in futures:
            rel, values, model_rows = future.result()
            rows.rows.extend(model_rows)
            done[0] += len(methods)
            report(progress, "models x methods", done[0], total, unit="step")
            yield name, rel, values


def _summaries(cfg: EvaluationConfig, methods: Sequence[str], family: list[tuple[str, int, int]],
               reliance: dict[str, float], per_model: dict[str, dict[str, dict[str, np.ndarray]]],
               rows: _Rows) -> None:
    names = [n for n, _, _ in family]
    levels = {n: lv for n, lv, _ in family}
    rel = np.array([reliance[n] for n in names])
    if methods:  # the behavioural reliance does not depend on the method: one row
        behavioural = np.array([per_model[n][methods[0]]["motion_reliance"].mean() for n in names])
        rows.add("correlation", "graded family", "", "spearman_motion_reliance",
                 spearman_ci(behavioural, rel, resamples=cfg.resamples, seed=cfg.seed))
    for method in methods:
        for metric in SCORES:
            means = np.array([per_model[n][method][metric].mean() for n in names])
            rows.add("correlation", "graded family", method, f"spearman_{metric}",
                     spearman_ci(means, rel, resamples=cfg.resamples, seed=cfg.seed))
            hi = np.concatenate([per_model[n][method][metric] for n in names if levels[n] == 100])
            lo = np.concatenate([per_model[n][method][metric] for n in names if levels[n] == 0])
            rows.add("separation", "level 100 vs level 0", method, f"auroc_{metric}",
                     auroc_ci(hi, lo, resamples=cfg.resamples, seed=cfg.seed))
        for lv in (100, 0):
            for metric in ("deletion_motion_minus_static", "deletion_motion_minus_random",
                           "deletion_motion_minus_static_zero", "deletion_motion_minus_random_zero"):
                pooled = np.concatenate([per_model[n][method][metric] for n in names if levels[n] == lv])
                rows.add("deletion", f"level {lv}", method, metric,
                         mean_ci(pooled, resamples=cfg.resamples, seed=cfg.seed))
        frozen = np.concatenate([per_model[n][method]["frozen_motion_score"] for n in names])
        rows.add("frozen", "all graded models", method, "frozen_motion_score",
                 mean_ci(frozen, resamples=cfg.resamples, seed=cfg.seed))
        rows.add("frozen", "all graded models", method, "frozen_motion_score_max_model",
                 max(per_model[n][method]["frozen_motion_score"].mean() for n in names), n=len(names))


def _real(cfg: EvaluationConfig, ties: str, context: int, sigma: float, rows: _Rows,
          notes: list[str], progress: ProgressCallback | None) -> None:
    from motion_relevance.models import load_model
    from motion_relevance.video import iter_clips

    try:
        model, spec = load_model(cfg.real_model)
    except MotionRelevanceError as exc:
        notes.append(f"real-clip part skipped: {exc}")
        return
    k = context if spec.min_frames is not None else 0
    length = cfg.real_frames + 2 * k
    clips, befores, afters = [], [], []
    for path in cfg.real_videos:
        try:
            for j, (_, frames) in enumerate(iter_clips(path, length, stride=length,
                                                       max_side=cfg.real_max_side, quiet=True)):
                if j >= cfg.real_clips_per_video:
                    break
                x = spec.preprocess(frames)
                clips.append(x[:, :, k : k + cfg.real_frames])
                befores.append(x[:, :, :k])
                afters.append(x[:, :, k + cfg.real_frames :])
        except MotionRelevanceError as exc:
            notes.append(f"{path} skipped: {exc}")
    if not clips:
        notes.append("real-clip part skipped: no clips could be cut from the real videos")
        return
    x, before, after = torch.cat(clips), torch.cat(befores), torch.cat(afters)
    mid = x[:, :, x.shape[2] // 2 : x.shape[2] // 2 + 1]
    view = model_view(x, spec)
    truth = torch.from_numpy(np.stack([flow_mask(v) for v in view]))
    for i, method in enumerate(cfg.real_methods):
        options = dict(cfg.method_options.get(method, {}))
        moving, frozen, base_p, sel_p = [], [], [], []
        for c in range(x.shape[0]):
            kw = dict(spec=spec, ties=ties, context_frames=k, seed=cfg.seed, **options)
            r = explain(model, x[c : c + 1], method,
                        context=(before[c : c + 1], after[c : c + 1]) if k else None, **kw).relevance
            fz = mid[c : c + 1].expand_as(x[c : c + 1]).contiguous()
            f = explain(model, fz, method, **kw).relevance
            sel = selective_relevance(r, sigma)
            fp = flow_precision(r, truth[c : c + 1], sel.mask)
            moving.append(motion_score(r))
            frozen.append(motion_score(f))
            base_p.append(fp.base)
            sel_p.append(fp.selective)
        rows.mean("real", cfg.real_model, method, "motion_score", torch.cat(moving))
        rows.mean("real", cfg.real_model, method, "frozen_motion_score", torch.cat(frozen))
        rows.mean("real", cfg.real_model, method, "flow_precision_base", torch.cat(base_p))
        rows.mean("real", cfg.real_model, method, "flow_precision_selective", torch.cat(sel_p))
        rows.mean("real", cfg.real_model, method, "flow_mask_fraction",
                  truth.double().mean(dim=(1, 2, 3)))
        report(progress, "real clips", i + 1, len(cfg.real_methods), unit="method")


def model_view(clips: torch.Tensor, spec: InputSpec) -> np.ndarray:
    """uint8 frames ``(N, T, H, W, 3)`` of what the model sees (the preprocessing undone)."""
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1, 1)
    pixels = ((clips * std + mean) / spec.scale).clamp(0, 255).round().to(torch.uint8)
    frames = pixels.permute(0, 2, 3, 4, 1).numpy()
    return frames[..., ::-1].copy() if spec.channel_order == "BGR" else frames


def example_videos(root: str | Path = "examples") -> tuple[str, ...]:
    """The real example videos (``*.mp4``, ``*.webm``, ``*.avi``, ``*.mov``) in ``root``."""
    folder = Path(root)
    if not folder.is_dir():
        return ()
    found = [p for ext in ("*.mp4", "*.webm", "*.avi", "*.mov") for p in folder.glob(ext)]
    return tuple(sorted(str(p) for p in found))


def run_evaluation(config: EvaluationConfig | None = None, *,
                   progress: ProgressCallback | None = None) -> Evaluation:
    """Run the benchmark of ``config`` (default: the full family, every method)."""
    cfg = config if config is not None else EvaluationConfig()
    cfg.check()
    from motion_relevance.attribution import list_methods

    wanted = cfg.methods if cfg.methods is not None else tuple(m.name for m in list_methods())
    options = {m: o for m, o in cfg.method_options.items() if m in wanted}
    methods, _ = resolve_methods(list(wanted), options)
    if cfg.real_videos:
        resolve_methods(list(cfg.real_methods))
        for path in cfg.real_videos:
            if not Path(path).is_file():
                raise InvalidInputError(f"real video {path} does not exist; pass existing video files")
    t0 = time.perf_counter()
    notes: list[str] = []
    rows = _Rows(cfg.resamples, cfg.seed)
    family = _family(cfg, notes)
    ties, context, sigma, chosen = _validate(cfg, methods, family, rows, progress)
    rows.add("settings", "", "", "context_frames", context)
    rows.add("settings", "", "", "ties_shared", float(ties == "shared"))
    rows.add("settings", "", "", "sigma", sigma)
    for method, opts in chosen.items():
        for key, value in opts.items():
            rows.add("settings", "", method, f"{key}={value}", 1.0)
    log.info("validation chose ties=%s context_frames=%d sigma=%g options %s", ties, context, sigma, chosen)
    cfg = _with_options(cfg, chosen)
    from motion_relevance.models import load_model

    spec = load_model(family[0][0])[1]
    scenes = _scenes(cfg.clips, "test", cfg.seed, spec)
    frozen = _frozen(scenes, cfg.frozen_clips)
    reliance: dict[str, float] = {}
    per_model: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    done = [0]
    total = len(family) * len(methods)
    scores: list[ModelScores] = []
    for name, rel, values in _all_models(cfg, family, methods, scenes, frozen, ties, context, sigma, rows,
                                         progress, done, total):  # fmt: skip
        reliance[name], per_model[name] = rel.reliance, values
        scores.extend(ModelScores(name, m, rel.reliance, v) for m, v in values.items())
    _summaries(cfg, methods, family, reliance, per_model, rows)
    blob = moving_blob(spec.frames, spec.size[0])
    rows.add("flicker", "moving blob", "", "motion_score", float(motion_score(blob)[0]))
    rows.add("flicker", "moving blob", "", "motion_share",
             float(selective_relevance(blob, sigma).motion_share[0]))
    if cfg.real_videos:
        _real(cfg, ties, context, sigma, rows, notes, progress)
    else:
        notes.append("real-clip part skipped: no real videos given")
    return Evaluation(config=cfg, rows=tuple(rows.rows), scores=tuple(scores), ties=ties,
                      context_frames=context, sigma=sigma, notes=tuple(notes),
                      seconds=time.perf_counter() - t0, chosen_options=chosen)


__all__ = [
    "COLUMNS",
    "OPTION_CANDIDATES",
    "SECTIONS",
    "SETTINGS_CANDIDATES",
    "Evaluation",
    "EvaluationConfig",
    "ModelScores",
    "Row",
    "example_videos",
    "flicker",
    "input_change_mask",
    "model_view",
    "moving_blob",
    "random_mask_like",
    "run_evaluation",
    "share_on",
]
