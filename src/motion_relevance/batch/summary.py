"""Aggregate a batch run's per-clip rows into the spatial-bias number (the paper's motion share)
and the motion score per class and method."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from motion_relevance.errors import InvalidInputError

#: Columns a summary can be grouped by (besides the method).
GROUP_COLUMNS: tuple[str, ...] = ("label", "target_label", "target")


def summarize(rows: pa.Table, *, by: str = "label") -> pa.Table:
    """Mean motion share (and friends) per ``(method, by)`` from per-clip rows.

    ``by="label"`` groups by the manifest's class label (the spatial bias per class; videos
    without a label form one group with a null label); ``"target_label"``/``"target"`` group by
    the explained class. Columns: ``method``, ``by``, ``videos``, ``clips``, ``failed_videos``,
    ``motion_share_mean`` (over clips), ``motion_share_std``, ``motion_share_video_mean`` (mean
    of per-video means, every video weighs the same), the same three for the
    ``motion_score`` and the ``motion_reliance`` (by label: which classes the model recognises by
    frame order and which by appearance), ``sparsity_mean``, ``probability_mean``.
    """
    if by not in GROUP_COLUMNS:
        raise InvalidInputError(f"summaries group by one of {', '.join(GROUP_COLUMNS)}, not {by!r}")
    # Joins never match null keys, so group on (is-null flag, value with nulls filled) instead.
    column = rows[by]
    filler = pa.scalar("" if pa.types.is_string(column.type) else 0, column.type)
    rows = rows.set_column(rows.schema.get_field_index(by), by, pc.fill_null(column, filler))
    rows = rows.append_column("_null", pc.is_null(column))
    keys = ["method", "_null", by]
    ok = rows.filter(pc.is_null(rows["error"]))
    failed = rows.filter(pc.is_valid(rows["error"]))
    per_clip = ok.group_by(keys, use_threads=False).aggregate(
        [
            ("row", "count_distinct"),
            ("motion_share", "count"),
            ("motion_share", "mean"),
            ("motion_share", "stddev", pc.VarianceOptions(ddof=1)),
            ("motion_score", "mean"),
            ("motion_score", "stddev", pc.VarianceOptions(ddof=1)),
            ("motion_reliance", "mean"),
            ("motion_reliance", "stddev", pc.VarianceOptions(ddof=1)),
            ("sparsity", "mean"),
            ("probability", "mean"),
        ]
    )
    per_video = (
        ok.group_by([*keys, "row"], use_threads=False)
        .aggregate([("motion_share", "mean"), ("motion_score", "mean"), ("motion_reliance", "mean")])
        .group_by(keys, use_threads=False)
        .aggregate([("motion_share_mean", "mean"), ("motion_score_mean", "mean"), ("motion_reliance_mean", "mean")])
    )
    failures = failed.group_by(keys, use_threads=False).aggregate([("row", "count_distinct")])
    failures = failures.rename_columns([*keys, "failed_videos"])
    per_video = per_video.rename_columns([*keys, "share_video_mean", "score_video_mean", "reliance_video_mean"])
    table = per_clip.join(per_video, keys=keys, join_type="full outer", use_threads=False)
    table = table.join(failures, keys=keys, join_type="full outer", use_threads=False)
    columns = {
        "method": table["method"],
        by: pc.if_else(table["_null"], pa.scalar(None, table[by].type), table[by]),
        "videos": pc.fill_null(table["row_count_distinct"], 0),
        "clips": pc.fill_null(table["motion_share_count"], 0),
        "failed_videos": pc.fill_null(table["failed_videos"], 0),
        "motion_share_mean": table["motion_share_mean"],
        "motion_share_std": table["motion_share_stddev"],
        "motion_share_video_mean": table["share_video_mean"],
        "motion_score_mean": table["motion_score_mean"],
        "motion_score_std": table["motion_score_stddev"],
        "motion_score_video_mean": table["score_video_mean"],
        "motion_reliance_mean": table["motion_reliance_mean"],
        "motion_reliance_std": table["motion_reliance_stddev"],
        "motion_reliance_video_mean": table["reliance_video_mean"],
        "sparsity_mean": table["sparsity_mean"],
        "probability_mean": table["probability_mean"],
    }
    out = pa.table(columns)
    return out.sort_by([("method", "ascending"), (by, "ascending")])  # nulls last


__all__ = ["GROUP_COLUMNS", "summarize"]
