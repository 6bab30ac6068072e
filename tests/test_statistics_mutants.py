"""Edges of the evaluation's statistics, the reliance record, the frozen-frame decomposition and
frozen accuracy that the first mutation run of ``metrics/`` showed no test reached (issue 15).

Expected values come from the definitions (NumPy in float64, counts of the calls an explainer
receives, hand-built models whose answers are known), never from the code under test.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from motion_relevance.errors import InvalidInputError
from motion_relevance.metrics.decomposition import frozen_frame_decomposition
from motion_relevance.metrics.frozen import freeze, frozen_accuracy
from motion_relevance.metrics.reliance import Reliance, reliance_from_probabilities
from motion_relevance.metrics.statistics import (
    Estimate,
    auroc_ci,
    mean_ci,
    reliance_ci,
    spearman,
    spearman_ci,
)

# --- Estimate and mean_ci -------------------------------------------------------------------


def test_estimate_prints_its_interval_only_when_there_is_one() -> None:
    assert str(Estimate(0.12345, 0.1, 0.2, 5)) == "0.123 [0.100, 0.200]"
    assert str(Estimate(0.5, math.nan, math.nan, 1)) == "0.500"


def test_mean_ci_of_nothing_constant_and_one_value() -> None:
    empty = mean_ci([])
    assert all(math.isnan(v) for v in (empty.value, empty.low, empty.high)) and empty.n == 0
    assert mean_ci([3.0, 3.0, 3.0]) == Estimate(3.0, 3.0, 3.0, 3)
    assert mean_ci([2.0]) == Estimate(2.0, 2.0, 2.0, 1)
    assert mean_ci([float("nan"), 7.0]) == Estimate(7.0, 7.0, 7.0, 1)


def test_mean_ci_of_two_values_has_an_interval() -> None:
    """Two values are enough to resample: the interval spans the bootstrap means (1, 2, 3)."""
    est = mean_ci([1.0, 3.0], resamples=200)
    assert est.value == 2.0 and est.n == 2
    assert 1.0 <= est.low < 2.0 < est.high <= 3.0


def test_mean_ci_averages_in_float64_whatever_the_input_dtype() -> None:
    """In float32, 1e8 + 1 rounds back to 1e8; the mean of (1e8, 1, -1e8) is 1/3 in float64."""
    est = mean_ci(np.array([1e8, 1.0, -1e8], dtype=np.float32), resamples=50)
    assert est.value == pytest.approx(1 / 3, rel=1e-12)


def test_intervals_are_reproducible_by_seed_and_default_to_seed_0() -> None:
    """The published numbers were computed with the default seed: it must stay 0."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 25)
    y = x + rng.normal(0, 1, 25)
    pa = rng.uniform(0.5, 1, 25)
    pm, pc = pa - rng.uniform(0, 0.3, 25), pa - rng.uniform(0, 0.3, 25)
    calls = {
        "mean": lambda **k: mean_ci(x, resamples=200, **k),
        "auroc": lambda **k: auroc_ci(y, x, resamples=200, **k),
        "spearman": lambda **k: spearman_ci(x, y, resamples=200, **k),
        "reliance": lambda **k: reliance_ci(pa, pm, pc, resamples=200, **k),
    }
    for name, call in calls.items():
        first, again = call(), call()
        assert (first.low, first.high) == (again.low, again.high), name
        assert call(seed=0) == first, name
        other = call(seed=1)
        assert (other.low, other.high) != (first.low, first.high), name


def test_the_number_of_resamples_is_honoured() -> None:
    """With 20 resamples the percentile bounds are two of only 20 resampled means."""
    x = np.random.default_rng(2).normal(0, 1, 30)
    few, many = mean_ci(x, resamples=20), mean_ci(x, resamples=4000)
    assert (few.low, few.high) != (many.low, many.high)
    # the CI of the mean of 30 N(0, 1) values is about mean +- 1.96 / sqrt(30) = +- 0.36
    assert many.high - many.low == pytest.approx(2 * 1.96 * x.std(ddof=1) / math.sqrt(30), rel=0.15)


# --- auroc_ci --------------------------------------------------------------------------------


def test_auroc_ci_refuses_an_empty_group_with_its_message() -> None:
    for pos, neg in (([], [1.0, 2.0]), ([1.0, 2.0], []), ([float("nan")], [1.0])):
        with pytest.raises(InvalidInputError, match=r"^AUROC needs at least one score in each group$"):
            auroc_ci(pos, neg)


