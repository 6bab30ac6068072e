"""Edges of ``explain`` and of the method options that the first mutation run of
``attribution/explain.py`` and ``method.py`` showed no test reached (issue 15): the option
checkers and their messages, how option values are described, and explain's refusals word for
word."""

from __future__ import annotations

import math

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
