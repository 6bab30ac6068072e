"""The evaluation's statistics against independent computations on small fixtures.

AUROC against the pairwise definition (ties count one half) on random scores with many ties,
including its direction; F1 and recall against their formulas; sparsity, mask precision and
flow precision against NumPy; deletion against a spy model that records every clip it is shown,
so that the voxels each selection (motion, static, random) actually removed can be read back and
compared with what the selection is documented to remove.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from motion_relevance.metrics import (
    auroc,
    deletion_faithfulness,
    mask_precision,
    nonzero_voxels,
    remove_voxels,
    sparsity_ratio,
)
from motion_relevance.metrics import flow as flow_module
from motion_relevance.metrics.flow import flow_mask, flow_precision, threshold_explanation
from motion_relevance.metrics.precision import f1_score, selective_recall

# ---------------------------------------------------------------------------------------------
# AUROC
# ---------------------------------------------------------------------------------------------


def pairwise_auc(pos: list[float], neg: list[float]) -> float:
    """P(pos > neg) + P(pos == neg) / 2 over all pairs (NaNs left out)."""
    pos = [p for p in pos if p == p]
    neg = [n for n in neg if n == n]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


scores = st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 2.5, -1.0, float("nan")]), min_size=1, max_size=25)


@settings(max_examples=200, deadline=None)
@given(pos=scores, neg=scores)
def test_auroc_is_the_pairwise_probability_with_half_ties(pos: list[float], neg: list[float]) -> None:
    if all(p != p for p in pos) or all(n != n for n in neg):
        return  # a group with only NaN is an error (tested in test_metrics)
    got = auroc(np.array(pos), np.array(neg))
    assert got == pytest.approx(pairwise_auc(pos, neg), abs=1e-12)
    # direction: swapping the groups mirrors the value
    assert auroc(np.array(neg), np.array(pos)) == pytest.approx(1.0 - got, abs=1e-12)


def test_auroc_direction_on_separated_groups() -> None:
    high, low = torch.tensor([0.9, 0.8, 0.95]), torch.tensor([0.1, 0.3])
    assert auroc(high, low) == 1.0
    assert auroc(low, high) == 0.0
    # of the four pairs only 0.2 vs 0.25 goes against the first group
    assert auroc([0.2, 0.9], [0.25, 0.1]) == pytest.approx(3 / 4)
    # all tied: chance
    assert auroc([1.0, 1.0, 1.0], [1.0, 1.0]) == 0.5


# ---------------------------------------------------------------------------------------------
# F1 and recall of the selective part (the evaluation's precision table)
# ---------------------------------------------------------------------------------------------


def test_f1_is_the_harmonic_mean() -> None:
    p = torch.tensor([0.5, 0.9, 0.0, 1.0, float("nan"), 0.3])
    r = torch.tensor([0.5, 0.1, 0.0, 1.0, 0.4, float("nan")])
    got = f1_score(p, r)
    expected = []
    for pi, ri in zip(p.tolist(), r.tolist(), strict=True):
        pi, ri = (0.0 if v != v else v for v in (pi, ri))  # NaN counts as 0
        expected.append(0.0 if pi + ri == 0 else 2 * pi * ri / (pi + ri))
    assert got.tolist() == pytest.approx(expected)
    assert got[1].item() == pytest.approx(0.18)  # not p * r = 0.09, not the mean 0.5


def test_recall_is_the_share_of_relevance_on_the_object_that_the_motion_part_keeps() -> None:
    rel = torch.zeros(2, 3, 2, 2, 2)
    rel[0, 0, 0, 0, 0], rel[0, 1, 0, 0, 1], rel[0, 2, 1, 1, 1] = 2.0, -3.0, 4.0
    truth = torch.zeros(2, 2, 2, 2, dtype=torch.bool)
    truth[0, 0, 0] = True  # voxels (0, 0, 0) and (0, 0, 1): |R| = 2 and 3 on the object
    motion = rel.clone()
    motion[0, 1] = 0.0  # the motion part keeps 2 of the 5
    got = selective_recall(rel, motion, truth)
    assert got[0].item() == pytest.approx(2 / 5)
    assert torch.isnan(got[1])  # nothing on the object: undefined


# ---------------------------------------------------------------------------------------------
# sparsity and precision
# ---------------------------------------------------------------------------------------------


def random_relevance(seed: int, shape: tuple[int, ...] = (3, 2, 4, 5, 6), zeros: float = 0.5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(shape, generator=gen)
    r[torch.rand(shape, generator=gen) < zeros] = 0.0
    return r


def test_nonzero_voxels_and_sparsity_ratio_by_numpy() -> None:
    base = random_relevance(0, zeros=0.3)
    keep = torch.rand(base.shape[0], 1, *base.shape[2:], generator=torch.Generator().manual_seed(1)) < 0.4
    selective = base * keep
    b = np.asarray(base)
    s = np.asarray(selective)
    count_b = np.array([np.sum(np.any(b[i] != 0, axis=0)) for i in range(b.shape[0])])
    count_s = np.array([np.sum(np.any(s[i] != 0, axis=0)) for i in range(s.shape[0])])
    assert nonzero_voxels(base).tolist() == count_b.tolist()
    ratio = sparsity_ratio(base, selective)
    assert ratio.tolist() == pytest.approx((count_s / count_b).tolist())
    assert (ratio < 0.6).all()  # most voxels were dropped: the ratio is small, not 1 - ratio
    empty = sparsity_ratio(torch.zeros_like(base), selective)
    assert torch.isnan(empty).all()


def test_mask_precision_by_numpy() -> None:
    r = random_relevance(2)
    mask = torch.rand(r.shape[0], *r.shape[2:], generator=torch.Generator().manual_seed(3)) < 0.3
    mag = np.abs(np.asarray(r)).sum(axis=1)
    m = np.asarray(mask)
    expected = [(mag[i] * m[i]).sum() / mag[i].sum() for i in range(r.shape[0])]
    assert mask_precision(r, mask).tolist() == pytest.approx(expected, rel=1e-6)


def test_threshold_and_flow_precision_by_numpy() -> None:
    r = random_relevance(4, zeros=0.2)
    flow = torch.rand(r.shape[0], *r.shape[2:], generator=torch.Generator().manual_seed(5)) < 0.5
    sel = torch.rand(r.shape[0], *r.shape[2:], generator=torch.Generator().manual_seed(6)) < 0.5
    mag = np.abs(np.asarray(r, dtype=np.float64)).sum(axis=1)
    positive = np.stack([mag[i] > mag[i].std(ddof=1) for i in range(r.shape[0])])
    assert np.array_equal(np.asarray(threshold_explanation(r)), positive)
    truth, s = np.asarray(flow), np.asarray(sel)
    fp = flow_precision(r, flow, sel)
    for i in range(r.shape[0]):
        assert fp.base[i].item() == pytest.approx((positive[i] & truth[i]).sum() / positive[i].sum())
        both = positive[i] & s[i]
        assert fp.selective[i].item() == pytest.approx((both & truth[i]).sum() / both.sum())
        assert fp.base_positives[i].item() == positive[i].sum()
        assert fp.selective_positives[i].item() == both.sum()


def test_flow_mask_thresholds_each_frame_at_its_own_std(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    mag = rng.gamma(1.0, size=(3, 6, 7)).astype(np.float32)
    mag[1] *= 10.0  # a frame with much more motion: a shared threshold would differ
    monkeypatch.setattr(flow_module, "flow_magnitude", lambda frames: mag)
    got = flow_mask(np.zeros((3, 6, 7, 3), dtype=np.uint8))
    expected = np.stack([mag[t] > mag[t].std(ddof=1) for t in range(3)])
    assert np.array_equal(got, expected)


# ---------------------------------------------------------------------------------------------
# deletion: what each selection removes, read back from a spy model
# ---------------------------------------------------------------------------------------------


class Spy(nn.Module):
    """A linear model (logit 0 = sum w x, logit 1 = its negative) that keeps every batch."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        s = (x * self.weight).sum(dim=(1, 2, 3, 4))
        return torch.stack([s, -s], dim=1)


