"""Point estimates with bootstrap 95 % confidence intervals (SciPy's bootstrap).

Every number the evaluation reports is an :class:`Estimate`: the statistic on the data, and
the percentile interval of the same statistic over resamples of the independent units (clips
for means and AUROCs, models for correlations across models).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from motion_relevance.errors import InvalidInputError
from motion_relevance.metrics.reliance import reliance_of_means
from motion_relevance.metrics.separation import auroc

RESAMPLES = 1000


@dataclass(frozen=True)
class Estimate:
    """A statistic and its bootstrap confidence interval (NaN bounds when not computable)."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.value:.3f}"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[~np.isnan(arr)]


def _interval(samples: tuple[np.ndarray, ...], statistic: Callable[..., float], paired: bool,
              resamples: int, seed: int) -> tuple[float, float]:
    if min(s.size for s in samples) < 2:
        return math.nan, math.nan
    try:
        res = stats.bootstrap(samples, statistic, n_resamples=resamples, paired=paired,
                              vectorized=False, method="percentile", confidence_level=0.95,
                              random_state=np.random.default_rng(seed))
    except ValueError:
        return math.nan, math.nan
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high


def mean_ci(values: Sequence[float] | np.ndarray, *, resamples: int = RESAMPLES,
            seed: int = 0) -> Estimate:
    """Mean of ``values`` (NaNs dropped) with a bootstrap 95 % CI over the values."""
    arr = _array(values)
    if arr.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if np.all(arr == arr[0]):
        return Estimate(float(arr[0]), float(arr[0]), float(arr[0]), int(arr.size))
    low, high = _interval((arr,), np.mean, False, resamples, seed)
    return Estimate(float(arr.mean()), low, high, int(arr.size))


def auroc_ci(positive: Sequence[float] | np.ndarray, negative: Sequence[float] | np.ndarray, *,
             resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """AUROC of ``positive`` over ``negative`` with a CI resampling each group separately."""
    pos, neg = _array(positive), _array(negative)
    if pos.size == 0 or neg.size == 0:
        raise InvalidInputError("AUROC needs at least one score in each group")
    value = auroc(pos, neg)
    low, high = _interval((pos, neg), lambda a, b: auroc(a, b), False, resamples, seed)
    return Estimate(value, low, high, int(pos.size + neg.size))


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation (NaN when either side is constant)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.size < 2:
        raise InvalidInputError(f"spearman needs two equal-length samples of >= 2, got {a.shape}, {b.shape}")
    if np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def spearman_ci(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
                resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """Spearman's rho with a CI resampling the (x, y) pairs together."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    value = spearman(a, b)

    def stat(u: np.ndarray, v: np.ndarray) -> float:
        r = spearman(u, v)
        return 0.0 if math.isnan(r) else r

    low, high = _interval((a, b), stat, True, resamples, seed)
    return Estimate(value, low, high, int(a.size))


def reliance_ci(p_agree: Sequence[float] | np.ndarray, p_motion_wrong: Sequence[float] | np.ndarray,
                p_cue_wrong: Sequence[float] | np.ndarray, *, resamples: int = RESAMPLES,
                seed: int = 0) -> Estimate:
    """Measured reliance on motion (``metrics.reliance``) from per-scene true-class
    probabilities under the three renderings, with a CI resampling the scenes together."""
    arrays = tuple(np.asarray(p, dtype=np.float64).ravel() for p in (p_agree, p_motion_wrong, p_cue_wrong))
    if len({a.size for a in arrays}) != 1 or arrays[0].size == 0:
        raise InvalidInputError(f"reliance needs three equal, non-empty samples, got sizes {[a.size for a in arrays]}")

    def stat(pa: np.ndarray, pm: np.ndarray, pc: np.ndarray) -> float:
        return reliance_of_means(float(pa.mean()), float(pm.mean()), float(pc.mean()))

    low, high = _interval(arrays, stat, True, resamples, seed)
    return Estimate(stat(*arrays), low, high, int(arrays[0].size))


__all__ = ["RESAMPLES", "Estimate", "auroc_ci", "mean_ci", "reliance_ci", "spearman", "spearman_ci"]
