"""Bootstrap estimates: point values against direct computations, and CI coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from motion_relevance.errors import InvalidInputError
from motion_relevance.metrics.statistics import (
    auroc_ci,
    mean_ci,
    reliance_ci,
    spearman,
    spearman_ci,
)


def test_mean_ci_coverage_on_a_known_distribution() -> None:
    """Over 120 samples of 40 normal values, the 95 % interval holds the true mean 85-99 %."""
    rng = np.random.default_rng(3)
    hits = 0
    for k in range(120):
        est = mean_ci(rng.normal(2.0, 1.0, 40), resamples=300, seed=k)
        assert est.low <= est.value <= est.high
        hits += est.low <= 2.0 <= est.high
    assert 0.85 <= hits / 120 <= 0.99


def test_mean_ci_edge_cases() -> None:
    assert mean_ci([3.0, 3.0, 3.0]).low == 3.0
    assert math.isnan(mean_ci([]).value)
    est = mean_ci([1.0, float("nan"), 2.0, 4.0])
    assert est.n == 3 and est.value == pytest.approx(7 / 3)


def test_auroc_ci_direction_and_bounds() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 30), rng.normal(0, 1, 30)
    est = auroc_ci(pos, neg, resamples=300)
    direct = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert est.value == pytest.approx(direct)
    assert est.low < est.value < est.high
    assert auroc_ci(neg, pos, resamples=50).value == pytest.approx(1 - direct)
    with pytest.raises(InvalidInputError):
        auroc_ci([], [1.0])


def test_spearman_against_ranks() -> None:
    x = np.array([0.1, 0.4, 0.2, 0.9, 0.5])
    y = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    assert spearman(x, y) == pytest.approx(1.0)
    assert spearman(x, -y) == pytest.approx(-1.0)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y[::-1]))
    d = rx - ry
    assert spearman(x, y[::-1]) == pytest.approx(1 - 6 * (d**2).sum() / (5 * 24))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    est = spearman_ci(x, y, resamples=200)
    assert est.value == pytest.approx(1.0) and est.high <= 1.0


def test_reliance_ci_against_its_definition() -> None:
    """reliance = drop_motion / (drop_motion + drop_cue) from the means; the paired bootstrap
    keeps each scene's three probabilities together, so a per-scene offset shared by the three
    renderings does not widen the interval."""
    rng = np.random.default_rng(3)
    pa = rng.uniform(0.4, 0.9, 400)  # scenes differ a lot ...
    pm = pa - 0.1 + rng.normal(0, 0.01, 400)  # ... the drops hardly at all
    pc = pa - 0.3 + rng.normal(0, 0.01, 400)
    est = reliance_ci(pa, pm, pc, resamples=300)
    dm, dc = pa.mean() - pm.mean(), pa.mean() - pc.mean()
    assert est.value == pytest.approx(dm / (dm + dc), abs=1e-12)
    assert est.low <= 0.25 <= est.high and est.high - est.low < 0.02
    assert est.n == 400
    # a drop below zero counts as none; two empty drops are an even split
    assert reliance_ci(pa, pa + 0.1, pa - 0.2, resamples=50).value == 0.0
    assert reliance_ci(pa, pa, pa, resamples=50).value == 0.5
    with pytest.raises(InvalidInputError, match="equal"):
        reliance_ci(pa, pm[:10], pc)
