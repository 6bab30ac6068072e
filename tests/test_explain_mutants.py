"""Edges of ``explain`` and of the method options that the first mutation run of
``attribution/explain.py`` and ``method.py`` showed no test reached (issue 15): the option
checkers and their messages, how option values are described, and explain's refusals word for
word."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from motion_relevance.attribution import explain
from motion_relevance.attribution.method import (
    Option,
    describe,
    float_or_tensor,
    non_negative_float,
    positive_int,
    triple,
)
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec


def test_an_option_line_shows_its_default() -> None:
    assert Option("n", 3, "steps", positive_int).line() == "steps (default: 3)"
    assert Option("n", None, "steps", positive_int, shown_default="one per clip").line() == "steps (default: one per clip)"
    assert Option("s", "zeros", "base", positive_int).line() == "base (default: 'zeros')"


def test_number_checkers_name_the_option() -> None:
    with pytest.raises(InvalidInputError, match=r"^option n_steps must be a positive integer, got 0$"):
        positive_int("n_steps", 0)
    with pytest.raises(InvalidInputError, match=r"^option noise must be a finite number >= 0, got -1.0$"):
        non_negative_float("noise", -1.0)


def test_triple_takes_an_int_or_three_positive_ints() -> None:
    assert triple("window", 2) == (2, 2, 2)
    assert triple("window", [1, 2, 3]) == (1, 2, 3) and isinstance(triple("window", [1, 2, 3]), tuple)
    for bad in (True, "abc", (1, 0, 2), (1, True, 2), (1.0, 2, 2), (1, 2), 0, None):
        with pytest.raises(InvalidInputError, match=r"^option window must be a positive int or three positive "
                           r"ints \(t, h, w\), got "):
            triple("window", bad)


def test_float_or_tensor_accepts_a_number_numbers_or_a_float_tensor() -> None:
    assert float_or_tensor("low", 2) == 2.0 and isinstance(float_or_tensor("low", 2), float)
    got = float_or_tensor("low", [1.0, 2])
    assert isinstance(got, torch.Tensor) and got.tolist() == [1.0, 2.0]
    t = torch.ones(3, requires_grad=True)
    out = float_or_tensor("low", t)
    assert torch.equal(out, t.detach()) and not out.requires_grad
    for bad in (torch.ones(3, dtype=torch.int64), torch.tensor([1.0, math.inf])):
        with pytest.raises(InvalidInputError, match=r"^option low must be a finite floating-point tensor$"):
            float_or_tensor("low", bad)
    for bad in ([], [1.0, True], [1.0, "a"]):
        with pytest.raises(InvalidInputError, match=r"^option low must be a number or one number per channel, got "):
            float_or_tensor("low", bad)
    with pytest.raises(InvalidInputError, match=r"^option low must be finite$"):
        float_or_tensor("low", [1.0, math.nan])
    with pytest.raises(InvalidInputError, match=r"^option low must be a finite number, got 'a'$"):
        float_or_tensor("low", "a")


def test_describe_gives_json_friendly_values() -> None:
    assert describe(torch.tensor(2.5)) == 2.5 and describe(torch.tensor([2.5])) == 2.5
    assert describe(torch.tensor([1.0, 2.0])) == [1.0, 2.0]
    assert describe(torch.arange(8.0)) == [float(v) for v in range(8)]
    assert describe(torch.arange(9.0)) == "tensor(9,)"
    assert describe(torch.ones(1, 2)) == "tensor(1, 2)"
    assert describe((1, 2, 3)) == [1, 2, 3]
    assert describe("zeros") == "zeros" and describe(None) is None


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3, 4))


def test_explain_refusals_word_for_word() -> None:
    net, x = _Tiny(), torch.zeros(1, 3, 4, 4, 4)
    with pytest.raises(InvalidInputError, match=r"^context frames were given but context_frames is 0; pass "
                       r"context_frames=k$"):
        explain(net, x, "saliency", context=(x, None))
    with pytest.raises(InvalidInputError, match=r"^clips contain NaN or infinite values$"):
        explain(net, torch.full_like(x, math.inf), "saliency")
    # NaN context frames are named as such (they were once reported as NaN clips)
    bad = torch.full((1, 3, 2, 4, 4), math.nan)
    with pytest.raises(InvalidInputError, match=r"^context frames contain NaN or infinite values$"):
        explain(net, x, "saliency", context_frames=2, context=(bad, None))


class _Temporal(nn.Module):
    """A convolution over time (3 frames), so relevance depends on the neighbouring frames."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv3d(3, 2, (3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)).mean(dim=(2, 3, 4))


def _saliency_by_hand(net: nn.Module, extended: torch.Tensor, before: int, frames: int) -> torch.Tensor:
    leaf = extended.clone().requires_grad_()
    logits = net(leaf)
    (grad,) = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), leaf)
    return grad[:, :, before : before + frames]