def test_auroc_ci_of_one_score_per_group_and_of_unequal_groups() -> None:
    one = auroc_ci([2.0], [1.0])
    assert one.value == 1.0 and one.n == 2 and math.isnan(one.low)
    rng = np.random.default_rng(4)
    pos, neg = rng.normal(1, 1, 40), rng.normal(0, 1, 15)  # groups of different sizes
    est = auroc_ci(pos, neg, resamples=300)
    assert est.n == 55
    assert 0.5 < est.low < est.value < est.high <= 1.0


# --- spearman and spearman_ci ----------------------------------------------------------------


def test_spearman_refuses_unequal_or_short_samples_with_its_message() -> None:
    for x, y in (([1.0, 2.0, 3.0], [1.0, 2.0]), ([1.0], [2.0])):
        with pytest.raises(InvalidInputError, match=r"spearman needs two equal-length samples of >= 2, got"):
            spearman(x, y)
    assert spearman([1.0, 2.0], [3.0, 5.0]) == pytest.approx(1.0)
    assert spearman([1.0, 2.0], [5.0, 3.0]) == pytest.approx(-1.0)


def test_spearman_of_a_constant_side_is_nan_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
        assert math.isnan(spearman([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))
        assert spearman([1.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(math.sqrt(3) / 2)


def test_spearman_ci_keeps_pairs_together() -> None:
    """y = x + small noise: resampling pairs keeps rho near 1; resampling x and y apart would
    centre the interval on 0."""
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, 30)
    y = x + rng.normal(0, 0.1, 30)
    est = spearman_ci(x, y, resamples=300)
    assert est.n == 30
    assert 0.9 < est.low < est.value < est.high <= 1.0


def test_spearman_ci_counts_a_resample_with_a_constant_side_as_no_correlation() -> None:
    """x = (0, 0, 1): of the 27 resamples, 9 have a constant x (rho undefined), 6 give sqrt(3)/2
    and 12 give 1 (counted by hand). The undefined ones count as 0, so the interval is finite
    and runs from 0 to 1 (were they counted as 1, it would start at sqrt(3)/2)."""
    est = spearman_ci([0.0, 0.0, 1.0], [0.0, 1.0, 2.0], resamples=400)
    assert est.low == pytest.approx(0.0, abs=1e-12)
    assert est.high == pytest.approx(1.0)


# --- reliance_ci and the reliance record -----------------------------------------------------


def test_reliance_ci_of_one_scene_and_in_float64() -> None:
    one = reliance_ci([0.9], [0.5], [0.7])
    assert one.value == pytest.approx(0.4 / 0.6) and one.n == 1 and math.isnan(one.low)
    rng = np.random.default_rng(6)
    pa = rng.uniform(0.5, 1, 301).astype(np.float32)
    pm = (pa - rng.uniform(0, 0.3, 301)).astype(np.float32)
    pc = (pa - rng.uniform(0, 0.3, 301)).astype(np.float32)
    means = [float(np.asarray(p, dtype=np.float64).mean()) for p in (pa, pm, pc)]
    dm, dc = means[0] - means[1], means[0] - means[2]
    assert reliance_ci(pa, pm, pc, resamples=20).value == dm / (dm + dc)


def test_reliance_record_keeps_every_mean_and_the_count() -> None:
    t = torch.tensor
    r = reliance_from_probabilities(t([0.9, 0.7]), t([0.3, 0.5]), t([0.8, 0.6]), accuracy=0.5)
    assert r == Reliance(p_agree=pytest.approx(0.8), p_motion_wrong=pytest.approx(0.4),
                         p_cue_wrong=pytest.approx(0.7), accuracy=0.5,
                         reliance=pytest.approx(0.4 / 0.5), n=2)
    assert isinstance(r.n, int)


# --- the frozen-frame decomposition ----------------------------------------------------------


class _Recorder:
    """An explainer whose relevance of a clip is the clip itself times (target + 1), recording the
    batch and the targets of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, torch.Tensor]] = []

    def __call__(self, clips: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        assert target is not None
        self.calls.append((clips.shape[0], target.clone()))
        return clips * (target.to(clips.dtype) + 1).view(-1, 1, 1, 1, 1)


def _clips(n: int = 2, t: int = 5) -> torch.Tensor:
    return torch.arange(n * 1 * t * 2 * 2, dtype=torch.float32).reshape(n, 1, t, 2, 2)


def test_decomposition_by_hand_and_its_cost() -> None:
    clips, target = _clips(), np.array([0, 2], dtype=np.int32)
    rec = _Recorder()
    out = frozen_frame_decomposition(rec, clips, target)
    scale = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1, 1)
    # frozen clip of frame t: frame t repeated, so its mean over time is frame t (times the scale)
    assert torch.equal(out.spatial, clips * scale)
    assert torch.equal(out.temporal, torch.zeros_like(clips))
    # one explanation of the clips, then the 5 frozen versions: 6 per clip, as an int
    assert out.explanations_per_clip == 6 and isinstance(out.explanations_per_clip, int)
    assert sum(b for b, _ in rec.calls) == 2 * 6
    for _, tg in rec.calls:
        assert tg.dtype == torch.int64 and tg.tolist() == [0, 2] * (len(tg) // 2)
    assert frozen_frame_decomposition(_Recorder(), clips[:1], target[:1]).explanations_per_clip == 6


def test_decomposition_with_given_relevance_and_frames_per_call() -> None:
    clips, target = _clips(t=5), torch.tensor([1, 0])
    relevance = torch.ones_like(clips)
    for per_call, batches in ((None, [10]), (2, [4, 4, 2]), (1, [2] * 5), (0, [2] * 5)):
        rec = _Recorder()
        out = frozen_frame_decomposition(rec, clips, target, relevance, frames_per_call=per_call)
        assert [b for b, _ in rec.calls] == batches, per_call
        assert out.explanations_per_clip == 5
        scale = torch.tensor([2.0, 1.0]).view(2, 1, 1, 1, 1)
        assert torch.equal(out.spatial, clips * scale) and torch.equal(out.temporal, relevance - clips * scale)


def test_decomposition_refuses_bad_shapes_with_their_messages() -> None:
    clips, rec = _clips(), _Recorder()
    with pytest.raises(InvalidInputError, match=r"clips must be \(N, C, T, H, W\), got shape \(2, 5, 2, 2\)"):
        frozen_frame_decomposition(rec, clips[:, 0], torch.tensor([0, 1]))
    with pytest.raises(InvalidInputError, match="need one target per clip, got 3 for 2 clips"):
        frozen_frame_decomposition(rec, clips, torch.tensor([0, 1, 2]))
    for bad in (torch.ones(1, 1, 5, 2, 2), torch.ones(2, 1, 4, 2, 2)):
        with pytest.raises(InvalidInputError, match=r"relevance shape \(\d+, 1, \d, 2, 2\) does not "
                           r"match clips \(2, 1, 5, 2, 2\)"):
            frozen_frame_decomposition(rec, clips, torch.tensor([0, 1]), bad)
    assert rec.calls == []


# --- freeze and frozen accuracy --------------------------------------------------------------


def test_freeze_takes_every_frame_index_from_minus_t_to_t_minus_1() -> None:
    clips = _clips(t=4)
    for f in range(-4, 4):
        assert torch.equal(freeze(clips, f), clips[:, :, f % 4 : f % 4 + 1].expand_as(clips))
    for f in (-5, 4):
        with pytest.raises(InvalidInputError, match=f"frame {f} is out of range for clips of 4 frames"):
            freeze(clips, f)
    with pytest.raises(InvalidInputError, match=r"clips must be \(N, C, T, H, W\), got shape \(4, 2\)"):
        freeze(torch.ones(4, 2))


class _SignOfFrames(nn.Module):
    """Class 0 when the clip's mean is positive, else class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(dim=1)
        return torch.stack([m, -m], dim=1)


def test_frozen_accuracy_by_hand() -> None:
    # frames +3, -2, -2, -2: the clip's mean is -3/4 -> class 1; frozen on frame 0 -> class 0
    clip = torch.tensor([3.0, -2.0, -2.0, -2.0]).view(1, 1, 4, 1, 1).repeat(3, 1, 1, 1, 1)
    labels = torch.tensor([0, 0, 1])
    first = frozen_accuracy(_SignOfFrames(), clip, labels, num_classes=2, frame=0)
    assert (first.accuracy, first.frozen_accuracy, first.chance, first.n) == (pytest.approx(1 / 3),
                                                                              pytest.approx(2 / 3), 0.5, 3)
    later = frozen_accuracy(_SignOfFrames(), clip, labels, num_classes=2, frame=2)
    assert later.frozen_accuracy == pytest.approx(1 / 3)
    one = frozen_accuracy(_SignOfFrames(), clip[:1], labels[:1], num_classes=4, frame=0)
    assert (one.accuracy, one.frozen_accuracy, one.chance, one.n) == (0.0, 1.0, 0.25, 1)


def test_frozen_accuracy_refuses_mismatched_or_empty_input() -> None:
    clips = torch.ones(3, 1, 4, 1, 1)
    for c, y, msg in ((clips, torch.tensor([0, 1]), "got 2 labels for 3 clips"),
                      (clips[:0], torch.tensor([], dtype=torch.int64), "got 0 labels for 0 clips")):
        with pytest.raises(InvalidInputError, match=rf"need as many labels as clips \(> 0\), {msg}"):
            frozen_accuracy(_SignOfFrames(), c, y, num_classes=2)