def deletion_fixture(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n, c, t, h, w = 3, 2, 5, 6, 6
    gen = torch.Generator().manual_seed(seed)
    clips = torch.randn((n, c, t, h, w), generator=gen)  # distinct values: every removal changes the clip
    weight = torch.randn((1, c, t, h, w), generator=gen)
    relevance = torch.randn((n, c, t, h, w), generator=gen)
    mask = torch.zeros((n, t, h, w), dtype=torch.bool)
    mask[0, 1:3, 2:4, 2:4] = True  # 8 voxels
    mask[1, :, 0, 0] = True  # 5 voxels
    return clips, weight, relevance, mask  # clip 2: empty mask


def changed_voxels(before: torch.Tensor, after: torch.Tensor) -> np.ndarray:
    return np.asarray((before != after).any(dim=1))


def test_deletion_selections_remove_what_they_say() -> None:
    clips, weight, relevance, mask = deletion_fixture()
    spy = Spy(weight)
    res = deletion_faithfulness(spy, clips, torch.zeros(3, dtype=torch.long), relevance, mask, seed=3, batch_size=16)
    base, motion, static, random = spy.seen  # one batch per evaluation, in this order
    assert torch.equal(base, clips)
    k = np.asarray(mask.sum(dim=(1, 2, 3)))
    assert res.removed.tolist() == k.tolist()
    mag = np.abs(np.asarray(relevance)).sum(axis=1)
    m = np.asarray(mask)
    for i in range(3):
        # motion: exactly the mask
        assert np.array_equal(changed_voxels(clips[i : i + 1], motion[i : i + 1])[0], m[i])
        # static: the k voxels outside the mask with the largest sum_c |R|
        allowed = np.where(m[i], -np.inf, mag[i]).ravel()
        top = np.zeros(allowed.size, dtype=bool)
        top[np.argsort(-allowed, kind="stable")[: k[i]]] = True
        assert np.array_equal(changed_voxels(clips[i : i + 1], static[i : i + 1])[0].ravel(), top)
        # random: k voxels, not the motion voxels nor the static ones
        chosen = changed_voxels(clips[i : i + 1], random[i : i + 1])[0]
        assert chosen.sum() == k[i]
        if k[i] > 0:
            assert not np.array_equal(chosen, m[i])
            assert not np.array_equal(chosen.ravel(), top)
        # removed voxels take the clip's temporal mean at that pixel, per channel
        for sel in (motion, static, random):
            diff = changed_voxels(clips[i : i + 1], sel[i : i + 1])[0]
            mean = clips[i].mean(dim=1, keepdim=True).expand_as(clips[i])
            assert torch.allclose(sel[i][:, torch.from_numpy(diff)], mean[:, torch.from_numpy(diff)])
    # the drops are the target logit before minus after
    logit = lambda x: (x * weight).sum(dim=(1, 2, 3, 4))  # noqa: E731
    for name, seen in (("motion", motion), ("static", static), ("random", random)):
        assert torch.allclose(getattr(res, name), logit(clips) - logit(seen), atol=1e-5), name
    assert res.motion[2] == res.static[2] == res.random[2] == 0.0


def test_deletion_random_selection_is_uniform_over_the_clip() -> None:
    """Over many seeds each voxel is drawn at rate k / voxels, inside the mask as outside."""
    clips, weight, relevance, mask = deletion_fixture()
    clips, relevance, mask = clips[:1], relevance[:1], mask[:1]
    voxels, k, draws = mask[0].numel(), int(mask.sum()), 300
    counts = np.zeros(voxels)
    for seed in range(draws):
        spy = Spy(weight)
        deletion_faithfulness(spy, clips, torch.zeros(1, dtype=torch.long), relevance, mask, seed=seed)
        counts += changed_voxels(clips, spy.seen[3])[0].ravel()
    assert counts.sum() == k * draws
    rate = k / voxels
    inside = counts[np.asarray(mask[0]).ravel()].mean() / draws
    sd = np.sqrt(rate * (1 - rate) / (draws * k))
    assert abs(inside - rate) < 5 * sd  # the mask's voxels are no more likely than others
    expected = draws * rate
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < voxels + 6 * np.sqrt(2 * voxels)


def test_remove_voxels_leaves_everything_else() -> None:
    clips, _, _, mask = deletion_fixture()
    out = remove_voxels(clips, mask)
    keep = ~mask[:, None].expand_as(clips)
    assert torch.equal(out[keep], clips[keep])
    mean = clips.mean(dim=2, keepdim=True).expand_as(clips)
    assert torch.allclose(out[~keep], mean[~keep])


def test_thresholds_use_the_sample_std() -> None:
    """Magnitudes 0 x 6, 3, 1.06: the std is 1.004 with ddof=0 and 1.073 with ddof=1, so 1.06
    is above the threshold only if the population std were used (found by the mutation run)."""
    values = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 1.06])
    assert float(values.std(correction=0)) < 1.06 < float(values.std(correction=1))
    relevance = values.reshape(1, 1, 2, 2, 2)
    assert threshold_explanation(relevance).flatten().tolist() == [False] * 6 + [True, False]


