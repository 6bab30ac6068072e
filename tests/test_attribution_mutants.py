"""Gradient, path and perturbation methods: cases the mutation run of ``attribution/gradient.py``
found untested (per-clip baselines, internal batches, option errors, warnings).

Expected values are closed forms on a linear model: its gradient is the weight row ``W[c]``,
integrated gradients from a baseline ``b`` is ``(x - b) * W[c]`` for any quadrature whose weights
sum to one, and occluding the whole clip with zeros removes ``W[c] . x``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import motion_relevance as mr
from motion_relevance.attribution import gradient
from motion_relevance.errors import InvalidInputError

SHAPE = (3, 4, 4, 4)  # (C, T, H, W)
D = 3 * 4 * 4 * 4


class Linear(nn.Module):
    """logits = W vec(x) + b (float32); records the number of rows of every forward pass."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.lin = nn.Linear(D, k)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn((k, D), generator=gen))
            self.lin.bias.copy_(torch.randn(k, generator=gen))
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.shape[0])
        return self.lin(x.flatten(1))

    def row(self, c: int) -> torch.Tensor:
        return self.lin.weight.detach()[c].double().reshape(SHAPE)


def clips(n: int, seed: int) -> torch.Tensor:
    return torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    expected = expected.double()
    err = float((actual.double() - expected).abs().max())
    assert err <= rtol * float(expected.abs().max()), err


# ------------------------------------------------------------------------------------------------
# integrated gradients: baselines
# ------------------------------------------------------------------------------------------------


def test_integrated_gradients_takes_each_clips_own_baseline() -> None:
    model = Linear()
    x = clips(2, seed=1)
    base = clips(2, seed=2) / 2
    target = torch.tensor([0, 2])
    expl = mr.explain(model, x, "integrated_gradients", target=target, n_steps=4, baseline=base)
    for i in range(2):
        close(expl.relevance[i], (x[i].double() - base[i].double()) * model.row(int(target[i])))


@pytest.mark.parametrize("shape", [SHAPE, (1, *SHAPE), (3, 1, 1, 1)], ids=["clip", "one-clip-batch", "per-channel"])
def test_integrated_gradients_broadcasts_one_baseline_to_every_clip(shape: tuple[int, ...]) -> None:
    model = Linear()
    x = clips(2, seed=3)
    base = torch.rand(shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expl = mr.explain(model, x, "integrated_gradients", target=1, n_steps=3, baseline=base)
    assert expl.relevance.dtype == torch.float32
    full = torch.broadcast_to(base.reshape(shape[-4:]), SHAPE)
    for i in range(2):
        close(expl.relevance[i], (x[i].double() - full) * model.row(1))


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ("ones", "option baseline must be 'zeros', a number or a tensor, got 'ones'"),
        (True, "option baseline must be 'zeros', a number or a tensor, got True"),
        ([1.0], "option baseline must be 'zeros', a number or a tensor, got [1.0]"),
        (float("nan"), "option baseline must be a finite number, got nan"),
        (torch.zeros(SHAPE, dtype=torch.int64), "option baseline must be a finite floating-point tensor"),
        (torch.full(SHAPE, float("nan")), "option baseline must be a finite floating-point tensor"),
        (torch.zeros(5), "option baseline has shape (5,), which does not broadcast to a clip (3, 4, 4, 4)"),
    ],
    ids=["string", "bool", "list", "nan", "int-tensor", "nan-tensor", "shape"],
)
def test_integrated_gradients_baseline_errors(baseline: object, message: str) -> None:
    model = Linear()
    with pytest.raises(InvalidInputError) as info:
        mr.explain(model, clips(1, seed=5), "integrated_gradients", n_steps=2, baseline=baseline)
    assert str(info.value) == message


def test_baseline_helper_refuses_what_the_option_check_lets_through_only_by_mistake() -> None:
    x = clips(1, seed=6)
    cases = [
        ("ones", "option baseline must be 'zeros', a number or a tensor, got 'ones'"),
        (float("inf"), "option baseline must be a finite number, got inf"),
        ([0.5], "option baseline must be 'zeros', a number or a tensor, got list"),
    ]
    for value, message in cases:
        with pytest.raises(InvalidInputError) as info:
            gradient._baseline(value, x)
        assert str(info.value) == message
    assert torch.equal(gradient._baseline(0.5, x), torch.full_like(x, 0.5))


# ------------------------------------------------------------------------------------------------
# multi-pass methods: internal batches of batch_size passes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("integrated_gradients", {"n_steps": 7}),
        ("smoothgrad", {"samples": 7, "noise": 0.1}),
        ("occlusion", {"window": (2, 2, 2)}),  # 8 windows
    ],
)
def test_multi_pass_methods_run_batch_size_passes_per_forward(method: str, options: dict) -> None:
    model = Linear()
    mr.explain(model, clips(2, seed=7), method, target=0, batch_size=3, **options)
    assert max(model.rows) == 3


# ------------------------------------------------------------------------------------------------
# SmoothGrad and occlusion on the linear model
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [1, 2])
def test_smoothgrad_without_noise_is_the_requested_classs_weight_row(target: int) -> None:
    model = Linear()
    expl = mr.explain(model, clips(2, seed=8), "smoothgrad", target=target, noise=0.0, samples=2)
    for i in range(2):
        close(expl.relevance[i], model.row(target))


