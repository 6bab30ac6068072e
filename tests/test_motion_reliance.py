"""``mr.motion_reliance``: the behavioural motion reliance, from forward passes under frame
interventions. Pinned properties: exactly 0 for an order-invariant model, close to 1 for a model
that sees only frame differences, monotone in the graded family's measured reliance,
deterministic for a seed, one-line errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import motion_relevance as mr
from motion_relevance.errors import InvalidInputError
from motion_relevance.evidence import controls
from motion_relevance.metrics.motion_reliance import BLOCKS


def BagOfFrames() -> nn.Module:
    """The order-invariant control (2-D convolutions, mean over time), seeded."""
    torch.manual_seed(0)
    return controls.BagOfFrames()


FrameDifferences = controls.FrameDifferences


def moving_squares(n: int, frames: int = 12, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Bright squares moving one pixel per frame to the right over a textured static background."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.zeros(n, 3, frames, size, size)
    for i in range(n):
        background = torch.rand(3, 1, size, size, generator=g) * 0.5
        clips[i] = background
        row, col = (int(v) for v in torch.randint(0, size - 4 - frames, (2,), generator=g))
        for t in range(frames):
            clips[i, :, t, row : row + 4, col + t : col + t + 4] = 1.0 + i % 3 * 0.2
    return clips


def test_an_order_invariant_model_reads_exactly_zero() -> None:
    clips = moving_squares(6)
    result = mr.motion_reliance(BagOfFrames().eval(), clips)
    assert result.score.shape == (6,) and result.ci.shape == (6, 2)
    assert torch.all(result.score == 0) and torch.all(result.ci == 0)
    # its permuted evidence equals the clip's to float rounding: nothing of it depends on order
    assert torch.allclose(result.permuted, result.evidence[:, None].expand_as(result.permuted), atol=1e-5)


def test_a_model_of_frame_differences_reads_close_to_one() -> None:
    clips = moving_squares(8)
    model = FrameDifferences()
    result = mr.motion_reliance(model, clips, target=0)
    assert torch.all(result.evidence > result.reference)  # it sees the rightward motion
    assert float(result.score.min()) >= 0.9, result.score
    assert torch.all(result.ci[:, 0] <= result.score) and torch.all(result.score <= result.ci[:, 1])
    # reversal turns rightward into leftward motion: more than all the evidence is lost
    assert torch.all(result.effects["reversal"] > 1.0)
    # a frozen clip has no differences at all: it reads like the (all-zero) reference
    assert torch.allclose(result.effects["freeze"], torch.ones(8), atol=1e-5)


def test_block_shuffles_are_reported_where_the_clip_is_longer_than_the_block() -> None:
    result = mr.motion_reliance(FrameDifferences(), moving_squares(4, frames=6), target=0, permutations=4)
    assert set(result.effects) == {"permutation", *(f"block-{b}" for b in BLOCKS), "reversal", "freeze"}
    assert torch.all(torch.isfinite(result.effects["block-2"])) and torch.all(torch.isfinite(result.effects["block-4"]))
    assert torch.all(torch.isnan(result.effects["block-8"]))  # 6 frames: one block, nothing to shuffle
    # the permutation effect is the score's own order part, in the same units
    assert torch.allclose(result.effects["permutation"], result.score, atol=1e-6)


@pytest.mark.slow
def test_monotone_in_the_graded_familys_measured_reliance() -> None:
    """On the graded family's validation scenes: the per-model mean score ranks the 15 shipped
    models as their measured reliance does (Spearman >= 0.8), and level 100 reads above level 0."""
    from motion_relevance.metrics.reliance import intervention_reliance
    from motion_relevance.models.synthetic_presets import GRADED_SHA256
    from motion_relevance.synthetic.generator import intervention_clips

    iv = intervention_clips(24, split="val", seed=7)
    labels = torch.from_numpy(iv.agree.labels)
    scores, measured, levels = [], [], []
    for name in GRADED_SHA256:
        model, spec = mr.load_model(name)
        clips = [spec.preprocess(b.frames) for b in (iv.agree, iv.motion_wrong, iv.cue_wrong)]
        measured.append(intervention_reliance(model, *clips, labels).reliance)
        scores.append(float(mr.motion_reliance(model, clips[0], target=labels, permutations=8).score.mean()))
        levels.append(int(name.split("-")[2]))
    rho = spearmanr(scores, measured).statistic
    print({n: (round(s, 3), round(m, 3)) for n, s, m in zip(GRADED_SHA256, scores, measured, strict=True)})
    assert rho >= 0.8, (rho, scores, measured)
    by_level = {lv: np.mean([s for s, v in zip(scores, levels, strict=True) if v == lv]) for lv in set(levels)}
    assert by_level[100] > by_level[0]


def test_the_same_seed_gives_the_same_numbers_and_another_seed_other_permutations() -> None:
    clips, model = moving_squares(3), FrameDifferences()
    a, b = (mr.motion_reliance(model, clips, target=0, seed=5) for _ in range(2))
    c = mr.motion_reliance(model, clips, target=0, seed=6)
    assert torch.equal(a.score, b.score) and torch.equal(a.ci, b.ci) and torch.equal(a.permuted, b.permuted)
    assert not torch.equal(a.permuted, c.permuted)


def test_batch_size_does_not_change_the_numbers() -> None:
    clips, model = moving_squares(3), BagOfFrames().eval()
    a = mr.motion_reliance(model, clips, batch_size=1)
    b = mr.motion_reliance(model, clips, batch_size=64)
    assert torch.allclose(a.permuted, b.permuted, atol=1e-5) and torch.equal(a.target, b.target)


def test_the_predicted_class_is_the_default_target() -> None:
    clips = moving_squares(4)
    model = BagOfFrames().eval()
    result = mr.motion_reliance(model, clips)
    assert torch.equal(result.target, model(clips).argmax(dim=1))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"clips": torch.zeros(2, 3, 8, 8)}, "(N, C, T, H, W)"),
        ({"clips": torch.zeros(2, 3, 1, 8, 8)}, "2 or more frames"),
        ({"permutations": 1}, "permutations"),
        ({"batch_size": 0}, "batch_size"),
        ({"target": 9}, "class index"),
        ({"target": torch.zeros(5, dtype=torch.long)}, "one per clip"),
        ({"reference": torch.zeros(3, 8, 8)}, "reference"),
    ],
)
def test_bad_input_is_a_one_line_error(kwargs: dict, words: str) -> None:
    args = {"clips": torch.zeros(2, 3, 6, 8, 8), **kwargs}
    with pytest.raises(InvalidInputError) as error:
        mr.motion_reliance(BagOfFrames().eval(), **args)
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("method", ["saliency", "gradcam", "lrp_epsilon_plus_flat"])
def test_an_order_invariant_models_explanations_are_order_insensitive(method: str) -> None:
    from motion_relevance.metrics.order_sensitivity import order_sensitivity
    from motion_relevance.models.synthetic_presets import graded_name, graded_spec

    spec = dataclasses.replace(graded_spec(graded_name(100, 0)), cam_layer="features.2")
    clips = moving_squares(3, frames=8, size=32)
    result = order_sensitivity(BagOfFrames().eval(), clips, method, spec=spec, permutations=3)
    assert result.per_permutation.shape == (3, 3)
    assert float(result.score.max()) <= 1e-4, result.score


def test_a_frame_difference_models_explanations_change_with_the_order() -> None:
    from motion_relevance.metrics.order_sensitivity import order_sensitivity

    result = order_sensitivity(FrameDifferences(), moving_squares(3), "saliency", target=0, permutations=3)
    assert torch.all((result.score > 0.1) & (result.score <= 1))


def test_non_finite_logits_give_nan_not_zero() -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([x.mean(dim=(1, 2, 3, 4)) * float("nan"), x.mean(dim=(1, 2, 3, 4))], dim=1)

    result = mr.motion_reliance(Broken(), moving_squares(2), target=1)
    assert torch.all(torch.isnan(result.score)) and torch.all(torch.isnan(result.ci))
