"""Oracles for ``AttentionRules``, the LRP rules of a transformer's functional operations.

Each operation is run alone under the rules on float64 leaves; the relevance a leaf receives (it
travels as the gradient) is compared with the rule's definition written out here with NumPy-style
tensor algebra: the epsilon rule ``R_i = sum_j z_ij R_j / s(z_j)`` with the contributions ``z_ij``
of a linear map built from its dense matrix, the proportional split of a sum, the even split of
a product, relevance passed through unchanged, and plain gradients where the rules say so. The
stabiliser ``s(z) = z + sign(z) (eps * rms(z) + tiny)`` (rms per clip) is written out here too.
Conservation alone cannot tell most of these rules apart, so every test compares values.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from motion_relevance.attribution.lrp import AttentionRules, RelativeStabilizer
from motion_relevance.errors import InvalidInputError

DT = torch.float64
TINY = torch.finfo(DT).tiny


def stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    """The stabilised denominator, per clip (dimension 0), written from its definition."""
    rms = z.pow(2).flatten(1).mean(dim=1).sqrt().view(-1, *([1] * (z.ndim - 1)))
    return z + torch.where(z >= 0, 1.0, -1.0).to(z) * (eps * rms + TINY)


def under_rules(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], relevance: torch.Tensor, *,
                model: nn.Module | None = None, skip: nn.Module | None = None, eps: float = 0.0,
                ignore_bias: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
    """Output of ``fn`` under the rules and the relevance each input gets for ``relevance``."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    with AttentionRules(model or nn.Module(), RelativeStabilizer(eps), ignore_bias, skip=skip):
        out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, relevance, allow_unused=True)
    return out.detach(), grads


def rand(*shape: int, seed: int, low: float = 0.2) -> torch.Tensor:
    """Values of random sign with magnitude >= ``low`` (no denominator near zero)."""
    g = torch.Generator().manual_seed(seed)
    mag = low + torch.rand(*shape, generator=g, dtype=DT)
    return mag * torch.where(torch.rand(*shape, generator=g) < 0.5, -1.0, 1.0).to(DT)


