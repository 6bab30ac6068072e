"""Write an :class:`~motion_relevance.metrics.evaluate.Evaluation`: CSV, Markdown and PNG plots.

Files: ``results.csv`` (the tidy table), ``results.md`` (readable tables), and the plots
``precision_vs_sigma.png``, ``motion_share.png`` and ``auroc_vs_sigma.png``. Everything is
rendered into a temporary folder first and moved into place at the end, so a failure leaves no
partial output behind.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from motion_relevance.errors import OutputError
from motion_relevance.metrics.evaluate import COLUMNS, Evaluation

FILES: tuple[str, ...] = (
    "results.csv",
    "results.md",
    "precision_vs_sigma.png",
    "motion_share.png",
    "auroc_vs_sigma.png",
    "benchmark_samples.png",
)


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _sigma_str(sigma: float | None) -> str:
    return "" if sigma is None else f"{sigma:g}"


def write_csv(evaluation: Evaluation, path: Path) -> None:
    """The tidy table: one row per (section, model, method, sigma, metric)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in evaluation.rows:
            w.writerow([r.section, r.model, r.method, _sigma_str(r.sigma), r.metric,
                        "" if math.isnan(r.value) else f"{r.value:.6g}", r.n])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def _methods(ev: Evaluation, section: str, model: str | None = None) -> list[str]:
    seen: list[str] = []
    for r in ev.rows:
        if r.section == section and (model is None or r.model == model) and r.method not in seen:
            seen.append(r.method)
    return seen


def _models(ev: Evaluation, section: str) -> list[str]:
    seen: list[str] = []
    for r in ev.rows:
        if r.section == section and r.model not in seen:
            seen.append(r.model)
    return seen