def test_flow_mask_uses_the_sample_std(monkeypatch: pytest.MonkeyPatch) -> None:
    mag = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 1.06], dtype=np.float32).reshape(1, 2, 4)
    monkeypatch.setattr(flow_module, "flow_magnitude", lambda frames: mag)
    got = flow_mask(np.zeros((1, 2, 4, 3), dtype=np.uint8))
    assert got.ravel().tolist() == [False] * 6 + [True, False]


# edge cases the mutation run found unpinned: tiny totals, one voxel, nothing at all


def test_ratios_at_their_smallest_denominators() -> None:
    # F1 with p + r < 1
    assert f1_score(torch.tensor([0.2]), torch.tensor([0.3])).item() == pytest.approx(0.24)
    # sparsity of a base with one non-zero voxel
    base = torch.zeros(2, 3, 2, 2, 2)
    base[0, 1, 1, 0, 1] = 0.5
    base[1, :, 0] = 1.0  # 4 voxels
    selective = base.clone()
    selective[1, :, 0, 0] = 0.0  # keeps 2 of 4
    assert sparsity_ratio(base, selective).tolist() == pytest.approx([1.0, 0.5])
    # mask precision with a total below 1
    r = torch.zeros(1, 2, 1, 2, 2)
    r[0, 0, 0, 0, 0], r[0, 1, 0, 1, 1] = 0.1, -0.3
    mask = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    mask[0, 0, 1, 1] = True
    assert mask_precision(r, mask).item() == pytest.approx(0.75)


