"""Explanations out: overlays and colormaps, filmstrips, side-by-side videos, the interactive
HTML report and the ``explain_video`` pipeline behind ``motion-relevance explain``/``demo``
(the files of ``motion-relevance evaluate`` are written by ``evidence``).

    from motion_relevance.report import explain_video
    result = explain_video("clip.mp4", "out/", model="i3d-kinetics400",
                           methods="saliency,gradcam", sigma=1.0)
    result.report   # out/report.html
"""

from __future__ import annotations

from motion_relevance.report.filmstrip import sample_columns, write_filmstrip
from motion_relevance.report.html import ReportData, ReportWriter, read_report
from motion_relevance.report.overlay import (
    DIVERGING,
    SEQUENTIAL,
    blend,
    colorize,
    colormap_lut,
    overlay,
    robust_max,
)
from motion_relevance.report.pipeline import (
    ExplainResult,
    MethodSummary,
    Prediction,
    explain_video,
    parse_methods,
)
from motion_relevance.report.viewer import ViewerStats, ViewerWindow, quantise_window, viewer_stats

__all__ = [
    "DIVERGING",
    "SEQUENTIAL",
    "ExplainResult",
    "MethodSummary",
    "Prediction",
    "ReportData",
    "ReportWriter",
    "ViewerStats",
    "ViewerWindow",
    "blend",
    "colorize",
    "colormap_lut",
    "explain_video",
    "overlay",
    "parse_methods",
    "quantise_window",
    "read_report",
    "robust_max",
    "sample_columns",
    "viewer_stats",
    "write_filmstrip",
]