def render_markdown(ev: Evaluation, command: str | None = None) -> str:
    """The readable report: one table per question, at the default sigma where it matters."""
    cfg = ev.config
    s0 = cfg.default_sigma
    sigmas = list(cfg.sigmas)
    lines = ["# motion_relevance evaluation", ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += [
        f"Held-out synthetic test clips per model: {cfg.clips} (accuracy on {cfg.accuracy_clips}); "
        f"seed {cfg.seed}; sigmas {', '.join(f'{s:g}' for s in sigmas)}; default sigma {s0:g}; "
        f"run time {ev.seconds:.0f} s. Values are means over clips (NaN-free clips counted in `n` "
        "of results.csv).",
        "",
    ]
    for note in ev.notes:
        lines += [f"> note: {note}", ""]

    # Accuracy
    models = _models(ev, "accuracy")
    if models:
        lines += ["## Reference models", ""]
        rows = []
        for m in models:
            row = [m, _fmt(ev.value("accuracy", m, "", None, "test_accuracy")),
                   _fmt(ev.value("accuracy", m, "", None, "frozen_accuracy")),
                   _fmt(ev.value("accuracy", m, "", None, "chance"), 2)]
            agree = ev.value("accuracy", m, "", None, "test_accuracy_cue_agrees_90")
            fagree = ev.value("accuracy", m, "", None, "frozen_accuracy_cue_agrees_90")
            row.append("–" if math.isnan(agree) else f"{_fmt(agree)} / {_fmt(fagree)}")
            rows.append(row)
        lines += _table(["model", "test accuracy", "frozen-clip accuracy", "chance",
                         "accuracy / frozen with cue agreeing 90 %"], rows)

    # Precision vs sigma on each model
    for model in _models(ev, "precision"):
        methods = _methods(ev, "precision", model)
        lines += [f"## Motion precision on `{model}` (base vs selective per sigma)", ""]
        rows = []
        for meth in methods:
            base = ev.value("precision", model, meth, s0, "precision_base")
            row = [meth, _fmt(base)]
            row += [_fmt(ev.value("precision", model, meth, s, "precision_selective")) for s in sigmas]
            row.append(_fmt(ev.value("precision", model, meth, s0, "selective_wins"), 2))
            rows.append(row)
        lines += _table(["method", "base"] + [f"sel σ={s:g}" for s in sigmas]
                        + [f"clips sel > base (σ={s0:g})"], rows)

    # Per-model summary at the default sigma
    models = _models(ev, "precision")
    if models:
        lines += [f"## Motion share, recall, sparsity and frozen clips at σ={s0:g}", ""]
        rows = []
        for model in models:
            for meth in _methods(ev, "precision", model):
                rows.append([
                    model, meth,
                    _fmt(ev.value("precision", model, meth, s0, "motion_share")),
                    _fmt(ev.value("precision", model, meth, s0, "recall_selective")),
                    _fmt(ev.value("precision", model, meth, s0, "sparsity_ratio")),
                    _fmt(ev.value("frozen", model, meth, s0, "motion_share_frozen_replicate")),
                    _fmt(ev.value("frozen", model, meth, s0, "motion_share_frozen_zeros")),
                ])
        lines += _table(["model", "method", "motion share", "recall on moving object",
                         "sparsity (sel/base)", "frozen share (replicate)", "frozen share (zeros)"],
                        rows)

    # Separation
    pairs = _models(ev, "separation")
    if pairs:
        lines += ["## Separation of models by motion share (AUROC over clips)", ""]
        for pair in pairs:
            rows = [[meth] + [_fmt(ev.value("separation", pair, meth, s, "auroc_motion_share")) for s in sigmas]
                    for meth in _methods(ev, "separation", pair)]
            lines += [f"`{pair}`", "", *_table(["method"] + [f"σ={s:g}" for s in sigmas], rows)]

    # Decomposition baseline
    dec_methods = _methods(ev, "decomposition")
    if dec_methods:
        lines += [f"## Frozen-frame decomposition (2019) vs selective relevance, `synthetic-motion`, σ={s0:g}", ""]
        rows = []
        for meth in dec_methods:
            v = {k: ev.value("decomposition", "synthetic-motion", meth, s0, k) for k in (
                "precision_base", "precision_selective", "precision_frozen_frame",
                "seconds_per_clip_selective", "seconds_per_clip_frozen_frame",
                "explanations_per_clip_frozen_frame")}
            ratio = v["seconds_per_clip_frozen_frame"] / v["seconds_per_clip_selective"]
            rows.append([meth, _fmt(v["precision_base"]), _fmt(v["precision_selective"]),
                         _fmt(v["precision_frozen_frame"]), _fmt(v["seconds_per_clip_selective"], 4),
                         _fmt(v["seconds_per_clip_frozen_frame"], 4), _fmt(ratio, 1),
                         _fmt(v["explanations_per_clip_frozen_frame"], 0)])
        lines += _table(["method", "base precision", "selective precision", "frozen-frame precision",
                         "s/clip selective", "s/clip frozen-frame", "cost ratio",
                         "explanations/clip (frozen-frame)"], rows)

    # Deletion
    models = _models(ev, "deletion")
    if models:
        lines += [f"## Deletion faithfulness at σ={s0:g} (target-logit drop; higher = more faithful)", ""]
        rows = []
        for model in models:
            for meth in _methods(ev, "deletion", model):
                rows.append([model, meth] + [
                    _fmt(ev.value("deletion", model, meth, s0, k))
                    for k in ("drop_motion", "drop_static", "drop_random", "removed_fraction")])
        lines += _table(["model", "method", "motion voxels", "top static voxels", "random voxels",
                         "fraction removed"], rows)

    # Flow
    flow_models = _models(ev, "flow")
    if flow_models:
        for model in flow_models:
            lines += [f"## Optical-flow precision on real clips, `{model}`", ""]
            rows = []
            for meth in _methods(ev, "flow", model):
                n = [r.n for r in ev.select(section="flow", model=model, method=meth, sigma=s0,
                                            metric="flow_precision_base")]
                rows.append([meth, str(n[0] if n else 0),
                             _fmt(ev.value("flow", model, meth, s0, "flow_precision_base"))]
                            + [_fmt(ev.value("flow", model, meth, s, "flow_precision_selective")) for s in sigmas]
                            + [_fmt(ev.value("flow", model, meth, s0, "motion_share")),
                               _fmt(ev.value("flow", model, meth, None, "flow_mask_fraction"))])
            lines += _table(["method", "clips", "base"] + [f"sel σ={s:g}" for s in sigmas]
                            + [f"motion share σ={s0:g}", "flow-mask fraction"], rows)

    best = ev.value("summary", "synthetic-motion", "all", None, "best_sigma_by_f1")
    if not math.isnan(best):
        f1 = [ev.value("summary", "synthetic-motion", "all", s, "mean_f1_selective") for s in sigmas]
        lines += ["## Choice of sigma", "",
                  "Mean over methods of the per-clip F1 of selective precision and recall on "
                  "`synthetic-motion`:", ""]
        lines += _table([f"σ={s:g}" for s in sigmas], [[_fmt(v) for v in f1]])
        lines += [f"Best sigma by this criterion: **{best:g}**.", ""]
    lines += ["Plots: `precision_vs_sigma.png`, `motion_share.png`, `auroc_vs_sigma.png`, "
              "`benchmark_samples.png`.", ""]
    return "\n".join(lines)


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, max(1, n))
    return math.ceil(n / cols), cols