def test_context_frames_are_placed_around_the_clip_as_documented() -> None:
    net = _Temporal()
    g = torch.Generator().manual_seed(0)
    x, one, three = (torch.randn(2, 3, t, 2, 2, generator=g) for t in (4, 1, 3))
    k = 2
    cases = [
        ((None, None), torch.cat([x[:, :, :1]] * k + [x] + [x[:, :, -1:]] * k, dim=2)),
        ((three, three), torch.cat([three[:, :, -2:], x, three[:, :, :2]], dim=2)),  # the nearest k
        ((one, None), torch.cat([one, one, x, x[:, :, -1:], x[:, :, -1:]], dim=2)),  # missing: repeat outermost
        ((None, one[:1]), torch.cat([x[:, :, :1], x[:, :, :1], x, one[:1].expand(2, -1, -1, -1, -1),
                                      one[:1].expand(2, -1, -1, -1, -1)], dim=2)),  # one row for all clips
        ((three[:, :, :0], None), torch.cat([x[:, :, :1]] * k + [x] + [x[:, :, -1:]] * k, dim=2)),  # 0 frames
        ((three.numpy(), None), torch.cat([three[:, :, -2:], x, x[:, :, -1:], x[:, :, -1:]], dim=2)),
    ]
    for context, extended in cases:
        got = explain(net, x, "saliency", context_frames=k, context=context).relevance
        torch.testing.assert_close(got, _saliency_by_hand(net, extended, k, 4), rtol=1e-5, atol=1e-7)


def test_context_refusals_word_for_word() -> None:
    net, x = _Temporal(), torch.zeros(2, 3, 4, 2, 2)
    with pytest.raises(InvalidInputError, match=r"^context_frames needs a model that accepts longer clips, but this "
                       r"model takes exactly 4 frames \(its InputSpec has no min_frames\); use context_frames=0$"):
        explain(net, x, "saliency", context_frames=1, spec=InputSpec(frames=4, size=(2, 2)))
    pair = r"^context must be a pair \(before, after\) of frame tensors \(N, C, j, H, W\) or None$"
    for bad in ((x,), x, (x, x, x)):
        with pytest.raises(InvalidInputError, match=pair):
            explain(net, x, "saliency", context_frames=1, context=bad)
    for context, name in (([1.0], None), "before"), ((None, torch.zeros(2, 3, 1, 2)), "after"), (
            (None, torch.zeros(2, 3, 1, 2, 2, dtype=torch.int64)), "after"):
        with pytest.raises(InvalidInputError, match=rf"^context {name} must be a float tensor \(N, C, j, H, W\) "
                           r"preprocessed like the clips$"):
            explain(net, x, "saliency", context_frames=1, context=context)
    with pytest.raises(InvalidInputError, match=r"^context after has shape \(3, 3, 1, 2, 2\); it must match the clips "
                       r"\(2, 3, 4, 2, 2\) except in time \(and may have 1 row\)$"):
        explain(net, x, "saliency", context_frames=1, context=(None, torch.zeros(3, 3, 1, 2, 2)))


def test_unknown_options_are_refused_with_the_methods_options() -> None:
    net, x = _Temporal(), torch.zeros(1, 3, 4, 2, 2)
    with pytest.raises(InvalidInputError, match=r"^method 'saliency' has no option 'n_steps'; it takes no options$"):
        explain(net, x, "saliency", n_steps=3)
    with pytest.raises(InvalidInputError, match=r"^method 'integrated_gradients' has no option 'a'; its options are "
                       r"baseline, n_steps$"):
        explain(net, x, "integrated_gradients", b=1, a=2)


# --------------------------------------------------------------------------------------------
# second pass: the survivors of the run's last 513 mutants
# --------------------------------------------------------------------------------------------


def _clips(n: int = 2, t: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, t, 2, 2, generator=torch.Generator().manual_seed(3))


def test_the_options_record_says_what_ran() -> None:
    net, x = _Temporal(), _clips()
    assert explain(net, x, "saliency").options == {"batch_size": None, "seed": 0, "ties": "first", "context_frames": 0}
    e = explain(net, x, "saliency", seed=np.int64(3), ties="shared", batch_size=1, tf32=True)
    assert e.options == {
        "batch_size": 1, "seed": 3, "ties": "shared", "context_frames": 0, "precision": "float32", "tf32": True
    }
    assert type(e.options["seed"]) is int  # JSON-friendly, whatever integer type was given
    e = explain(net, x, "saliency", precision="bf16", context_frames=1)
    assert e.options == {
        "batch_size": None, "seed": 0, "ties": "first", "context_frames": 1, "precision": "bfloat16", "tf32": False
    }


