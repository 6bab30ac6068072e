"""Write an :class:`~motion_relevance.evidence.benchmark.Evaluation`: CSV, Markdown and PNG plots.

Files: ``results.csv`` (the tidy table, every number with its 95 % CI), ``results.md``
(readable tables, settings chosen on validation first) and ``score_vs_reliance.png`` (per
method, each graded model's mean motion score and motion share against its measured
reliance). Everything is rendered into a temporary folder and moved into place at the end, so a
failure leaves no partial output behind.
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
from motion_relevance.evidence.benchmark import COLUMNS, SCORES, Evaluation

FILES: tuple[str, ...] = ("results.csv", "results.md", "score_vs_reliance.png")


def _fmt(value: float, low: float = math.nan, high: float = math.nan) -> str:
    if math.isnan(value):
        return "–"
    if math.isnan(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def write_csv(ev: Evaluation, path: Path) -> None:
    """The tidy table: one row per number, with its CI bounds (empty where none applies)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for r in ev.rows:
            writer.writerow([r.section, r.model, r.method, r.metric, f"{r.value:.6g}",
                             "" if math.isnan(r.low) else f"{r.low:.6g}",
                             "" if math.isnan(r.high) else f"{r.high:.6g}", r.n])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _cell(ev: Evaluation, section: str, model: str, method: str, metric: str) -> str:
    for r in ev.rows:
        if (r.section, r.model, r.method, r.metric) == (section, model, method, metric):
            return _fmt(r.value, r.low, r.high)
    return "–"


def _methods(ev: Evaluation, section: str) -> list[str]:
    seen: list[str] = []
    for r in ev.rows:
        if r.section == section and r.method and r.method != "all" and r.method not in seen:
            seen.append(r.method)
    return seen


