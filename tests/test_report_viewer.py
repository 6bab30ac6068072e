"""The report's stored data and its Python reference of the slider's computation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from motion_relevance.errors import InvalidInputError
from motion_relevance.report import ReportWriter, quantise_window, read_report, viewer_stats
from motion_relevance.report.viewer import quantised_std, window_mask
from motion_relevance.selective import selective_relevance
from motion_relevance.video import plan_windows


def smooth_relevance(t: int = 10, h: int = 24, w: int = 24, c: int = 3, seed: int = 0) -> torch.Tensor:
    """(C, T, H, W): smooth signed noise plus a blob that moves (so there is motion to find)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, c, t, h, w, generator=g)
    smooth = F.avg_pool3d(noise, 3, stride=1, padding=1)[0]
    for i in range(t):
        smooth[:, i, 8:14, 2 + 2 * i : 8 + 2 * i] += 2.0
    return smooth


def test_quantised_std_is_the_unbiased_std() -> None:
    q = np.random.default_rng(0).integers(0, 65536, size=(4, 7, 9)).astype(np.uint16)
    assert quantised_std(q) == pytest.approx(np.std(q.astype(np.float64), ddof=1), rel=1e-12)
    assert quantised_std(np.array([5], np.uint16)) == 0.0
    # exact integer sums: [0, 2] has variance exactly 2
    assert quantised_std(np.array([0, 2], np.uint16)) == math.sqrt(2.0)


def test_viewer_matches_the_float_pipeline_closely() -> None:
    relevance = smooth_relevance()
    (window,) = plan_windows(10, 10)
    for sigma in (0.0, 0.5, 1.0, 2.0):
        sel = selective_relevance(relevance, sigma)
        vw = quantise_window(relevance, sel.temporal_gradient, window)
        stats = viewer_stats([vw], sigma)
        disagree = (window_mask(vw, sigma) != sel.mask[0].numpy()).mean()
        assert disagree < 1e-3, (sigma, disagree)
        assert stats.motion_share == pytest.approx(float(sel.motion_share), abs=1e-3)
        assert stats.mask_voxels == pytest.approx(int(sel.mask.sum()), rel=1e-2, abs=3)
    assert viewer_stats([vw], 0.0).motion_share > viewer_stats([vw], 2.0).motion_share > 0


def test_viewer_counts_only_owned_frames() -> None:
    relevance = [smooth_relevance(t=6, seed=s) for s in (1, 2)]
    windows = plan_windows(9, 6)  # second window starts at 3 and owns its last 3 frames
    assert [(w.first_owned, w.num_owned) for w in windows] == [(0, 6), (3, 3)]
    vws = [quantise_window(r, selective_relevance(r, 1.0).temporal_gradient, w) for r, w in zip(relevance, windows, strict=True)]
    assert vws[1].magnitude.shape == (3, 24, 24) and vws[1].derivative.shape == (6, 24, 24)
    stats = viewer_stats(vws, 1.0)
    kept = total = 0.0
    for vw in vws:
        mask = window_mask(vw, 1.0)
        m = vw.magnitude.astype(np.int64)
        kept += vw.magnitude_scale * int((m * mask).sum())
        total += vw.magnitude_scale * int(m.sum())
    assert stats.motion_share == kept / total
    assert stats.voxels == 9 * 24 * 24 and stats.frame_total.shape == (9,)
    np.testing.assert_allclose(stats.frame_total.sum(), total)


def test_quantise_checks_its_input() -> None:
    (window,) = plan_windows(4, 4)
    r = smooth_relevance(t=4)
    with pytest.raises(InvalidInputError, match="absolute"):
        quantise_window(r, -selective_relevance(r).temporal_gradient, window)
    with pytest.raises(InvalidInputError, match="match"):
        quantise_window(r, torch.zeros(1, 3, 24, 24), window)
    with pytest.raises(InvalidInputError, match="sigma"):
        viewer_stats([], -1.0)


def test_report_round_trip(tmp_path: Path) -> None:
    windows = plan_windows(9, 6)
    rels = [smooth_relevance(t=6, seed=s) for s in (3, 4)]
    frames = np.random.default_rng(0).integers(0, 255, size=(9, 30, 40, 3), dtype=np.uint8)
    writer = ReportWriter(tmp_path / "parts", ["a", "b"], frame_size=(30, 40), map_size=(24, 24), crop_box=(3.0, 8.0, 24.0, 24.0))
    written: dict[str, list] = {"a": [], "b": []}
    for w, r in zip(windows, rels, strict=True):
        writer.add_frames(frames[list(w.owned_indices)])
        for name, scale in (("a", 1.0), ("b", 1e-6)):  # tiny values survive the quantisation
            vw = quantise_window(r * scale, selective_relevance(r * scale).temporal_gradient, w)
            writer.add_window(name, vw)
            written[name].append(vw)
    path = writer.write(tmp_path / "report.html", {"title": "t </script> & co", "sigma": 1.0, "video": {"fps": 10.0}})
    assert not (tmp_path / "parts").exists()
    text = path.read_text()
    assert "https://" not in text and "http://" not in text  # self-contained: nothing to fetch
    assert text.count("<img ") == 9
    data = read_report(path)
    assert data.meta["title"] == "t </script> & co" and data.meta["frames"] == 9
    assert data.meta["box"] == [0.1, 0.2, 0.8, 0.6]
    for name in ("a", "b"):
        back = data.windows[name]
        for before, after in zip(written[name], back, strict=True):
            assert after.window == before.window
            np.testing.assert_array_equal(after.derivative, before.derivative)
            np.testing.assert_array_equal(after.magnitude, before.magnitude)
            np.testing.assert_array_equal(after.relevance, before.relevance)
            assert after.magnitude_scale == before.magnitude_scale
        a, b = viewer_stats(back, 1.3), viewer_stats(written[name], 1.3)
        assert (a.motion_share, a.mask_voxels, a.stds) == (b.motion_share, b.mask_voxels, b.stds)


def test_report_refuses_incomplete_methods(tmp_path: Path) -> None:
    (window,) = plan_windows(4, 4)
    r = smooth_relevance(t=4)
    writer = ReportWriter(tmp_path / "parts", ["a", "b"], frame_size=(24, 24), map_size=(24, 24))
    writer.add_frames(np.zeros((4, 24, 24, 3), np.uint8))
    writer.add_window("a", quantise_window(r, selective_relevance(r).temporal_gradient, window))
    with pytest.raises(InvalidInputError, match="covers 0 frames"):
        writer.write(tmp_path / "r.html", {"sigma": 1.0})
    writer.discard()
    with pytest.raises(InvalidInputError, match="not declared"):
        ReportWriter(tmp_path / "p2", ["a"], frame_size=(24, 24), map_size=(24, 24)).add_window("zzz", None)  # type: ignore[arg-type]
