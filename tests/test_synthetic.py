"""The synthetic benchmark: determinism, ground truth, label semantics, training command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motion_relevance.errors import InvalidInputError, UnknownNameError
from motion_relevance.synthetic import (
    APPEARANCE_LABELS,
    VARIANTS,
    generate,
    labels,
    shape_mask,
    temporal_dilation,
)
from motion_relevance.synthetic.generator import _DIRECTIONS, CUE_COLOURS, PALETTE
from motion_relevance.synthetic.masks import LABEL_SHAPES, SHAPES


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_dtypes_and_balance(variant: str) -> None:
    b = generate(variant, 8, frames=6, size=40)
    assert b.frames.shape == (8, 6, 40, 40, 3) and b.frames.dtype == np.uint8
    for arr in (b.motion_mask, b.key_mask):
        assert arr.shape == (8, 6, 40, 40) and arr.dtype == bool
    assert b.segmentation.shape == (8, 6, 40, 40)
    assert sorted(b.labels.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(labels(variant)) == 4 and len(b) == 8
    assert b.motion_mask.any(axis=(1, 2, 3)).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_deterministic_and_clip_wise(variant: str) -> None:
    a = generate(variant, 5, seed=3, frames=4, size=32)
    b = generate(variant, 3, seed=3, start=2, frames=4, size=32)
    np.testing.assert_array_equal(a.frames[2:], b.frames)
    np.testing.assert_array_equal(a.motion_mask[2:], b.motion_mask)
    c = generate(variant, 5, seed=4, frames=4, size=32)
    assert not np.array_equal(a.frames, c.frames)
    d = generate(variant, 5, seed=3, split="train", frames=4, size=32)
    assert not np.array_equal(a.frames, d.frames)


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_the_moving_object_changes(variant: str) -> None:
    b = generate(variant, 6, frames=8, size=48)
    moving = b.segmentation == 1
    np.testing.assert_array_equal(b.motion_mask, temporal_dilation(moving))
    for t in range(1, 8):
        still = ~(moving[:, t] | moving[:, 0])
        np.testing.assert_array_equal(b.frames[:, t][still], b.frames[:, 0][still])
        # ... and where the moving object is, the frames do change somewhere
    assert (b.frames[:, 1:] != b.frames[:, :-1]).any(axis=(1, 2, 3, 4)).all()


@pytest.mark.parametrize("variant", ["motion", "shortcut"])
def test_label_is_the_direction_of_motion(variant: str) -> None:
    b = generate(variant, 8, frames=5, size=48)
    for i in range(8):
        obj = b.segmentation[i] == 1
        dy, dx = _DIRECTIONS[b.labels[i]]
        ok = [
            all(np.array_equal(np.roll(obj[t], (s * dy, s * dx), axis=(0, 1)), obj[t + 1])
                for t in range(4))
            for s in (1, 2, 3)
        ]
        assert any(ok), f"clip {i} does not move {labels(variant)[b.labels[i]]}"


def _best_shape(support: np.ndarray) -> str:
    """The label shape whose sprite (at some size) best matches a support's bounding box."""
    ys, xs = np.nonzero(support)
    crop = support[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    best, score = "", -1.0
    for shape in LABEL_SHAPES:
        for s in range(6, 40):
            m = shape_mask(shape, s)
            my, mx = np.nonzero(m)
            m = m[my.min() : my.max() + 1, mx.min() : mx.max() + 1]
            if m.shape != crop.shape:
                continue
            iou = (m & crop).sum() / (m | crop).sum()
            if iou > score:
                best, score = shape, iou
    return best


def test_appearance_label_is_the_static_key_shape() -> None:
    b = generate("appearance", 8, frames=6, size=64)
    for i in range(8):
        key = b.key_mask[i].any(axis=0)
        assert key.any()
        # The key object never moves: its visible pixels are identical in every frame.
        visible = b.key_mask[i].all(axis=0)
        frames = b.frames[i][:, visible]
        assert (frames == frames[:1]).all()
        assert _best_shape(key) == LABEL_SHAPES[b.labels[i]]
        assert APPEARANCE_LABELS[b.labels[i]].endswith(LABEL_SHAPES[b.labels[i]])
        colour = b.frames[i, 0][b.key_mask[i, 0]].astype(float).mean(axis=0)
        np.testing.assert_allclose(colour, PALETTE[b.labels[i]], atol=25)
        # the key object never covers the moving object (checked for every clip)
        assert not b.key_mask[i][b.segmentation[i] == 1].any()


def test_shortcut_cue_agreement() -> None:
    agree = generate("shortcut", 40, split="train", cue_agreement=1.0, frames=3, size=32)
    np.testing.assert_array_equal(agree.cues, agree.labels)
    never = generate("shortcut", 40, split="train", cue_agreement=0.0, frames=3, size=32)
    assert (never.cues != never.labels).all()
    test = generate("shortcut", 200, frames=2, size=32)
    rate = (test.cues == test.labels).mean()
    assert 0.12 < rate < 0.40  # uniformly random cue: 1/4 agree
    train = generate("shortcut", 200, split="train", frames=2, size=32)
    assert (train.cues == train.labels).mean() > 0.8
    # The cue patch has the cue's colour.
    for i in range(5):
        patch = agree.frames[i, 0][agree.key_mask[i, 0]].astype(float).mean(axis=0)
        np.testing.assert_allclose(patch, CUE_COLOURS[agree.cues[i]], atol=12)
    assert (generate("motion", 4, frames=2, size=32).cues == -1).all()


def test_shapes_and_dilation() -> None:
    for shape in SHAPES:
        m = shape_mask(shape, 15)
        assert m.shape == (15, 15) and 0.2 < m.mean() < 0.95
    support = np.zeros((5, 2, 2), dtype=bool)
    support[2, 0, 0] = True
    d = temporal_dilation(support)
    assert d[1:4, 0, 0].all() and not d[0].any() and not d[4].any() and d.sum() == 3


def test_bad_arguments() -> None:
    with pytest.raises(UnknownNameError, match="variant"):
        generate("nope", 2)
    with pytest.raises(UnknownNameError, match="split"):
        generate("motion", 2, split="dev")
    with pytest.raises(InvalidInputError, match="positive"):
        generate("motion", 0)
    with pytest.raises(InvalidInputError, match="cue_agreement"):
        generate("shortcut", 2, cue_agreement=1.5)
    with pytest.raises(UnknownNameError, match="shape"):
        shape_mask("star", 10)


def _script(name: str):
    """Import a training script from scripts/ (they are tools, not part of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_training_is_deterministic(tmp_path) -> None:
    from safetensors.torch import load_file

    mod = _script("train_synthetic")
    TrainConfig, train = mod.TrainConfig, mod.train

    cfg = TrainConfig(variant="motion", steps=2, batch_size=4, threads=1, test_clips=8)
    r1 = train(cfg, tmp_path / "a")
    r2 = train(cfg, tmp_path / "b")
    assert r1.sha256 == r2.sha256
    state = load_file(r1.path)
    assert "fc.weight" in state and all(torch.isfinite(v).all() for v in state.values())
    assert 0.0 <= r1.test_accuracy <= 1.0 and 0.0 <= r1.frozen_accuracy <= 1.0
    r3 = train(TrainConfig(variant="motion", steps=2, batch_size=4, threads=1, test_clips=8, seed=1),
               tmp_path / "c")
    assert r3.sha256 != r1.sha256


def test_graded_training_batches_carry_one_cue_each() -> None:
    """Level L: per clip, motion carries the label (cue random) or the cue does (direction random)."""
    mod = _script("train_graded")
    for level in (0, 100):
        b = mod.training_batch(level, seed=0, step=0, batch=16)
        carrier = b.directions if level == 100 else b.cues
        assert (carrier == b.labels).all()
    b = mod.training_batch(50, seed=0, step=3, batch=64)
    motion_clips = b.directions == b.labels
    cue_clips = b.cues == b.labels
    assert (motion_clips | cue_clips).all() and 0.2 < motion_clips.mean() < 0.9