def test_occlusion_with_the_whole_clip_as_window() -> None:
    model = Linear()
    x = clips(1, seed=9)
    expl = mr.explain(model, x, "occlusion", target=2, window=(4, 4, 4))
    drop = float((x[0].double() * model.row(2)).sum())  # logit(x) - logit(0)
    close(expl.relevance[0], torch.full(SHAPE, drop, dtype=torch.float64))


def test_occlusion_window_larger_than_the_clip() -> None:
    with pytest.raises(InvalidInputError) as info:
        mr.explain(Linear(), clips(1, seed=10), "occlusion", window=(5, 2, 2))
    assert str(info.value) == "occlusion window (5, 2, 2) is larger than the clip (T, H, W) = (4, 4, 4)"


# ------------------------------------------------------------------------------------------------
# warnings: only Captum's ReLU-hook warning is silenced
# ------------------------------------------------------------------------------------------------


class Warns(Linear):
    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        warnings.warn("the model's own warning", UserWarning, stacklevel=2)
        return self.lin(self.relu(x).flatten(1))


@pytest.mark.parametrize("method", ["guided_backprop", "deconvolution"])
def test_relu_rules_silence_only_the_relu_hook_warning(method: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mr.explain(Warns(), clips(1, seed=11), method, target=0)
    messages = [str(w.message) for w in caught]
    assert "the model's own warning" in messages
    assert not any("backward hooks on ReLU" in m for m in messages)


@pytest.mark.parametrize(
    ("window", "stride"),
    [((3, 3, 3), (2, 2, 2)), ((4, 4, 4), (4, 4, 4)), ((2, 3, 1), (1, 2, 1)), ((4, 2, 3), (1, 2, 1))],
)
def test_occlusion_windows_counts_the_passes_captum_makes(window: tuple, stride: tuple) -> None:
    """The count is read off the model: one row per occluded position (plus the plain forward);
    with window 3 and stride 2 on 4 frames the partial last window counts (2 per axis, not 1)."""
    model = Linear()
    mr.explain(model, torch.rand(1, *SHAPE), "occlusion", window=window, stride=stride, batch_size=1)
    passes = sum(model.rows) - 2  # the plain forward and Captum's own unoccluded forward
    assert gradient.occlusion_windows(SHAPE, window, stride) == passes
    by_hand = 1
    for n, w, s in zip(SHAPE[1:], window, stride, strict=True):
        by_hand *= len(range(0, n - w + s, s)) if (n - w) % s else len(range(0, n - w + 1, s))
    assert passes == by_hand


def test_occlusion_stride_larger_than_the_window_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="stride"):
        mr.explain(Linear(), torch.rand(1, *SHAPE), "occlusion", window=(2, 2, 2), stride=(3, 1, 1))


@pytest.mark.parametrize(
    ("shape", "window", "stride"),
    [((4, 4, 4), (2, 2, 2), (2, 2, 2)), (SHAPE, (2, 2), (2, 2)), (SHAPE, (2, 2, 2), (2, 2))],
)
def test_occlusion_windows_refuses_mismatched_lengths(shape: tuple, window: tuple, stride: tuple) -> None:
    """A (T, H, W) shape without its channel axis, or a 2-D window or stride, is an error rather
    than a count over two axes (4 windows here instead of 8)."""
    with pytest.raises(ValueError, match="zip"):
        gradient.occlusion_windows(shape, window, stride)


@pytest.mark.parametrize("stride", [(5, 2, 2), (9, 2, 2)])
def test_occlusion_stride_past_a_window_that_spans_the_axis_is_allowed(stride: tuple) -> None:
    """A window as long as the clip's axis has one position there, so any stride along it skips
    nothing. Each voxel's relevance is the drop of its 4 x 2 x 2 block (all channels) zeroed."""
    model = Linear()
    x = clips(1, seed=12)
    expl = mr.explain(model, x, "occlusion", target=1, window=(4, 2, 2), stride=stride)
    wx = (x[0].double() * model.row(1)).reshape(3, 1, 4, 2, 2, 2, 2)  # (C, 1, T, Hb, 2, Wb, 2)
    blocks = wx.sum(dim=(0, 2, 4, 6))  # (1, Hb, Wb)
    expected = blocks[:, None, :, None, :, None].expand(1, 4, 2, 2, 2, 2).reshape(1, 4, 4, 4)
    close(expl.relevance[0], expected.expand(SHAPE))


def test_host_noise_is_float32_whatever_the_default_dtype() -> None:
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        noise = gradient.host_noise(torch.Generator().manual_seed(4), (2, 3), 0.5)
    finally:
        torch.set_default_dtype(before)
    expected = torch.randn((2, 3), generator=torch.Generator().manual_seed(4), dtype=torch.float32) * 0.5
    assert noise.dtype == torch.float32
    assert torch.equal(noise, expected)


def test_smoothgrad_noise_repeats_each_clip_in_place_in_the_clips_dtype() -> None:
    """Two float16 clips, two samples each per batch: rows clip 0, clip 0, clip 1, clip 1, each
    plus its own float32 CPU draw rounded to float16 once."""
    from captum.attr import Saliency

    x = clips(2, seed=13).half()
    tunnel = gradient._HostNoiseTunnel(Saliency(Linear()), torch.Generator().manual_seed(6))
    noisy = tunnel._add_noise_to_input(x, 0.25, 2)
    noise = torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(6), dtype=torch.float32) * 0.25
    expected = torch.stack([x[0], x[0], x[1], x[1]]) + noise.half()
    assert noisy.dtype == torch.float16
    assert torch.equal(noisy, expected)