def test_recall_with_small_relevance_and_several_clips() -> None:
    rel = torch.zeros(3, 1, 1, 2, 2)
    rel[0, 0, 0, 0] = torch.tensor([0.2, 0.1])  # on the object: 0.3, kept 0.2
    rel[1, 0, 0, 0] = torch.tensor([0.05, 0.05])  # on the object: 0.1, kept 0.1
    truth = torch.zeros(3, 1, 2, 2, dtype=torch.bool)
    truth[:, 0, 0] = True
    motion = rel.clone()
    motion[0, 0, 0, 0, 1] = 0.0
    got = selective_recall(rel, motion, truth)
    assert got[:2].tolist() == pytest.approx([2 / 3, 1.0])
    assert torch.isnan(got[2])


def test_nothing_relevant_is_nothing_positive() -> None:
    """An all-zero explanation: no voxel above its (zero) std, every precision undefined."""
    r = torch.zeros(1, 3, 2, 4, 4)
    truth = torch.ones(1, 2, 4, 4, dtype=torch.bool)
    assert not threshold_explanation(r).any()
    fp = flow_precision(r, truth, truth)
    assert torch.isnan(fp.base).all() and torch.isnan(fp.selective).all()
    assert fp.base_positives.item() == 0
    assert torch.isnan(mask_precision(r, truth)).all()


def test_flow_precision_with_one_positive_voxel() -> None:
    r = torch.zeros(2, 1, 1, 3, 3)
    r[:, 0, 0, 1, 1] = 5.0  # the only voxel above the std
    truth = torch.zeros(2, 1, 3, 3, dtype=torch.bool)
    truth[0, 0, 1, 1] = True
    fp = flow_precision(r, truth, torch.ones_like(truth))
    assert fp.base.tolist() == [1.0, 0.0] and fp.base_positives.tolist() == [1, 1]


def test_flow_mask_of_still_frames_is_empty_and_reads_the_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)

    def magnitude(f: np.ndarray) -> np.ndarray:
        seen.append(f)
        return np.zeros((2, 4, 4), dtype=np.float32)

    monkeypatch.setattr(flow_module, "flow_magnitude", magnitude)
    assert not flow_mask(frames).any()  # zero flow is not above a zero std
    assert seen[0] is frames