class _Recorder(_Temporal):
    """``_Temporal`` (in ``dtype``) that records, on every forward, the batch size, PyTorch's
    float32 matmul precision setting and the clips' dtype."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.to(dtype)
        self.seen: list[tuple[int, str, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.shape[0], torch.backends.cuda.matmul.fp32_precision, x.dtype))
        return super().forward(x)


def test_tf32_true_leaves_pytorchs_setting_and_false_sets_ieee_while_the_method_runs() -> None:
    matmul = torch.backends.cuda.matmul
    saved = matmul.fp32_precision
    try:
        matmul.fp32_precision = "tf32"
        for tf32, inside in ((True, "tf32"), (False, "ieee")):
            net = _Recorder()
            explain(net, _clips(), "saliency", tf32=tf32)
            assert {s[1] for s in net.seen} == {inside}
            assert matmul.fp32_precision == "tf32"  # restored
    finally:
        matmul.fp32_precision = saved


def test_bfloat16_runs_the_model_under_autocast_and_returns_float32() -> None:
    net, x = _Temporal(), _clips()
    e = explain(net, x, "saliency", precision="bfloat16")
    assert e.relevance.dtype == torch.float32 and e.logits.dtype == torch.float32
    reference = explain(net, x, "saliency").relevance
    error = (e.relevance - reference).norm() / reference.norm()
    assert 0 < error < 0.05  # rounded to bfloat16 on the way, but the same map


def test_multi_pass_methods_run_one_pass_per_forward_by_default_and_batch_size_when_given() -> None:
    x = _clips(1)
    net = _Recorder()
    explain(net, x, "integrated_gradients", n_steps=4)
    assert sorted({s[0] for s in net.seen}) == [1]
    net = _Recorder()
    explain(net, x, "integrated_gradients", n_steps=4, batch_size=4)
    assert 4 in {s[0] for s in net.seen}


def test_smoothgrad_seeds_each_clip_with_seed_plus_its_index() -> None:
    net, x = _Temporal(), _clips(3)
    together = explain(net, x, "smoothgrad", seed=10, samples=3).relevance
    for i in range(3):
        alone = explain(net, x[i : i + 1], "smoothgrad", seed=10 + i, samples=3).relevance
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(together[0], explain(net, x[:1], "smoothgrad", seed=11, samples=3).relevance[0])


def test_a_float64_model_gives_float32_relevance_and_logits() -> None:
    net = _Recorder(torch.float64)
    e = explain(net, _clips(), "saliency")
    assert net.seen[0][2] == torch.float64  # the clips were run in the model's dtype
    assert e.relevance.dtype == torch.float32 and e.logits.dtype == torch.float32 and e.target.dtype == torch.int64


def test_numpy_clips_give_the_same_explanation_on_the_cpu() -> None:
    net, x = _Temporal(), _clips()
    got = explain(net, x.numpy(), "saliency")
    want = explain(net, x, "saliency")
    assert got.relevance.device.type == "cpu"
    torch.testing.assert_close(got.relevance, want.relevance)
    assert torch.equal(got.target, want.target)


def test_more_refusals_word_for_word() -> None:
    net, x = _Temporal(), _clips()
    with pytest.raises(InvalidInputError, match=r"^clips must be a float tensor \(N, C, T, H, W\), got list$"):
        explain(net, [1.0], "saliency")
    with pytest.raises(InvalidInputError, match=r"^model must be a torch.nn.Module, got function$"):
        explain(lambda t: t, x, "saliency")
    with pytest.raises(InvalidInputError, match=r"^tf32 must be True or False, got 1$"):
        explain(net, x, "saliency", tf32=1)
    for bad in (2.5, "2", 0, True):
        with pytest.raises(InvalidInputError, match=rf"^batch_size must be a positive integer or None, got {bad!r}$"):
            explain(net, x, "saliency", batch_size=bad)
    with pytest.raises(InvalidInputError, match=r"^a target tensor must hold integer class indices, got torch.bool$"):
        explain(net, x, "saliency", target=torch.tensor([True, False]))
    for bad, shape in ((torch.tensor([0, 1, 0]), r"\(3,\)"), (torch.zeros(2, 1, dtype=torch.int64), r"\(2, 1\)")):
        with pytest.raises(InvalidInputError, match=rf"^a target tensor must have one entry per clip \(2\), got shape "
                           rf"{shape}$"):
            explain(net, x, "saliency", target=bad)
    with pytest.raises(InvalidInputError, match=r"^target must be None, an int, a label name or one per clip, got "
                       r"float$"):
        explain(net, x, "saliency", target=1.5)


def test_after_context_shorter_than_k_repeats_its_last_frame() -> None:
    net, x = _Temporal(), _clips(1)
    after = torch.randn(1, 3, 3, 2, 2, generator=torch.Generator().manual_seed(9))
    extended = torch.cat([x[:, :, :1]] * 4 + [x, after, after[:, :, -1:]], dim=2)
    got = explain(net, x, "saliency", context_frames=4, context=(None, after)).relevance
    torch.testing.assert_close(got, _saliency_by_hand(net, extended, 4, 4), rtol=1e-5, atol=1e-7)


def test_a_numpy_target_is_one_class_per_clip() -> None:
    net, x = _Temporal(), _clips()
    got = explain(net, x, "saliency", target=np.array([1, 0]))
    assert got.target.tolist() == [1, 0]
    torch.testing.assert_close(got.relevance, explain(net, x, "saliency", target=[1, 0]).relevance)
