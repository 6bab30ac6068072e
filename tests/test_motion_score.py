"""The motion score: bounds, scale-freedom of a static map, flicker, motion, and its formula
restated independently (a loop over voxels with NumPy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import motion_relevance as mr
from motion_relevance.motion_score import motion_score


def _reference(rel: np.ndarray) -> np.ndarray:
    """The docstring's formula with NumPy: edge-padded 3x3 [1,2,1] smoothing as nine shifted
    sums, time neighbours by clamped indices."""
    _n, _, t, h, w = rel.shape
    e = np.pad(rel.astype(np.float64).sum(axis=1), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    k = (1.0, 2.0, 1.0)
    f = sum(k[dy] * k[dx] * e[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    prev = f[:, [max(i - 1, 0) for i in range(t)]]
    nxt = f[:, [min(i + 1, t - 1) for i in range(t)]]
    num = np.abs(prev - nxt).sum(axis=(1, 2, 3))
    den = (np.abs(prev) + np.abs(nxt)).sum(axis=(1, 2, 3))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


volumes = arrays(np.float64, st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5),
                                        st.integers(1, 4), st.integers(1, 4)),
                 elements=st.floats(-10, 10, allow_nan=False, width=32))


@settings(max_examples=40, deadline=None)
@given(volumes)
def test_matches_the_formula_and_stays_in_unit_interval(rel: np.ndarray) -> None:
    got = motion_score(torch.from_numpy(rel)).numpy()
    np.testing.assert_allclose(got, _reference(rel), rtol=1e-6, atol=1e-9)
    assert ((got >= 0) & (got <= 1 + 1e-12)).all()


@settings(max_examples=25, deadline=None)
@given(volumes, st.floats(1e-20, 1e20))
def test_static_maps_score_zero_at_any_scale(rel: np.ndarray, scale: float) -> None:
    static = np.repeat(rel[:, :, :1], rel.shape[2], axis=2) * scale
    assert (motion_score(torch.from_numpy(static)).numpy() == 0).all()


@settings(max_examples=25, deadline=None)
@given(volumes, st.floats(1e-6, 1e6))
def test_scale_free(rel: np.ndarray, scale: float) -> None:
    a = motion_score(torch.from_numpy(rel)).numpy()
    b = motion_score(torch.from_numpy(rel * scale)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_flicker_scores_its_relative_size() -> None:
    """A positive map times 1 + eps (a(t) - 1) scores about eps * mean|a(t-1) - a(t+1)| / 2."""
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.uniform(0.5, 1.5, (1, 3, 1, 8, 8)))
    a = torch.from_numpy(rng.uniform(0, 2, 16))
    for eps in (1e-4, 1e-2, 1e-1):
        rel = base * (1 + eps * (a.view(1, 1, -1, 1, 1) - 1))
        got = float(motion_score(rel)[0])
        prev, nxt = torch.cat([a[:1], a[:-1]]), torch.cat([a[1:], a[-1:]])
        expect = float((eps * (prev - nxt).abs()).sum() / (2 + eps * (prev + nxt - 2)).sum())
        assert got == pytest.approx(expect, rel=1e-6)
        assert got < 2 * eps


def test_moving_blob_sign_flips_and_pulses_score_high() -> None:
    from motion_relevance.evidence.benchmark import moving_blob

    assert float(motion_score(moving_blob())[0]) > 0.5
    # a map that flips sign every two frames: F(t-1) = -F(t+1) everywhere inside the clip
    flip = torch.ones(1, 1, 8, 4, 4) * torch.tensor([1.0, 1, -1, -1, 1, 1, -1, -1]).view(1, 1, 8, 1, 1)
    assert float(motion_score(flip)[0]) > 0.7
    pulse = torch.zeros(1, 1, 5, 4, 4)
    pulse[:, :, 1] = 1.0  # present only at t=1: every comparison involving it is total change
    assert float(motion_score(pulse)[0]) == pytest.approx(1.0)


def test_selective_relevance_exposes_the_score() -> None:
    rel = torch.randn(2, 3, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    sel = mr.selective_relevance(rel)
    torch.testing.assert_close(sel.motion_score, motion_score(rel))
    assert mr.selective_relevance(rel[0]).motion_score.shape == ()
    # the paper's share is unchanged by the new field
    assert sel.motion_share.shape == (2,)


def test_edge_frames_leave_the_ends_out() -> None:
    rel = torch.ones(1, 1, 8, 4, 4)
    rel[:, :, 0] = 5.0  # a jump at the very start only
    assert float(motion_score(rel)[0]) > 0
    assert float(motion_score(rel, edge_frames=2)[0]) == 0.0
