"""LRP edges the first mutation run of ``attribution/lrp.py``, ``structure.py`` and
``canonizers.py`` showed no test reached (issue 15): the Deep Taylor bounds as options, from the
spec and per clip, and I3D's head pool on features that vary.

Expected values come from the definitions (the spec's pixel range normalised per channel, the
original ``InceptionI3d.forward``), never from the code under test.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from zennit.composites import Composite

from motion_relevance.attribution.canonizers import I3DHeadCanonizer
from motion_relevance.attribution.lrp import box_bounds
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.i3d import InceptionI3d
from motion_relevance.models.spec import InputSpec

SPEC = InputSpec(frames=4, size=(8, 8), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), scale=1 / 255)


def _run(spec: InputSpec | None) -> SimpleNamespace:
    return SimpleNamespace(spec=spec)


def test_bounds_from_the_spec_are_its_pixel_range_per_channel() -> None:
    x = torch.zeros(2, 3, 5, 4, 4, dtype=torch.float64)
    low, high = box_bounds(_run(SPEC), x, {})
    assert low.shape == high.shape == (1, 3, 1, 1, 1) and low.dtype == high.dtype == torch.float64
    expected_low = [(0 - m) / s for m, s in zip(SPEC.mean, SPEC.std, strict=True)]
    expected_high = [(1 - m) / s for m, s in zip(SPEC.mean, SPEC.std, strict=True)]
    assert low.flatten().tolist() == pytest.approx(expected_low, rel=1e-12)
    assert high.flatten().tolist() == pytest.approx(expected_high, rel=1e-12)


def test_bounds_from_a_three_channel_spec_for_a_one_channel_clip_span_all_channels() -> None:
    x = torch.zeros(1, 1, 5, 4, 4)
    low, high = box_bounds(_run(SPEC), x, {})
    assert low.shape == (1, 1, 1, 1, 1)
    assert float(low) == pytest.approx(min((0 - m) / s for m, s in zip(SPEC.mean, SPEC.std, strict=True)))
    assert float(high) == pytest.approx(max((1 - m) / s for m, s in zip(SPEC.mean, SPEC.std, strict=True)))


def test_bounds_as_options_a_number_a_number_per_channel_or_per_clip() -> None:
    x = torch.zeros(2, 3, 5, 4, 4, dtype=torch.float64)
    low, high = box_bounds(_run(SPEC), x, {"low": -2.0, "high": [1.0, 2.0, 3.0]})
    assert low.shape == (1, 3, 1, 1, 1) and low.dtype == torch.float64 and (low == -2.0).all()
    assert high.flatten().tolist() == [1.0, 2.0, 3.0] and high.dtype == torch.float64
    per_clip = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).view(2, 3, 1, 1, 1)
    _, high = box_bounds(_run(None), x, {"low": -1.0, "high": per_clip})
    assert torch.equal(high, per_clip.double())


@pytest.mark.parametrize("shape", [(2,), (1, 3, 2, 1, 1), (1, 3, 1, 2, 1), (1, 3, 1, 1, 2), (1, 2, 1, 1, 1),
                                   (3, 1, 1, 1, 1), (1, 3, 1, 1)])
def test_bounds_of_another_shape_are_refused_naming_the_option(shape: tuple[int, ...]) -> None:
    x = torch.zeros(1, 3, 5, 4, 4)  # 3 channels, 5 frames: a message naming 5 would be wrong
    with pytest.raises(InvalidInputError, match=rf"^option high must be a number or one number per channel \(3\), "
                       rf"got shape \({', '.join(map(str, shape))},?\)$"):
        box_bounds(_run(None), x, {"high": torch.ones(shape)})


def test_bounds_per_clip_from_each_clips_range() -> None:
    x = torch.stack([torch.linspace(-1, 2, 3 * 5 * 4 * 4).view(3, 5, 4, 4), torch.zeros(3, 5, 4, 4)])
    low, high = box_bounds(_run(None), x, {})
    assert torch.equal(low, x.amin(dim=(2, 3, 4), keepdim=True))
    assert torch.equal(high, x.amax(dim=(2, 3, 4), keepdim=True))


@pytest.mark.parametrize("features", [(3, 9, 10), (4, 2, 9), (2, 7, 7), (5, 8, 3)])
def test_i3d_head_canonizer_keeps_the_logits_of_features_that_vary(features: tuple[int, int, int]) -> None:
    """The untrained I3D's features hardly vary in time or space (std ~1e-6), so a head pool with
    the wrong stride or kernel gave the same logits there; here the features are random."""
    torch.manual_seed(0)
    model = InceptionI3d(num_classes=4).eval()
    model.features = lambda v: v  # feed the head directly
    x = torch.randn(2, 1024, *features)
    with torch.no_grad():
        reference = model(x)
        with Composite(canonizers=[I3DHeadCanonizer()]).context(model):
            canonized = model(x)
    torch.testing.assert_close(canonized, reference, rtol=1e-5, atol=1e-6)