def test_deletion_is_seeded_and_takes_integer_masks() -> None:
    clips, weight, relevance, mask = deletion_fixture()
    target = torch.zeros(3, dtype=torch.long)
    a = deletion_faithfulness(Spy(weight), clips, target, relevance, mask)
    b = deletion_faithfulness(Spy(weight), clips, target, relevance, mask, seed=0)
    c = deletion_faithfulness(Spy(weight), clips, target, relevance, mask, seed=1)
    assert torch.equal(a.random, b.random)  # the default seed is 0
    assert not torch.equal(a.random[:2], c.random[:2])
    # the most relevant voxels lie in the mask: a mask not made boolean would let "static" take them
    relevance = torch.where(mask[:, None], 100 * relevance.abs(), relevance)
    a = deletion_faithfulness(Spy(weight), clips, target, relevance, mask)
    d = deletion_faithfulness(Spy(weight), clips, target, relevance, mask.numpy().astype(np.uint8), batch_size=1)
    for name in ("motion", "static", "random", "removed"):
        assert torch.allclose(getattr(d, name).double(), getattr(a, name).double(), atol=1e-5), name


@pytest.mark.parametrize(
    ("clips", "relevance"),
    [
        (torch.zeros(2, 3, 4, 5, 5), torch.zeros(3, 3, 4, 5, 5)),  # another number of clips
        (torch.zeros(2, 3, 4, 5, 5), torch.zeros(2, 3, 4, 5, 6)),  # another clip size
        (torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 4, 5)),  # not 5-D
    ],
)
def test_deletion_checks_shapes_in_one_line(clips: torch.Tensor, relevance: torch.Tensor) -> None:
    from motion_relevance.errors import InvalidInputError

    mask = torch.zeros(clips.shape[0], *clips.shape[2:], dtype=torch.bool)
    with pytest.raises(InvalidInputError, match=r"clips \(.*\) and relevance \(.*\) must be \(N, C, T, H, W\) alike"):
        deletion_faithfulness(Spy(torch.zeros(1)), clips, torch.zeros(clips.shape[0], dtype=torch.long), relevance, mask)


def test_magnitudes_are_float32_and_bad_shapes_are_named() -> None:
    from motion_relevance.errors import InvalidInputError
    from motion_relevance.metrics.precision import voxel_magnitude

    assert voxel_magnitude(torch.ones(1, 2, 1, 1, 1, dtype=torch.float64)).dtype == torch.float32
    with pytest.raises(InvalidInputError, match=r"relevance must be \(N, C, T, H, W\), got shape \(2, 3\)"):
        voxel_magnitude(torch.zeros(2, 3))
    with pytest.raises(InvalidInputError, match=r"AUROC needs at least one score in each group, got 1 and 0"):
        auroc([1.0], [float("nan")])


def test_flow_magnitude_pairs_each_frame_with_the_next_and_the_last_with_the_one_before() -> None:
    import cv2

    rng = np.random.default_rng(8)
    base = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8).repeat(6, 0).repeat(6, 1)  # 36 x 48
    shifted = np.roll(base, 3, axis=1)
    frames = np.stack([base, shifted, shifted])  # moves, then stands still
    mag = flow_module.flow_magnitude(frames)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    first = cv2.calcOpticalFlowFarneback(grey[0], grey[1], None, **flow_module.FARNEBACK)
    np.testing.assert_allclose(mag[0], np.hypot(first[..., 0], first[..., 1]), rtol=1e-6)
    assert mag[0].max() > 2.0  # the 3-pixel shift
    assert mag[1].max() < 0.3 and mag[2].max() < 0.3  # 1 -> 2 and 2 -> 1: (next to) no motion
    two = flow_module.flow_magnitude(frames[1:])  # two frames are enough
    assert two.shape == (2, 36, 48)