def epsilon_rule(x: torch.Tensor, matrix: torch.Tensor, relevance: torch.Tensor, eps: float,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """Epsilon rule for ``y = matrix @ x (+ bias)`` per clip: ``x`` ``(N, I)``, ``matrix``
    ``(J, I)``; the bias takes part in the denominator when given."""
    z = matrix[None] * x[:, None, :]  # (N, J, I): contribution of x_i to y_j
    y = z.sum(dim=2) + (0 if bias is None else bias)
    return (z * (relevance / stab(y, eps))[:, :, None]).sum(dim=1)


def dense(fn: Callable[[torch.Tensor], torch.Tensor], size: int) -> torch.Tensor:
    """The matrix ``(J, I)`` of a linear map of vectors of ``size``, from the unit basis."""
    return torch.stack([fn(torch.eye(size, dtype=DT)[i]).reshape(-1) for i in range(size)], dim=1)


# --- sums and differences --------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_a_sum_of_two_variables_splits_in_proportion(eps: float) -> None:
    a, b, r = rand(2, 6, seed=0), rand(2, 6, seed=1), rand(2, 6, seed=2)
    for fn, sign in ((lambda u, v: u + v, 1), (torch.add, 1), (lambda u, v: u - v, -1), (torch.sub, -1)):
        y, (ra, rb) = under_rules(fn, [a, b], r, eps=eps)
        assert torch.allclose(y, a + sign * b)
        share = r / stab(a + sign * b, eps)
        assert torch.allclose(ra, a * share, rtol=1e-10) and torch.allclose(rb, sign * b * share, rtol=1e-10)


def test_an_in_place_sum_writes_back_and_splits() -> None:
    a, b, r = rand(2, 5, seed=3), rand(2, 5, seed=4), rand(2, 5, seed=5)

    def fn(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        h = u * 1.0  # scaling by a constant: relevance passes unchanged
        h += v
        return h

    y, (ra, rb) = under_rules(fn, [a, b], r)
    assert torch.allclose(y, a + b)
    assert torch.allclose(ra, a * r / (a + b), rtol=1e-10) and torch.allclose(rb, b * r / (a + b), rtol=1e-10)


@pytest.mark.parametrize("ignore_bias", [False, True])
def test_a_constant_added_is_a_bias(ignore_bias: bool) -> None:
    """``x + c``, ``c + x`` and ``c - x``: with biases in the rules the constant keeps its
    proportional share; with ``ignore_bias`` relevance passes to ``x`` unchanged (also through
    ``c - x``, as through a negation)."""
    x, r = rand(2, 5, seed=6), rand(2, 5, seed=7)
    c = rand(1, 5, seed=8)
    cases = ((lambda v: v + c, x + c, 1), (lambda v: c + v, c + x, 1), (lambda v: 1.5 + v, 1.5 + x, 1),
             (lambda v: 1.5 - v, 1.5 - x, -1))  # fmt: skip
    for fn, value, sign in cases:
        y, (rx,) = under_rules(fn, [x], r, ignore_bias=ignore_bias)
        assert torch.allclose(y, value)
        expected = r if ignore_bias else sign * x * r / value
        assert torch.allclose(rx, expected, rtol=1e-10)


def test_a_python_number_added_keeps_the_variables_precision() -> None:
    """``0.1`` is not a float32 number: the constant must enter in the variable's dtype."""
    x, r = rand(2, 5, seed=6), rand(2, 5, seed=7)
    for fn, value in ((lambda v: v + 0.1, x + 0.1), (lambda v: 0.1 + v, 0.1 + x), (lambda v: v - 0.1, x - 0.1)):
        y, (rx,) = under_rules(fn, [x], r)
        assert torch.equal(y, value)
        assert torch.allclose(rx, x * r / value, rtol=1e-12)


def test_sums_by_keyword_and_explicit_in_place_sums_follow_the_rule() -> None:
    """``torch.add(u, other=v)`` reaches the rules with one positional argument; ``h.add_(v)``
    must write into ``h`` (an alias sees it) and split like ``u + v``."""
    a, b, r = rand(2, 5, seed=3), rand(2, 5, seed=4), rand(2, 5, seed=5)
    share = r / (a + b)
    y, (ra, rb) = under_rules(lambda u, v: torch.add(u, other=v), [a, b], r)
    assert torch.allclose(y, a + b)
    assert torch.allclose(ra, a * share, rtol=1e-10) and torch.allclose(rb, b * share, rtol=1e-10)

    def in_place(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        h = u * 1.0
        alias = h
        h.add_(v)
        assert alias is h
        return alias

    y, (ra, rb) = under_rules(in_place, [a, b], r)
    assert torch.allclose(y, a + b)
    assert torch.allclose(ra, a * share, rtol=1e-10) and torch.allclose(rb, b * share, rtol=1e-10)


# --- products, ratios, matrix products -------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_a_product_of_two_variables_gives_each_half(eps: float) -> None:
    a, b, r = rand(2, 6, seed=9), rand(2, 6, seed=10), rand(2, 6, seed=11)
    y, (ra, rb) = under_rules(lambda u, v: u * v, [a, b], r, eps=eps)
    expected = a * b * r / (2 * stab(a * b, eps))
    assert torch.allclose(y, a * b)
    assert torch.allclose(ra, expected, rtol=1e-10) and torch.allclose(rb, expected, rtol=1e-10)


def test_scaling_by_a_constant_and_a_ratio_of_two_variables() -> None:
    x, b, r = rand(2, 5, seed=12), rand(2, 5, seed=13), rand(2, 5, seed=14)
    for fn in (lambda v: v * 3.0, lambda v: 3.0 * v, lambda v: v / 4.0, lambda v: -v, torch.neg):
        _, (rx,) = under_rules(fn, [x], r)
        assert torch.equal(rx, r)
    # a ratio of two variables has no rule: the plain gradient
    y, (rx, rb) = under_rules(lambda u, v: u / v, [x, b], r)
    assert torch.allclose(y, x / b)
    assert torch.allclose(rx, r / b, rtol=1e-12) and torch.allclose(rb, -x * r / b**2, rtol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_a_matrix_product_of_two_variables_gives_each_half_of_every_term(eps: float) -> None:
    a, b, r = rand(2, 3, 4, seed=15), rand(2, 4, 5, seed=16), rand(2, 3, 5, seed=17)
    y_ref = a @ b
    terms = a[:, :, :, None] * b[:, None, :, :]  # (N, I, K, J)
    share = (r / stab(y_ref, eps))[:, :, None, :] / 2
    for fn in (lambda u, v: u @ v, torch.matmul, torch.bmm):
        y, (ra, rb) = under_rules(fn, [a, b], r, eps=eps)
        assert torch.allclose(y, y_ref)
        assert torch.allclose(ra, (terms * share).sum(dim=3), rtol=1e-10)
        assert torch.allclose(rb, (terms * share).sum(dim=1), rtol=1e-10)


def test_a_matrix_product_with_a_constant_is_the_epsilon_rule() -> None:
    """``x @ W`` and ``A @ v`` with ``W``, ``A`` constant (attention weights times values)."""
    x, r = rand(2, 4, seed=18), rand(2, 3, seed=19)
    w = rand(4, 3, seed=20)
    y, (rx,) = under_rules(lambda v: v @ w, [x], r, eps=0.1)
    assert torch.allclose(y, x @ w)
    assert torch.allclose(rx, epsilon_rule(x, w.T, r, 0.1), rtol=1e-10)
    attn = rand(3, 4, seed=21).abs()
    v, rv_out = rand(2, 4, 2, seed=22), rand(2, 3, 2, seed=23)
    _, (rv,) = under_rules(lambda u: attn @ u, [v], rv_out)
    terms = attn[None, :, :, None] * v[:, None, :, :]  # (N, I, K, J)
    assert torch.allclose(rv, (terms * (rv_out / (attn @ v))[:, :, None, :]).sum(dim=1), rtol=1e-10)


def test_softmax_weights_are_constants_so_all_relevance_goes_to_the_values() -> None:
    q, v, r = rand(2, 3, 4, seed=24), rand(2, 4, 2, seed=25), rand(2, 3, 2, seed=26)
    y, (rq, rv) = under_rules(lambda u, w: u.softmax(dim=-1) @ w, [q, v], r)
    attn = q.softmax(dim=-1)
    assert torch.allclose(y, attn @ v)
    assert rq is None
    terms = attn[:, :, :, None] * v[:, None, :, :]
    assert torch.allclose(rv, (terms * (r / y)[:, :, None, :]).sum(dim=1), rtol=1e-10)
    for fn in (lambda u: F.softmax(u, dim=-1), lambda u: torch.softmax(u, -1)):
        out, _ = under_rules(lambda u, w, f=fn: f(u) @ w, [q, v], r)
        assert torch.allclose(out, y)


def test_activations_pass_relevance_unchanged() -> None:
    x, r = rand(2, 6, seed=27), rand(2, 6, seed=28)
    for fn in (F.gelu, lambda v: F.gelu(v, approximate="tanh"), F.silu, F.relu, torch.relu, lambda v: v.relu(),
               F.hardswish):
        y, (rx,) = under_rules(fn, [x], r)
        assert torch.allclose(y, fn(x)) and torch.equal(rx, r)


# --- linear maps with the model's weights, layer norm, pooling -------------------------------


@pytest.mark.parametrize("ignore_bias", [False, True])
def test_linear_layers_of_the_model_use_the_epsilon_rule(ignore_bias: bool) -> None:
    lin = nn.Linear(5, 3).to(DT).requires_grad_(False)  # frozen, as explain() leaves a model
    with torch.no_grad():
        lin.weight.copy_(rand(3, 5, seed=29))
        lin.bias.copy_(rand(3, seed=30))
    x, r = rand(2, 5, seed=31), rand(2, 3, seed=32)
    for fn in (lambda v: F.linear(v, lin.weight, lin.bias), lambda v: F.linear(input=v, weight=lin.weight, bias=lin.bias)):
        y, (rx,) = under_rules(fn, [x], r, model=lin, eps=0.1, ignore_bias=ignore_bias)
        assert torch.allclose(y, lin(x))  # the value keeps the bias either way
        expected = epsilon_rule(x, lin.weight.detach(), r, 0.1, None if ignore_bias else lin.bias.detach())
        assert torch.allclose(rx, expected, rtol=1e-10)


def test_weights_outside_the_rules_keep_their_gradient() -> None:
    """A weight that is not the model's, one of the skipped first layer, or one that requires a
    gradient itself: plain gradient."""
    lin = nn.Linear(5, 3, bias=False).to(DT).requires_grad_(False)
    x, r = rand(2, 5, seed=33), rand(2, 3, seed=34)
    gradient = r @ lin.weight.detach()
    _, (rx,) = under_rules(lambda v: F.linear(v, lin.weight), [x], r, model=nn.Linear(5, 3))
    assert torch.allclose(rx, gradient)
    _, (rx,) = under_rules(lambda v: F.linear(v, lin.weight), [x], r, model=lin, skip=lin)
    assert torch.allclose(rx, gradient)
    lin.requires_grad_(True)
    _, (rx,) = under_rules(lambda v: F.linear(v, lin.weight), [x], r, model=lin)
    assert torch.allclose(rx, gradient)


def test_a_weight_outside_the_rules_keeps_a_bias_given_by_keyword() -> None:
    lin = nn.Linear(5, 3).to(DT).requires_grad_(False)
    x, r = rand(2, 5, seed=35), rand(2, 3, seed=36)
    y, (rx,) = under_rules(lambda v: F.linear(v, lin.weight * 1.0, bias=lin.bias), [x], r, model=lin)
    assert torch.allclose(y, x @ lin.weight.T + lin.bias, rtol=1e-12)
    assert torch.allclose(rx, r @ lin.weight, rtol=1e-12)


def test_convolutions_of_the_model_use_the_epsilon_rule() -> None:
    conv = nn.Conv1d(1, 1, 3, stride=2, padding=1).to(DT).requires_grad_(False)
    with torch.no_grad():
        conv.weight.copy_(rand(1, 1, 3, seed=35))
        conv.bias.copy_(rand(1, seed=36))
    x, r = rand(2, 1, 7, seed=37), rand(2, 1, 4, seed=38)
    y, (rx,) = under_rules(lambda v: F.conv1d(v, conv.weight, conv.bias, 2, 1), [x], r, model=conv)
    assert torch.allclose(y, conv(x))
    matrix = dense(lambda e: F.conv1d(e.view(1, 1, 7), conv.weight.detach(), None, 2, 1), 7)
    expected = epsilon_rule(x[:, 0], matrix, r[:, 0], 0.0, conv.bias.detach())
    assert torch.allclose(rx[:, 0], expected, rtol=1e-10)


@pytest.mark.parametrize("ignore_bias", [False, True])
def test_layer_norm_is_the_epsilon_rule_with_its_scale_held(ignore_bias: bool) -> None:
    norm = nn.LayerNorm(5, eps=1e-3).to(DT).requires_grad_(False)
    with torch.no_grad():
        norm.weight.copy_(rand(5, seed=39))
        norm.bias.copy_(rand(5, seed=40))
    x, r = rand(2, 5, seed=41), rand(2, 5, seed=42)
    y, (rx,) = under_rules(norm, [x], r, model=norm, ignore_bias=ignore_bias)
    assert torch.allclose(y, norm(x))
    for n in range(2):
        std = math.sqrt(float(x[n].var(unbiased=False)) + 1e-3)
        matrix = (torch.eye(5, dtype=DT) - 1 / 5) * norm.weight.detach()[:, None] / std
        expected = epsilon_rule(x[n : n + 1], matrix, r[n : n + 1], 0.0, None if ignore_bias else norm.bias.detach())
        assert torch.allclose(rx[n], expected[0], rtol=1e-10)


def test_average_pooling_is_the_epsilon_rule() -> None:
    x, r = rand(2, 1, 6, seed=43), rand(2, 1, 3, seed=44)
    for fn in (lambda v: F.avg_pool1d(v, 2), lambda v: F.adaptive_avg_pool1d(v, 3),
               lambda v: F.avg_pool1d(v, kernel_size=2)):
        y, (rx,) = under_rules(fn, [x], r)
        assert torch.allclose(y, F.avg_pool1d(x, 2))
        matrix = dense(lambda e: F.avg_pool1d(e.view(1, 1, 6), 2), 6)
        assert torch.allclose(rx[:, 0], epsilon_rule(x[:, 0], matrix, r[:, 0], 0.0), rtol=1e-10)
    y, _ = under_rules(lambda v: F.avg_pool1d(v, kernel_size=2, stride=1), [x], rand(2, 1, 5, seed=48))
    assert torch.allclose(y, F.avg_pool1d(x, 2, stride=1))


def test_fused_attention_is_refused() -> None:
    q = rand(1, 2, 3, 4, seed=45)
    with pytest.raises(InvalidInputError, match=r"^LRP does not support F.scaled_dot_product_attention \(the "
                       r"attention weights are not visible\); use saliency, integrated_gradients or gradcam$"):
        under_rules(lambda u: F.scaled_dot_product_attention(u, u, u), [q], q)


def test_operations_without_a_variable_or_without_grad_are_left_alone() -> None:
    a, b = rand(2, 3, seed=46), rand(2, 3, seed=47)
    with AttentionRules(nn.Module(), RelativeStabilizer(0.0), False):
        plain = a + b
        with torch.no_grad():
            leaf = a.clone().requires_grad_()
            quiet = leaf * b
    assert plain.grad_fn is None and quiet.grad_fn is None
    assert torch.equal(plain, a + b) and torch.equal(quiet, a * b)
