"""Metrics: precision, AUROC, sparsity, frozen clips, decomposition, deletion, optical flow."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from motion_relevance.errors import InvalidInputError
from motion_relevance.metrics import (
    auroc,
    deletion_faithfulness,
    flow_magnitude,
    flow_mask,
    flow_precision,
    freeze,
    frozen_accuracy,
    frozen_frame_decomposition,
    mask_precision,
    motion_precision,
    nonzero_voxels,
    remove_voxels,
    sparsity_ratio,
)
from motion_relevance.selective import selective_relevance


def test_mask_precision_by_hand() -> None:
    r = torch.zeros(2, 3, 2, 2, 2)
    r[0, 0, 0, 0, 0] = 3.0
    r[0, 1, 1, 1, 1] = -1.0
    mask = torch.zeros(2, 2, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 0] = True
    p = mask_precision(r, mask)
    assert p[0].item() == pytest.approx(0.75)
    assert torch.isnan(p[1])  # all-zero relevance: undefined
    assert mask_precision(r, mask.unsqueeze(1))[0].item() == pytest.approx(0.75)
    with pytest.raises(InvalidInputError, match="mask"):
        mask_precision(r, mask[:, :1])


def test_motion_precision_prefers_what_changes() -> None:
    # A static blob plus a blob that moves: the selective part keeps the moving one.
    torch.manual_seed(0)
    r = torch.zeros(1, 1, 8, 16, 16)
    r[..., 2:5, 2:5] = 1.0
    truth = torch.zeros(1, 8, 16, 16, dtype=torch.bool)
    for t in range(8):
        r[0, 0, t, 10:13, t : t + 3] = 1.0
        truth[0, t, 9:14, max(t - 1, 0) : t + 4] = True
    mp = motion_precision(r, truth, sigma=1.0)
    assert 0.0 <= mp.base.item() <= 1.0 and 0.0 <= mp.selective.item() <= 1.0
    assert mp.selective.item() > mp.base.item()
    assert mp.motion_share.shape == (1,) and mp.sigma == 1.0


def _pairwise_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc() -> None:
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 17).astype(float), rng.integers(0, 5, 11).astype(float)
    assert auroc(pos, neg) == pytest.approx(_pairwise_auc(pos, neg))
    assert auroc(np.r_[pos, np.nan], neg) == pytest.approx(_pairwise_auc(pos, neg))
    with pytest.raises(InvalidInputError):
        auroc([], [1.0])


def test_sparsity() -> None:
    torch.manual_seed(0)
    r = torch.randn(3, 2, 6, 8, 8)
    r[2] = 0.0
    sel = selective_relevance(r, 1.0)
    ratio = sparsity_ratio(r, sel.motion)
    assert nonzero_voxels(r)[0].item() == 6 * 8 * 8
    assert (ratio[:2] <= 1.0).all() and (ratio[:2] > 0).all() and torch.isnan(ratio[2])
    assert ratio[0].item() == pytest.approx(sel.mask[0].float().mean().item())


def test_freeze_and_frozen_accuracy() -> None:
    clips = torch.arange(2 * 1 * 5 * 2 * 2, dtype=torch.float32).reshape(2, 1, 5, 2, 2)
    f = freeze(clips)
    assert f.shape == clips.shape
    assert torch.equal(f[:, :, 4], clips[:, :, 2]) and torch.equal(f[:, :, 0], clips[:, :, 2])
    assert torch.equal(freeze(clips, -1)[:, :, 0], clips[:, :, 4])
    with pytest.raises(InvalidInputError, match="out of range"):
        freeze(clips, 5)

    class TemporalSign(nn.Module):  # predicts 1 when the clip gets brighter, else 0
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            d = (x[:, :, -1] - x[:, :, 0]).mean(dim=(1, 2, 3))
            return torch.stack([-d, d], dim=1)

    up = torch.linspace(0, 1, 6).view(1, 1, 6, 1, 1).expand(4, 3, 6, 4, 4)
    clips = torch.cat([up, up.flip(2)])
    labels = torch.tensor([1] * 4 + [0] * 4)
    res = frozen_accuracy(TemporalSign(), clips, labels, num_classes=2)
    assert res.accuracy == 1.0 and res.frozen_accuracy == 0.5 and res.chance == 0.5 and res.n == 8


def test_frozen_frame_decomposition() -> None:
    torch.manual_seed(0)
    clips = torch.randn(2, 3, 4, 5, 5)
    target = torch.tensor([0, 1])
    calls = []

    def input_as_relevance(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return x.clone()

    d = frozen_frame_decomposition(input_as_relevance, clips, target)
    # The frozen clip of frame t explains to frame t itself: nothing is temporal.
    assert torch.allclose(d.temporal, torch.zeros_like(clips), atol=1e-6)
    assert torch.allclose(d.spatial, clips)
    assert d.explanations_per_clip == 4 + 1 and sum(calls) == 2 * 5

    w = torch.randn(1, 3, 4, 5, 5)

    def times_weight(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x * w

    d2 = frozen_frame_decomposition(times_weight, clips, target, frames_per_call=3)
    for t in range(4):
        expected = clips[:, :, t] * w[:, :, t] - (clips[:, :, t : t + 1] * w).mean(dim=2)
        assert torch.allclose(d2.temporal[:, :, t], expected, atol=1e-6)
    assert torch.allclose(d2.temporal + d2.spatial, clips * w, atol=1e-6)


class _Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.weight).sum(dim=(1, 2, 3, 4))
        return torch.stack([s, -s], dim=1)


def test_deletion_faithfulness() -> None:
    torch.manual_seed(0)
    clips = torch.randn(3, 2, 6, 7, 7)
    w = torch.zeros(1, 2, 6, 7, 7)
    w[..., 2:4, 2:4] = 1.0
    model = _Linear(w)
    relevance = clips * w
    mask = torch.zeros(3, 6, 7, 7, dtype=torch.bool)
    mask[0, :, 2:4, 2:4] = True  # exactly the voxels the model reads
    mask[1, 0, 0, 0] = True  # one voxel the model ignores
    res = deletion_faithfulness(model, clips, torch.zeros(3, dtype=torch.long), relevance, mask)
    assert res.removed.tolist() == [24, 1, 0]
    full = (clips * w).sum(dim=(1, 2, 3, 4)) - (remove_voxels(clips, mask) * w).sum(dim=(1, 2, 3, 4))
    assert torch.allclose(res.motion, full, atol=1e-5)
    assert res.motion[1].item() == pytest.approx(0.0, abs=1e-6)
    assert res.motion[2].item() == res.static[2].item() == res.random[2].item() == 0.0
    # Clip 1: the most relevant static voxel is one the model reads, so removing it matters more.
    assert abs(res.static[1].item()) > 0
    # remove_voxels sets the selection to the temporal mean and leaves the rest.
    removed = remove_voxels(clips, mask)
    assert torch.allclose(removed[0, :, 3, 2, 2], clips[0, :, :, 2, 2].mean(dim=1))
    assert torch.equal(removed[0, :, :, 5, 5], clips[0, :, :, 5, 5])


def _moving_square(t: int = 5, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    bg = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)
    frames = np.repeat(bg[None], t, axis=0)
    tex = rng.integers(150, 255, (12, 12, 3), dtype=np.uint8)
    for i in range(t):
        frames[i, 18:30, 6 + 3 * i : 18 + 3 * i] = tex
    return frames


def test_flow_mask_finds_the_moving_square() -> None:
    frames = _moving_square()
    mag = flow_magnitude(frames)
    assert mag.shape == (5, 48, 48) and mag.dtype == np.float32
    m = flow_mask(frames)
    near = np.zeros_like(m)  # the square and a margin of about Farneback's window
    for i in range(5):
        near[i, 18 - 12 : 30 + 12, max(0, 6 + 3 * i - 12) : 18 + 3 * i + 12] = True
        assert m[i, 24, 12 + 3 * i]  # the square's centre moves
    assert (m & near).sum() / m.sum() > 0.95
    assert not m[:, :, 40:].any()  # nothing moves on the far right
    static = np.repeat(frames[:1], 3, axis=0)
    assert flow_magnitude(static).max() < 0.1  # vs 3 px per frame for the square
    with pytest.raises(InvalidInputError):
        flow_magnitude(frames[:1])


def test_flow_precision() -> None:
    truth = torch.zeros(1, 4, 8, 8, dtype=torch.bool)
    truth[:, :, :4] = True
    r = torch.zeros(1, 1, 4, 8, 8)
    r[0, 0, :, :4] = 1.0  # true positives
    r[0, 0, :, 6:, 6:] = 1.0  # false positives
    sel = torch.zeros(1, 1, 4, 8, 8, dtype=torch.bool)
    sel[..., :4, :] = True
    fp = flow_precision(r, truth, sel)
    assert fp.base.item() == pytest.approx(128 / 144)
    assert fp.selective.item() == pytest.approx(1.0)
    assert fp.selective_positives.item() <= fp.base_positives.item()
    empty = flow_precision(r, truth, torch.zeros_like(sel))
    assert torch.isnan(empty.selective).all()
