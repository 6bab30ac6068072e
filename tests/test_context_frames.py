"""explain(context_frames=k, context=...): explain a clip with k frames of context at each end,
crop the relevance back; the temporal-edge remedy for frozen clips."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import motion_relevance as mr
from motion_relevance.errors import InvalidInputError
from motion_relevance.synthetic import generate

torch.set_num_threads(1)


class TinyVideoNet(nn.Module):
    """Temporally fully convolutional: conv (zero padding), temporal max pool, mean, linear."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool3d(2)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).mean(dim=(2, 3, 4)))


def _clip(n: int = 2, t: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, t, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "gradcam"])
def test_replicated_context_equals_explaining_the_extended_clip_cropped(method: str) -> None:
    model, x = TinyVideoNet(), _clip()
    opts = {"n_steps": 4} if method == "integrated_gradients" else {}
    if method == "gradcam":
        opts["layer"] = "conv"
    k = 3
    extended = torch.cat([x[:, :, :1].expand(-1, -1, k, -1, -1), x, x[:, :, -1:].expand(-1, -1, k, -1, -1)], dim=2)
    expected = mr.explain(model, extended, method, **opts)
    got = mr.explain(model, x, method, context_frames=k, **opts)
    assert got.relevance.shape == x.shape
    torch.testing.assert_close(got.relevance, expected.relevance[:, :, k : k + x.shape[2]], rtol=1e-6, atol=1e-7)
    assert torch.equal(got.logits, expected.logits) and torch.equal(got.target, expected.target)
    assert got.options["context_frames"] == k and "context" not in got.options
    plain = mr.explain(model, x, method, **opts)
    assert not torch.allclose(plain.relevance, got.relevance)  # the context changes the explanation


def test_real_context_frames_are_used_nearest_first_and_filled_by_replication() -> None:
    model, x = TinyVideoNet(), _clip()
    before = _clip(1, 5, seed=1)  # one row: shared by both clips; 5 frames, the nearest 3 used
    after = _clip(2, 2, seed=2)  # only 2 of 3: the last one repeats
    k = 3
    ext_after = torch.cat([after, after[:, :, -1:]], dim=2)
    extended = torch.cat([before[:, :, -k:].expand(2, -1, -1, -1, -1), x, ext_after], dim=2)
    expected = mr.explain(model, extended, "saliency").relevance[:, :, k : k + x.shape[2]]
    got = mr.explain(model, x, "saliency", context_frames=k, context=(before, after))
    torch.testing.assert_close(got.relevance, expected, rtol=1e-6, atol=1e-7)
    assert got.options["context"] == "given"
    # One side None: that side repeats the clip's edge frame.
    extended = torch.cat([x[:, :, :1].expand(-1, -1, k, -1, -1), x, ext_after], dim=2)
    expected = mr.explain(model, extended, "saliency").relevance[:, :, k : k + x.shape[2]]
    got = mr.explain(model, x, "saliency", context_frames=k, context=(None, after))
    torch.testing.assert_close(got.relevance, expected, rtol=1e-6, atol=1e-7)


def test_frozen_clip_is_flat_with_context_and_shared_ties_only() -> None:
    """A frozen synthetic clip: with 16 replicated context frames at each end and shared ties
    its 16 frames get the same relevance; context alone keeps the pools' comb, ties alone the
    edge response."""
    model, spec = mr.load_model("synthetic-motion")
    spec = dataclasses.replace(spec, min_frames=4)  # SyntheticC3D is temporally fully convolutional
    clip = spec.preprocess(generate("motion", 1, seed=3).frames[0])
    frozen = clip[:, :, :1].expand(-1, -1, 16, -1, -1).contiguous()

    def spread(**kwargs: object) -> float:
        e = mr.explain(model, frozen, "saliency", spec=spec, **kwargs).relevance.abs().sum(dim=(0, 1, 3, 4))
        return float((e - e.mean()).abs().max() / e.mean())

    assert spread(ties="shared", context_frames=16) < 1e-5
    assert spread(ties="first", context_frames=16) > 0.02
    assert spread(ties="shared") > 0.1
    assert spread() > 0.1


def test_models_that_cannot_take_longer_clips_are_refused_in_one_line() -> None:
    model, spec = mr.load_model("synthetic-motion")  # its spec takes exactly 16 frames
    x = spec.preprocess(generate("motion", 1, seed=3).frames[0])
    with pytest.raises(InvalidInputError, match="takes exactly 16 frames") as info:
        mr.explain(model, x, "saliency", context_frames=2)
    assert "\n" not in str(info.value)
    # context_frames=0 is the plain explanation (no check needed).
    assert mr.explain(model, x, "saliency").relevance.shape == x.shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"context_frames": -1}, "integer >= 0"),
        ({"context_frames": 1.5}, "integer >= 0"),
        ({"context_frames": True}, "integer >= 0"),
        ({"context": (None, None)}, "context_frames is 0"),
        ({"context_frames": 2, "context": torch.zeros(1)}, "pair"),
        ({"context_frames": 2, "context": (torch.zeros(2, 3, 2, 4, 4), None)}, "must match the clips"),
        ({"context_frames": 2, "context": (torch.zeros(3, 3, 2, 8, 8), None)}, "must match the clips"),
        ({"context_frames": 2, "context": (None, torch.zeros(2, 3, 2, 8, 8, dtype=torch.int64))}, "float tensor"),
        ({"context_frames": 2, "context": (torch.full((1, 3, 2, 8, 8), float("nan")), None)}, "NaN"),
    ],
)
def test_bad_context_arguments_are_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        mr.explain(TinyVideoNet(), _clip(), "saliency", **kwargs)