@pytest.mark.parametrize(
    ("frames", "words"),
    [
        (np.zeros((3, 8, 8, 4), np.uint8), r"frames must be uint8 \(T, H, W, 3\) RGB, got uint8 \(3, 8, 8, 4\)"),
        (np.zeros((3, 8, 8, 3), np.float32), r"got float32 \(3, 8, 8, 3\)"),
        (np.zeros((8, 8, 3), np.uint8), r"got uint8 \(8, 8, 3\)"),
        (np.zeros((1, 8, 8, 3), np.uint8), r"optical flow needs at least 2 frames, got 1"),
    ],
)
def test_flow_magnitude_checks_its_frames(frames: np.ndarray, words: str) -> None:
    from motion_relevance.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=words):
        flow_module.flow_magnitude(frames)


def test_motion_precision_sigma_padding_and_a_given_split() -> None:
    from motion_relevance.metrics import motion_precision
    from motion_relevance.selective import selective_relevance

    gen = torch.Generator().manual_seed(9)
    r = torch.rand(1, 2, 6, 8, 8, generator=gen) + 1.0
    truth = torch.zeros(1, 6, 8, 8, dtype=torch.bool)
    truth[:, :, 2:5, 2:5] = True
    assert motion_precision(r, truth).sigma == 1.0  # the default
    for sigma, padding in ((2.0, "replicate"), (1.0, "zeros")):
        got = motion_precision(r, truth, sigma, padding=padding)
        want = selective_relevance(r, sigma, padding=padding)
        assert got.sigma == sigma
        assert torch.equal(got.motion_share, want.motion_share)
        assert torch.allclose(got.selective, mask_precision(want.motion, truth), equal_nan=True)
    assert not torch.equal(motion_precision(r, truth, padding="zeros").motion_share,
                           motion_precision(r, truth).motion_share)
    given = selective_relevance(r, 3.0)
    got = motion_precision(r, truth, 1.0, selective=given)
    assert got.sigma == 3.0 and torch.equal(got.motion_share, given.motion_share)


def test_blur_operator_is_a_5x5_box_filter_with_edge_replication() -> None:
    from scipy.ndimage import uniform_filter

    from motion_relevance.errors import InvalidInputError
    from motion_relevance.metrics.deletion import replacement

    clips, *_ = deletion_fixture()
    got = replacement(clips, "blur").numpy()
    want = uniform_filter(clips.double().numpy(), size=(1, 1, 1, 5, 5), mode="nearest")
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert torch.equal(replacement(clips, "zero"), torch.zeros_like(clips))
    with pytest.raises(InvalidInputError, match="operator"):
        replacement(clips, "noise")


def test_changed_only_draws_every_selection_from_voxels_the_operator_changes() -> None:
    """A clip whose left half is frozen (static) and right half flickers: the temporal mean
    changes only the right half, so with changed_only no selection may touch the left half, and
    the motion selection keeps only its changed voxels."""
    from motion_relevance.metrics.deletion import changed_voxels as operator_changes

    clips, weight, relevance, mask = deletion_fixture()
    clips[:, :, :, :, :3] = clips[:, :, :1, :, :3]  # left half static over time
    mask = torch.zeros_like(mask)
    mask[:, 1:3, 1:5, 1:5] = True  # half of it on the static side
    changed = np.zeros((3, 5, 6, 6), dtype=bool)
    changed[..., 3:] = True
    assert np.array_equal(np.asarray(operator_changes(clips, "temporal_mean")), changed)
    spy = Spy(weight)
    res = deletion_faithfulness(spy, clips, torch.zeros(3, dtype=torch.long), relevance, mask,
                                operator="temporal_mean", changed_only=True)  # fmt: skip
    _, motion, static, random = spy.seen
    k = np.asarray(mask).sum(axis=(1, 2, 3)) // 2  # the motion voxels on the changing side
    assert res.removed.tolist() == k.tolist()
    for sel in (motion, static, random):
        touched = changed_voxels(clips, sel)
        assert not touched[..., :3].any()
        assert touched.sum(axis=(1, 2, 3)).tolist() == k.tolist()
    assert np.array_equal(changed_voxels(clips, motion), np.asarray(mask) & changed)
    # without the restriction the static selection may land on voxels the operator leaves be
    spy = Spy(weight)
    deletion_faithfulness(spy, clips, torch.zeros(3, dtype=torch.long), relevance, mask, operator="temporal_mean")
    _, motion_all, _, _ = spy.seen
    assert changed_voxels(clips, motion_all).sum() < np.asarray(mask).sum()  # half of the mask did nothing