def render_markdown(ev: Evaluation, command: str | None = None) -> str:
    """The results as Markdown tables, with the command and the settings chosen on validation."""
    out = ["# Evaluation results", ""]
    if command:
        out += ["```", command, "```", ""]
    options = "".join(f", {method} {key} = `{value}`" for method, opts in ev.chosen_options.items()
                      for key, value in opts.items())
    out += [f"Settings chosen on the validation split: ties = `{ev.ties}`, context_frames = "
            f"{ev.context_frames}{options}, sigma = {ev.sigma:g}. Run time {ev.seconds:.0f} s. "
            "Brackets: bootstrap 95 % CI.", ""]
    out += ["## Validation (choice of settings)", ""]
    val = [r for r in ev.rows if r.section == "validation" and r.method == "all"]
    out += _table(["candidate", "metric", "value"], [[r.model, r.metric, _fmt(r.value)] for r in val])
    if ev.chosen_options:
        val = [r for r in ev.rows if r.section == "validation" and r.method in ev.chosen_options
               and r.model.count("=") > 2]  # the option candidates' rows, not the (ties, context) ones
        out += ["Method options, at the chosen ties and context (AUROC minus frozen score):", ""]
        out += _table(["method", "candidate", "value"], [[r.method, r.model, _fmt(r.value)] for r in val])

    out += ["## Measured reliance of each model (test interventions)", ""]
    models = [r.model for r in ev.rows if r.section == "reliance" and r.metric == "reliance"]
    out += _table(["model", "reliance", "accuracy (cues agree)", "p(y) agree / motion wrong / cue wrong"],
                  [[m, _cell(ev, "reliance", m, "", "reliance"), _cell(ev, "reliance", m, "", "accuracy_agree"),
                    " / ".join(_cell(ev, "reliance", m, "", k) for k in ("p_agree", "p_motion_wrong", "p_cue_wrong"))]
                   for m in models])

    methods = _methods(ev, "correlation")
    out += ["## Spearman rho: model's mean score vs measured reliance", ""]
    out += _table(["method", *SCORES],
                  [[m, *(_cell(ev, "correlation", "graded family", m, f"spearman_{s}") for s in SCORES)]
                   for m in methods])
    out += ["## AUROC, level-100 vs level-0 models on the same clips", ""]
    out += _table(["method", *SCORES],
                  [[m, *(_cell(ev, "separation", "level 100 vs level 0", m, f"auroc_{s}") for s in SCORES)]
                   for m in methods])
    out += ["## Frozen scenes (one frame repeated): motion score", ""]
    out += _table(["method", "mean over models", "worst model's mean"],
                  [[m, _cell(ev, "frozen", "all graded models", m, "frozen_motion_score"),
                    _cell(ev, "frozen", "all graded models", m, "frozen_motion_score_max_model")]
                   for m in methods])
    flick = [r for r in ev.rows if r.section == "flicker" and r.model != "moving blob"]
    if flick:
        eps = sorted({r.metric.rsplit("_", 1)[1] for r in flick}, key=float)
        out += ["## Flicker test (time-mean map times 1 + eps (a(t) - 1)), level-100 models", ""]
        fm = _methods(ev, "flicker")
        rows = []
        for m in fm:
            for what in ("motion_score", "motion_share"):
                vals = []
                for e in eps:
                    sel = [r.value for r in flick if r.method == m and r.metric == f"{what}_eps_{e}"]
                    vals.append(_fmt(float(np.mean(sel))) if sel else "–")
                rows.append([m, what, *vals])
        out += _table(["method", "number", *(f"eps={e}" for e in eps)], rows)
    blob = [r for r in ev.rows if r.model == "moving blob"]
    if blob:
        out += ["Moving blob: " + ", ".join(f"{r.metric} {r.value:.3f}" for r in blob), ""]
    prec = [r for r in ev.rows if r.section == "precision"]
    if prec:
        out += ["## Precision on the moving object (level-100 models)", ""]
        pm = sorted({r.model for r in prec})
        rows = []
        for model in pm:
            for m in _methods(ev, "precision"):
                rows.append([model, m, *(_cell(ev, "precision", model, m, k) for k in
                                         ("precision_base", "precision_selective",
                                          "precision_random_mask", "chance"))])
        out += _table(["model", "method", "base", "selective", "random mask of equal size", "chance"], rows)
    dele = [r for r in ev.rows if r.section == "deletion" and r.model.startswith("level ")]
    if dele:
        out += ["## Deletion (every selection from the voxels the operator changes)", "",
                "Target-logit drop when the motion-selected voxels are removed (5x5 blur, or set to zero, "
                "the normalised mean), minus the drop for the same number of the most relevant static "
                "voxels / of random voxels (per clip; positive: the motion part mattered more).", ""]
        rows = []
        keys = ("deletion_motion_minus_static", "deletion_motion_minus_random",
                "deletion_motion_minus_static_zero", "deletion_motion_minus_random_zero")
        for level in ("level 100", "level 0"):
            for m in _methods(ev, "deletion"):
                rows.append([level, m, *(_cell(ev, "deletion", level, m, k) for k in keys)])
        out += _table(["models", "method", "blur: motion minus static", "blur: motion minus random",
                       "zero: motion minus static", "zero: motion minus random"], rows)
    real = [r for r in ev.rows if r.section == "real"]
    if real:
        out += ["## Real clips (pretrained model)", ""]
        rm = sorted({r.model for r in real})
        rows = []
        for model in rm:
            for m in _methods(ev, "real"):
                rows.append([model, m, *(_cell(ev, "real", model, m, k) for k in
                                         ("motion_score", "frozen_motion_score", "flow_precision_base",
                                          "flow_precision_selective", "flow_mask_fraction"))])
        out += _table(["model", "method", "motion score", "frozen motion score", "flow precision base",
                       "flow precision selective", "flow mask fraction"], rows)
    out += ["## Per model and method (test scenes)", ""]
    rows = []
    for model in models:
        for m in methods:
            rows.append([model, m, *(_cell(ev, "score", model, m, k) for k in
                                     (*SCORES, "sparsity_ratio", "mask_fraction"))])
    out += _table(["model", "method", *SCORES, "sparsity (selective/base)", "mask fraction (= random mask sparsity)"], rows)
    if ev.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in ev.notes] + [""]
    return "\n".join(out)


def plot_score_vs_reliance(ev: Evaluation, path: Path) -> None:
    """Per method: each model's mean motion score and motion share against its reliance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({s.method for s in ev.scores}, key=[s.method for s in ev.scores].index)
    cols = min(4, max(1, len(methods)))
    rows = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, method in zip(axes.ravel(), methods, strict=False):
        pts = [s for s in ev.scores if s.method == method]
        x = [s.reliance for s in pts]
        ax.scatter(x, [s.values["motion_score"].mean() for s in pts], s=14, label="motion score")
        ax.scatter(x, [s.values["motion_share"].mean() for s in pts], s=14, marker="x",
                   label="motion share (paper)")
        ax.set_title(method, fontsize=8)
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(methods):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6, loc="upper left")
    fig.supxlabel("measured reliance on motion (intervention)", fontsize=8)
    fig.supylabel("mean over test clips", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_evaluation(ev: Evaluation, out: str | os.PathLike[str], *, command: str | None = None) -> list[Path]:
    """Write ``results.csv``, ``results.md`` and the plot into folder ``out``; returns the paths."""
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
        plot_score_vs_reliance(ev, tmp / "score_vs_reliance.png")
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


__all__ = ["FILES", "plot_score_vs_reliance", "render_markdown", "write_csv", "write_evaluation"]