def plot_precision(ev: Evaluation, path: Path, model: str = "synthetic-motion") -> None:
    """Selective precision vs sigma, one panel per method, base (and frozen-frame) as lines."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    methods = _methods(ev, "precision", model) or _methods(ev, "precision")
    if model not in _models(ev, "precision") and _models(ev, "precision"):
        model = _models(ev, "precision")[0]
    rows, cols = _grid(max(1, len(methods)))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    sigmas = list(ev.config.sigmas)
    for ax, meth in zip(axes.flat, methods, strict=False):
        sel = [ev.value("precision", model, meth, s, "precision_selective") for s in sigmas]
        base = ev.value("precision", model, meth, sigmas[0], "precision_base")
        ax.plot(sigmas, sel, "o-", color="tab:red", label="selective")
        ax.axhline(base, color="tab:blue", ls="--", label="base")
        ff = ev.value("decomposition", model, meth, ev.config.default_sigma, "precision_frozen_frame")
        if not math.isnan(ff):
            ax.axhline(ff, color="tab:green", ls=":", label="frozen-frame (2019)")
        ax.set_title(meth, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("σ", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("motion precision", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Ground-truth motion precision on {model}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_motion_share(ev: Evaluation, path: Path) -> None:
    """Per-clip motion share at the default sigma: one panel per method, one box per model."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    dists = [d for d in ev.distributions if d.metric == "motion_share"]
    methods: list[str] = []
    models: list[str] = []
    for d in dists:
        if d.method not in methods:
            methods.append(d.method)
        if d.model not in models:
            models.append(d.model)
    rows, cols = _grid(max(1, len(methods)))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, meth in zip(axes.flat, methods, strict=False):
        data = []
        for m in models:
            vals = [d.values for d in dists if d.method == meth and d.model == m]
            data.append(vals[0][~np.isnan(vals[0])] if vals else np.array([]))
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(models) + 1),
                      [m.removeprefix("synthetic-") for m in models], fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(meth, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    axes.flat[0].set_ylabel(f"motion share (σ={ev.config.default_sigma:g})", fontsize=8)
    fig.suptitle("Motion share per clip, by model", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_auroc(ev: Evaluation, path: Path) -> None:
    """AUROC of the motion share (model pairs) vs sigma, one line per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    pairs = _models(ev, "separation")
    fig, axes = plt.subplots(1, max(1, len(pairs)), figsize=(4.5 * max(1, len(pairs)), 3.2), squeeze=False)
    sigmas = list(ev.config.sigmas)
    colours = plt.get_cmap("tab20").colors
    for ax, pair in zip(axes.flat, pairs, strict=False):
        for k, meth in enumerate(_methods(ev, "separation", pair)):
            ax.plot(sigmas, [ev.value("separation", pair, meth, s, "auroc_motion_share") for s in sigmas],
                    "os^v"[k % 4] + "-", label=meth, ms=3, color=colours[(2 * k) % 20 + (k // 10) % 2])
        ax.axhline(0.5, color="grey", ls=":")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("σ")
        ax.set_title(pair, fontsize=9)
    if pairs:
        axes.flat[0].set_ylabel("AUROC of motion share")
        axes.flat[0].legend(fontsize=6)
    else:
        axes.flat[0].text(0.5, 0.5, "no model pair evaluated", ha="center", va="center")
        axes.flat[0].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_benchmark_samples(path: Path, seed: int = 0) -> None:
    """Two clips of each synthetic variant: first and middle frame, and the motion mask."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from motion_relevance.synthetic import VARIANTS, generate, labels

    fig, axes = plt.subplots(len(VARIANTS), 6, figsize=(11, 2.0 * len(VARIANTS)), squeeze=False)
    for row, variant in enumerate(VARIANTS):
        batch = generate(variant, 2, split="test", seed=seed)
        mid = batch.frames.shape[1] // 2
        for k in range(2):
            name = labels(variant)[batch.labels[k]]
            cue = f", cue {labels(variant)[batch.cues[k]]}" if batch.cues[k] >= 0 else ""
            panels = [(batch.frames[k, 0], f"{variant}: {name}{cue}\nframe 0"),
                      (batch.frames[k, mid], f"frame {mid}"),
                      (batch.motion_mask[k, mid] * 1.0 + batch.key_mask[k, mid] * 0.5,
                       "motion mask (key: grey)")]
            for j, (img, title) in enumerate(panels):
                ax = axes[row, 3 * k + j]
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1 if img.ndim == 2 else None)
                ax.set_title(title, fontsize=7)
                ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_evaluation(ev: Evaluation, out: str | os.PathLike[str], *, command: str | None = None) -> list[Path]:
    """Write ``results.csv``, ``results.md`` and the plots into folder ``out``; returns the paths."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a folder; choose a folder path")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".evaluate-", dir=out))
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out}: {exc.strerror}; choose another --out") from exc
    try:
        write_csv(ev, tmp / "results.csv")
        (tmp / "results.md").write_text(render_markdown(ev, command), encoding="utf-8")
        plot_precision(ev, tmp / "precision_vs_sigma.png")
        plot_motion_share(ev, tmp / "motion_share.png")
        plot_auroc(ev, tmp / "auroc_vs_sigma.png")
        plot_benchmark_samples(tmp / "benchmark_samples.png", seed=ev.config.seed)
        paths = []
        for name in FILES:
            os.replace(tmp / name, out / name)
            paths.append(out / name)
        return paths
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputError(
                f"cannot write the results into {out}: {exc.strerror}; choose another --out"
            ) from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["FILES", "plot_auroc", "plot_benchmark_samples", "plot_motion_share", "plot_precision",
           "render_markdown", "write_csv", "write_evaluation"]
