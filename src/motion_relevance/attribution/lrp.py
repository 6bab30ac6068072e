"""Layer-wise relevance propagation and Deep Taylor decomposition, computed by Zennit.

Each method is a Zennit composite (a rule per layer) plus the video canonizers
(``canonizers.py``). Layers are told apart by the data flow of a dry forward pass
(``structure.py``): the *first* layer is the first convolution/linear layer the clip reaches,
the *last* one is the classifier.

=========================  ============  ============  =============  ==========
method                     first layer   convolutions  dense layers   classifier
=========================  ============  ============  =============  ==========
``lrp_epsilon_plus_flat``  flat          z+            epsilon        epsilon
``lrp_alpha2_beta1``       alpha2-beta1  alpha2-beta1  epsilon        epsilon
``deep_taylor``            z^B (box)     z+            z+             z+
=========================  ============  ============  =============  ==========

Sums (residual), average pools and the I3D head use the proportional ``Norm`` rule, batch norms
are merged into the preceding layer, activations pass relevance through. Operations written as
plain function calls get no rule: their gradient carries the relevance. That is exact for
concatenation, padding, reshaping and max pooling, but a functional *average* (``x.mean``,
``F.avg_pool3d``) spreads relevance evenly, also onto inactive units; models should pool with
modules (``nn.AdaptiveAvgPool3d``) or get a canonizer, as I3D's head does.

**What is explained.** The relevance that starts at the output is the target's logit
``f_c(x)`` (the other logits start at zero), so for a conservative rule set the input relevance
sums to ``f_c(x)``.

**Bias convention.** As in Zennit, a layer's bias takes part in its rule and keeps the share
of relevance it accounts for; biases from merged batch norms count too. The sum of input
relevance therefore equals ``f_c(x)`` minus what the biases absorbed. It equals ``f_c(x)`` for
bias-free models (e.g. randomly initialised torchvision video ResNets with zeroed classifier
bias), and ``ignore_bias=True`` leaves biases out of every rule so that nothing is absorbed
(the tests check both within 1e-3 on a C3D, r3d_18 and I3D). Conservation is not exact where a
rule cannot be: alpha2-beta1 doubles the relevance of a unit with no negative contribution, z+
drops it at a unit with no positive one, and a residual sum of two large opposite branches
splits relevance into large opposite parts; these cases are rare in wide networks but measurable
in very narrow ones. The first-layer rules (flat, z^B) never give relevance to the zero padding
a model adds before its first convolution.

**Stabiliser.** Every denominator is shifted by ``1e-6`` (``epsilon`` for the epsilon rule)
times the root mean square of the layer's outputs for that clip (``RelativeStabilizer``), not by
an absolute ``1e-6``: an absolute shift absorbed 43-44 % of I3D's and most of S3D's relevance
on untrained weights, whose activations are small, and made explanations depend on the scale
of the weights.

**Checks.** Every call sums the relevance of each clip once: a NaN or infinite sum raises
``RelevanceCheckError`` (one line, naming the method and the model class); with
``ignore_bias=True`` so does a sum further than ``RTOL`` (1 %) + ``ATOL`` from the explained
logit. ``explanation.options`` gets ``relevance_sum`` per clip and, with biases in the rules,
``bias_share`` (the fraction of the logit the biases took). ``layer_budget=True`` adds
``layer_sums``: the relevance entering and leaving every layer (``LayerBudget``), to find where a
model loses or creates relevance.

**Transformers.** Models with a layer norm (torchvision's MViT and Swin3D) are explained with
the first layer's Zennit rule and ``AttentionRules`` for everything else: rules for the
functional operations of attention, layer norm and the residual stream (epsilon rule for linear
maps with layer norm's scale held constant, attention weights as constants as in CP-LRP, sums
split in proportion, products split evenly, GELU passing relevance). ``deep_taylor`` (z+ rules
for ReLU activations) and ``nn.MultiheadAttention`` (one fused kernel) are refused up front
(``refuse_unsupported``). With ``ignore_bias=True`` and *non-zero* biases a transformer can
amplify relevance where a unit's bias-free part is tiny, and MViT's class token (a learnt
constant) keeps relevance like a bias; the check rejects such maps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from zennit.attribution import Gradient
from zennit.composites import NameLayerMapComposite, layer_map_base
from zennit.core import Hook
from zennit.rules import AlphaBeta, Epsilon, Flat, ZBox, ZPlus
from zennit.types import Activation, Convolution

from motion_relevance.attribution.canonizers import video_canonizers
from motion_relevance.attribution.method import (
    Method,
    Option,
    boolean,
    float_or_tensor,
    non_negative_float,
)
from motion_relevance.attribution.run import Attribution, Run
from motion_relevance.attribution.structure import ModelStructure, model_structure
from motion_relevance.errors import InvalidInputError

STABILIZER = 1e-6
"""Stabiliser of every rule's denominator, *relative* to the size of the layer's outputs (see
``RelativeStabilizer``)."""
RTOL = 1e-2
"""Conservation tolerance with ``ignore_bias=True``: ``|sum(R) - f_c(x)| <= RTOL * |f_c(x)| + ATOL``."""
ATOL = 1e-6


class RelativeStabilizer:
    """``z + sign(z) * (epsilon * rms(z) + tiny)``, the rms taken per clip over the layer's outputs.

    An absolute stabiliser (Zennit's default, 1e-6) is not scale-free: in a network whose
    activations are small (untrained weights, whose activations shrink layer by layer) it absorbs most of
    the relevance, in a large-activation one it does nothing. Scaled by each clip's root mean
    square output of the layer, it shifts every denominator by the same *fraction*, so the
    explanation of a ReLU network does not change when a layer's weights are rescaled, and the
    ``tiny`` floor keeps 0/0 (a unit with no contribution and no relevance) at 0.
    """

    def __init__(self, epsilon: float) -> None:
        self.epsilon = float(epsilon)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, z.ndim))
        rms = z.detach().pow(2).mean(dim=dims, keepdim=True).sqrt() if dims else z.detach().abs()
        sign = torch.where(z >= 0, 1.0, -1.0).to(z)
        return z + sign * (self.epsilon * rms + torch.finfo(z.dtype).tiny)


def _per_channel(value: float | torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """A bound as a tensor ``(1, C, 1, 1, 1)`` (or ``(N, C, 1, 1, 1)``) for clips ``x``."""
    t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        return t.reshape(1, 1, 1, 1, 1).expand(1, x.shape[1], 1, 1, 1)
    if t.ndim == 1 and t.shape[0] == x.shape[1]:
        return t.reshape(1, -1, 1, 1, 1)
    if t.ndim == 5 and t.shape[1] == x.shape[1] and t.shape[2:] == (1, 1, 1):
        return t
    raise InvalidInputError(f"option {name} must be a number or one number per channel ({x.shape[1]}), got shape {tuple(t.shape)}")


def box_bounds(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) per channel for the z^B rule: options, else the spec's input range per
    channel, else each clip's own per-channel minimum and maximum."""
    spec = run.spec
    bounds = []
    for name, pixel in (("low", 0.0), ("high", 255.0)):
        if opts.get(name) is not None:
            bound = _per_channel(opts[name], x, name)
        elif spec is not None:
            values = [(pixel * spec.scale - m) / s for m, s in zip(spec.mean, spec.std, strict=True)]
            if len(values) != x.shape[1]:
                values = [min(values) if name == "low" else max(values)]
            bound = _per_channel(torch.tensor(values, dtype=torch.float64), x, name)
        else:
            reduce = torch.amin if name == "low" else torch.amax
            bound = reduce(x.detach(), dim=(2, 3, 4), keepdim=True)
        bounds.append(bound)
    low, high = bounds
    span = float((high - low).abs().max()) or 1.0
    tol = 1e-4 * span
    if bool((low > high).any()):
        raise InvalidInputError("deep_taylor bounds must satisfy low <= high")
    if bool((x < low - tol).any()) or bool((x > high + tol).any()):
        raise InvalidInputError(
            f"clip values [{float(x.min()):.4g}, {float(x.max()):.4g}] fall outside the deep_taylor bounds "
            f"[{float(low.min()):.4g}, {float(high.max()):.4g}]; pass low= and high=, or the model's InputSpec"
        )
    return low, high


def _first_layer_rule(kind: str, structure: ModelStructure, low: torch.Tensor | None, high: torch.Tensor | None,
                      zero: list[str] | None) -> Hook:
    mask = structure.first_input_mask
    if kind == "deep_taylor":
        assert low is not None and high is not None
        if mask is not None:
            low, high = low * mask.to(low), high * mask.to(high)
        return ZBox(low=low, high=high, stabilizer=_STABLE, zero_params=zero)
    if kind == "epsilon_plus_flat":
        rule = Flat(stabilizer=_STABLE, zero_params=zero)
        if mask is not None:
            # Flat spreads relevance over the receptive field: only over clip entries, not padding
            # (the mask as the input counts only clip entries; multiplying by it hands padding none).
            rule.input_modifiers = [lambda inp: mask.to(inp).expand_as(inp)]
            rule.reducer = lambda inputs, gradients: inputs[0] * gradients[0]
        return rule
    return AlphaBeta(alpha=2.0, beta=1.0, stabilizer=_STABLE, zero_params=zero)


_STABLE = RelativeStabilizer(STABILIZER)


def _composite(kind: str, structure: ModelStructure, opts: dict[str, Any],
               bounds: tuple[torch.Tensor, torch.Tensor] | None, first_only: bool = False) -> NameLayerMapComposite:
    """The method's rules by layer; ``first_only``: a rule for the first layer alone (the
    transformer path, where ``AttentionRules`` handles everything else)."""
    zero = ["bias"] if opts["ignore_bias"] else None
    if kind == "deep_taylor":
        hidden: Hook = ZPlus(stabilizer=_STABLE, zero_params=zero)
        dense: Hook = ZPlus(stabilizer=_STABLE, zero_params=zero)
        classifier: Hook = ZPlus(stabilizer=_STABLE, zero_params=zero)
    else:
        if kind == "epsilon_plus_flat":
            hidden = ZPlus(stabilizer=_STABLE, zero_params=zero)
        else:
            hidden = AlphaBeta(alpha=2.0, beta=1.0, stabilizer=_STABLE, zero_params=zero)
        epsilon = RelativeStabilizer(opts["epsilon"])
        dense = Epsilon(epsilon=epsilon, zero_params=zero)
        classifier = Epsilon(epsilon=epsilon, zero_params=zero)
    low, high = bounds if bounds is not None else (None, None)
    first = _first_layer_rule(kind, structure, low, high, zero)
    name_map: list[tuple[tuple[str, ...], Hook]] = [((structure.first_layer,), first)]
    if first_only:
        return NameLayerMapComposite(name_map=name_map, layer_map=[], canonizers=video_canonizers(structure))
    if structure.last_layer != structure.first_layer:
        name_map.append(((structure.last_layer,), classifier))
    layer_map = [
        *layer_map_base(_STABLE),
        (Convolution, hidden),
        (torch.nn.Linear, dense),
    ]
    return NameLayerMapComposite(name_map=name_map, layer_map=layer_map, canonizers=video_canonizers(structure))


# ---------------------------------------------------------------------------------------------
# transformers: rules for functional operations
# ---------------------------------------------------------------------------------------------


def _requires_grad(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.requires_grad


class _EpsilonMap(torch.autograd.Function):
    """Epsilon rule for a map ``fn(x, weight, bias)`` linear in ``x`` (linear layer, convolution,
    layer norm with its scale held, ``A @ v`` with ``A`` constant, average pooling): relevance
    goes to ``x_i`` in proportion to its contribution; the bias takes its share unless ignored."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[..., torch.Tensor], weight: Any, bias: Any,  # type: ignore[override]
                stabilizer: RelativeStabilizer, ignore_bias: bool) -> torch.Tensor:
        with torch.enable_grad():
            leaf = x.detach().clone().requires_grad_()  # a copy: x may be changed in place later
            z = fn(leaf, weight, None if ignore_bias else bias)
        ctx.saved = (leaf, z, stabilizer)
        with torch.no_grad():
            return fn(x, weight, bias) if bias is not None and ignore_bias else z.detach().clone()

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple:  # type: ignore[override]
        leaf, z, stabilizer = ctx.saved
        (grad,) = torch.autograd.grad(z, leaf, relevance / stabilizer(z.detach()))
        return leaf.detach() * grad, None, None, None, None, None


class _PassThrough(torch.autograd.Function):
    """Identity rule: relevance passes element-wise (GELU and other activations, scaling by a
    constant, a constant added with ``ignore_bias``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return fn(x)

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple:  # type: ignore[override]
        return relevance, None


class _Split(torch.autograd.Function):
    """Two variable operands: a sum splits relevance in proportion to each operand's part
    (Zennit's ``Sum`` rule), a product (``*``, ``@``) gives each half of every term's share
    (the uniform rule of AttnLRP)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, fn: Callable[..., torch.Tensor], half: bool,  # type: ignore[override]
                stabilizer: RelativeStabilizer) -> torch.Tensor:
        with torch.enable_grad():
            la, lb = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
            y = fn(la, lb)
        ctx.saved = (la, lb, y, half, stabilizer)
        return y.detach().clone()

    @staticmethod
    def backward(ctx: Any, relevance: torch.Tensor) -> tuple:  # type: ignore[override]
        la, lb, y, half, stabilizer = ctx.saved
        share = relevance / stabilizer(y.detach())
        ga, gb = torch.autograd.grad(y, (la, lb), share / 2 if half else share)
        return la.detach() * ga, lb.detach() * gb, None, None, None


def _layer_norm_held_scale(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                           shape: tuple[int, ...], eps: float) -> torch.Tensor:
    """Layer norm with its standard deviation held constant: a linear map of ``x`` (centring,
    scaling) plus the bias, equal to ``F.layer_norm`` in value."""
    dims = tuple(range(x.ndim - len(shape), x.ndim))
    std = (x.detach().var(dim=dims, unbiased=False, keepdim=True) + eps).sqrt()
    y = (x - x.mean(dim=dims, keepdim=True)) / std
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


_T = torch.Tensor
_ACTIVATIONS = {F.gelu, F.silu, F.relu, torch.relu, _T.relu, F.hardswish}
_SOFTMAX = {F.softmax, torch.softmax, _T.softmax}
_POOLS = {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d}
_LINEAR = {F.linear, F.conv1d, F.conv2d, F.conv3d}
_CONV_ARGS = ("stride", "padding", "dilation", "groups")
# operator -> (plain out-of-place function, kind); reflected operators swap their operands
_BINARY: dict[Any, tuple[Callable[..., torch.Tensor], str]] = {
    **{f: (torch.add, "sum") for f in (torch.add, _T.add, _T.__add__, _T.__iadd__, _T.add_)},
    **{f: (torch.sub, "sum") for f in (torch.sub, _T.sub, _T.__sub__, _T.__isub__, _T.sub_)},
    **{f: (torch.mul, "product") for f in (torch.mul, _T.mul, _T.__mul__, _T.__imul__, _T.mul_)},
    **{f: (torch.div, "divide") for f in (torch.div, _T.div, _T.__truediv__, _T.__itruediv__, _T.div_)},
    **{f: (torch.matmul, "matmul") for f in (torch.matmul, _T.matmul, _T.__matmul__, torch.bmm, _T.bmm)},
}
_IN_PLACE = {_T.__iadd__, _T.add_, _T.__isub__, _T.sub_, _T.__imul__, _T.mul_, _T.__itruediv__, _T.div_}
_REFLECTED: dict[Any, tuple[Callable[..., torch.Tensor], str]] = {
    _T.__radd__: (torch.add, "sum"), _T.__rmul__: (torch.mul, "product"), _T.__rsub__: (torch.sub, "sum"),
}


class AttentionRules(TorchFunctionMode):
    """LRP rules for the functional operations of a transformer, applied while active.

    Zennit's rules attach to modules, but a transformer's attention, residual stream and layer
    norms are function calls (torchvision's Swin3D even calls ``F.linear`` on its layers' weights),
    so here every such call is replaced by an autograd function whose backward computes that
    operation's relevance (relevance travels as the gradient, as in Zennit):

    * ``F.linear`` / ``F.conv*d`` with a weight of the model, layer norm (standard deviation
      held constant, so it is a linear map), average pooling, and ``A @ v`` with one constant
      operand: epsilon rule, biases left out with ``ignore_bias``;
    * softmax: its output is a constant (attention weights pass no relevance to queries and
      keys, as in CP-LRP; all of it goes to the values);
    * ``a + b`` of two variables (residual streams): split in proportion to ``a`` and ``b``; a
      constant added (positional tables, masks) is a bias: ignored with ``ignore_bias``, else it
      takes its share;
    * ``a * b`` and ``a @ b`` of two variables: half each (uniform rule); scaling by a constant
      and activations (GELU): relevance passes unchanged.

    The first layer is left to its Zennit rule (``skip``). Operations not listed keep their
    gradient, which is exact for reshaping, concatenation, padding, rolling and max pooling.
    """

    def __init__(self, model: nn.Module, stabilizer: RelativeStabilizer, ignore_bias: bool,
                 skip: nn.Module | None = None) -> None:
        super().__init__()
        skipped = {id(p) for p in skip.parameters()} if skip is not None else set()
        self.weights = {id(p) for p in model.parameters()} - skipped
        self.stabilizer = stabilizer
        self.ignore_bias = ignore_bias

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if not torch.is_grad_enabled() or not (
            any(_requires_grad(a) for a in args) or any(_requires_grad(v) for v in kwargs.values())
        ):
            return func(*args, **kwargs)
        if func in _LINEAR:
            return self._linear(func, args, kwargs)
        if func is F.layer_norm:
            bound = dict(zip(("input", "normalized_shape", "weight", "bias", "eps"), args, strict=False)) | kwargs
            shape, eps = tuple(bound["normalized_shape"]), bound.get("eps", 1e-5)

            def norm(v: torch.Tensor, w: Any, b: Any) -> torch.Tensor:
                return _layer_norm_held_scale(v, w, b, shape, eps)

            return _EpsilonMap.apply(bound["input"], norm, bound.get("weight"), bound.get("bias"), self.stabilizer,
                                     self.ignore_bias)
        if func in _ACTIVATIONS:
            rest = tuple(args[1:])
            return _PassThrough.apply(args[0], lambda v: func(v, *rest, **kwargs))
        if func in _SOFTMAX:
            return func(*args, **kwargs).detach()
        if func in _POOLS:
            rest = tuple(args[1:])
            return _EpsilonMap.apply(args[0], lambda v, w, b: func(v, *rest, **kwargs), None, None, self.stabilizer, True)
        if func in (torch.neg, _T.neg, _T.__neg__):
            return _PassThrough.apply(args[0], torch.neg)
        if func is F.scaled_dot_product_attention:
            raise InvalidInputError(
                "LRP does not support F.scaled_dot_product_attention (the attention weights are not visible); "
                "use saliency, integrated_gradients or gradcam"
            )
        if (func in _BINARY or func in _REFLECTED) and len(args) + len(kwargs) == 2:
            out = self._binary(func, args, kwargs)
            if func in _IN_PLACE:  # the caller may rely on the mutation: write the result back
                return args[0].copy_(out)
            return out
        return func(*args, **kwargs)

    def _linear(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        names = ("input", "weight", "bias", *(() if func is F.linear else _CONV_ARGS))
        bound = dict(zip(names, args, strict=False)) | kwargs
        weight = bound.get("weight")
        if id(weight) not in self.weights or _requires_grad(weight):
            return func(*args, **kwargs)
        extra = {k: v for k, v in bound.items() if k not in ("input", "weight", "bias")}

        def apply(v: torch.Tensor, w: torch.Tensor, b: Any) -> torch.Tensor:
            return func(v, w, b, **extra)

        return _EpsilonMap.apply(bound["input"], apply, weight, bound.get("bias"), self.stabilizer, self.ignore_bias)

    def _binary(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        values = [*args, *kwargs.values()]
        plain, kind = _BINARY[func] if func in _BINARY else _REFLECTED[func]
        a, b = (values[1], values[0]) if func in _REFLECTED else (values[0], values[1])
        va, vb = _requires_grad(a), _requires_grad(b)
        if va and vb:
            if kind == "divide":
                return plain(a, b)  # a ratio of two variables has no rule here: its gradient
            return _Split.apply(a, b, plain, kind != "sum", self.stabilizer)
        var, const = (a, b) if va else (b, a)

        def with_const(v: torch.Tensor, *_: Any) -> torch.Tensor:
            return plain(v, const) if va else plain(const, v)

        if kind == "matmul":
            return _EpsilonMap.apply(var, with_const, None, None, self.stabilizer, True)
        if kind in ("product", "divide") or self.ignore_bias:
            return _PassThrough.apply(var, with_const)
        constant = torch.as_tensor(const, dtype=var.dtype, device=var.device)
        return _Split.apply(var if va else constant, var if vb else constant, plain, False, self.stabilizer)


class RelevanceCheckError(InvalidInputError):
    """An LRP map failed its check: relevance not finite, or not conserved with ``ignore_bias``.
    ``relevance_sum`` and ``explained`` hold the failing clip's sum and logit."""

    def __init__(self, message: str, relevance_sum: float = float("nan"), explained: float = float("nan")) -> None:
        super().__init__(message)
        self.relevance_sum = relevance_sum
        self.explained = explained


def refuse_unsupported(model: nn.Module, method: str) -> None:
    """Raise a one-line error before any work where ``method`` cannot explain ``model``:
    ``nn.MultiheadAttention`` (its fused kernel hides the attention from the rules), and Deep
    Taylor on transformers (its z+ rules assume non-negative, ReLU activations)."""
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            raise InvalidInputError(
                f"{method} is not supported for {type(model).__name__}: nn.MultiheadAttention runs attention in one "
                "fused kernel that LRP rules cannot see into; use saliency, integrated_gradients or gradcam"
            )
    if method == "deep_taylor" and uses_attention_rules(model):
        raise InvalidInputError(
            f"deep_taylor is not supported for {type(model).__name__}: its z+ rules assume ReLU activations, and a "
            "transformer's layer norms and residual streams are signed; use lrp_epsilon_plus_flat or lrp_alpha2_beta1"
        )


def uses_attention_rules(model: nn.Module) -> bool:
    """True for models LRP explains with the functional rules of ``AttentionRules`` (any model
    with a layer norm: torchvision's MViT and Swin3D among them)."""
    return any(isinstance(m, nn.LayerNorm) for m in model.modules())


def check_relevance(relevance: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, model: nn.Module,
                    method: str, opts: dict[str, Any]) -> None:
    """One sum per clip: the relevance must be finite and, with ``ignore_bias``, add up to the
    explained logit within ``RTOL`` (+ ``ATOL``). Records ``relevance_sum`` (and, with biases,
    ``bias_share``: the part of the logit the biases took) per clip in ``opts``."""
    sums = relevance.detach().flatten(1).double().sum(dim=1)
    explained = logits.detach().gather(1, target[:, None]).squeeze(1).double()
    where = f"{method} on {type(model).__name__}"
    if not bool(torch.isfinite(sums).all()):
        raise RelevanceCheckError(f"{where} gave NaN or infinite relevance; this model is not supported by {method}")
    gap = sums - explained
    opts.setdefault("relevance_sum", []).extend(float(v) for v in sums)
    if opts.get("ignore_bias"):
        bad = gap.abs() > RTOL * explained.abs() + ATOL
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise RelevanceCheckError(
                f"{where} does not conserve relevance: it sums to {float(sums[i]):.4g} for an explained logit of "
                f"{float(explained[i]):.4g} (tolerance {RTOL:.0%}); layer_budget=True shows where it goes",
                float(sums[i]), float(explained[i]),
            )
    else:
        share = gap.neg() / explained.abs().clamp_min(torch.finfo(torch.float64).tiny)
        opts.setdefault("bias_share", []).extend(float(v) for v in share)


class _Tap(torch.autograd.Function):
    """Identity whose backward records the relevance passing through (per clip sums)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, record: Callable[[torch.Tensor], None]) -> torch.Tensor:  # type: ignore[override]
        ctx.record = record
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        ctx.record(grad.detach().flatten(1).double().sum(dim=1))
        return grad, None


def _tap_input(value: Any, record: Callable[[torch.Tensor], None]) -> Any:
    """``value`` with a tap on it (a tensor) or on each of its tensors (a list or tuple)."""
    if isinstance(value, torch.Tensor):
        return _Tap.apply(value, record)
    if type(value) in (list, tuple):
        return type(value)(_Tap.apply(v, record) if isinstance(v, torch.Tensor) else v for v in value)
    return value


class LayerBudget:
    """Per-layer relevance sums of one LRP pass (``layer_budget=True``).

    Every leaf module but activations and dropout is tapped at its input (before the rule's own
    hook) and its output: the backward pass records the relevance that enters the module from
    above (``relevance_out``) and the relevance its rule hands to its input (``relevance_in``).
    The input is the first argument, positional or keyword; a list or tuple there is tapped
    tensor by tensor and summed. A module whose input no relevance reaches (a constant, a dict)
    gets rows with ``relevance_in`` None.
    A conserving rule keeps them equal; a gap between a module's ``relevance_in`` and the
    ``relevance_out`` of the modules feeding it is relevance lost or created by functional code in
    between (a residual ``+``, a functional mean)."""

    def __init__(self, model: nn.Module) -> None:
        self.order: list[str] = []
        self.sums: dict[str, dict[str, torch.Tensor]] = {}
        self.handles: list[Any] = []
        for name, module in model.named_modules():
            if module is model or next(module.children(), None) is not None:
                continue
            if isinstance(module, Activation | nn.Dropout | nn.Identity):
                continue
            self.handles.append(module.register_forward_pre_hook(self._pre(name), prepend=True, with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._post(name)))

    def _record(self, name: str, side: str) -> Callable[[torch.Tensor], None]:
        def record(values: torch.Tensor) -> None:
            entry = self.sums.setdefault(name, {})
            entry[side] = entry[side] + values if side in entry else values

        return record

    def _pre(self, name: str) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple | None:
            if name not in self.order:
                self.order.append(name)
            record = self._record(name, "relevance_in")
            if args:
                return (_tap_input(args[0], record), *args[1:]), kwargs
            if kwargs:
                key = next(iter(kwargs))
                return args, {**kwargs, key: _tap_input(kwargs[key], record)}
            return None

        return hook

    def _post(self, name: str) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
                return None
            return _Tap.apply(output, self._record(name, "relevance_out"))

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def rows(self, first_clip: int) -> list[dict[str, Any]]:
        """``{"clip", "layer", "relevance_out", "relevance_in"}`` per clip and tapped layer, in
        the order the layers were first called."""
        out = []
        for name in self.order:
            entry = self.sums.get(name, {})
            n = max((len(v) for v in entry.values()), default=0)
            for i in range(n):
                out.append({
                    "clip": first_clip + i,
                    "layer": name,
                    "relevance_out": float(entry["relevance_out"][i]) if "relevance_out" in entry else None,
                    "relevance_in": float(entry["relevance_in"][i]) if "relevance_in" in entry else None,
                })
        return out


def _lrp(kind: str, method: str):
    def run_lrp(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
        refuse_unsupported(run.model, method)
        logits, target = run.plain_forward(x)
        structure = model_structure(run.model, x)
        if structure.first_layer is None:
            raise InvalidInputError("LRP needs a model with at least one convolution or linear layer (nn.Module)")
        bounds = box_bounds(run, x, opts) if kind == "deep_taylor" else None
        onehot = F.one_hot(target, logits.shape[1]).to(x.dtype)
        attention = uses_attention_rules(run.model)
        composite = _composite(kind, structure, opts, bounds, first_only=attention)
        with contextlib.ExitStack() as stack:
            attributor = stack.enter_context(Gradient(model=run.model, composite=composite))
            if attention:
                first = dict(run.model.named_modules())[structure.first_layer]
                stack.enter_context(AttentionRules(run.model, RelativeStabilizer(opts["epsilon"]), opts["ignore_bias"], first))
            budget = LayerBudget(run.model) if opts.get("layer_budget") else None
            try:
                _, relevance = attributor(x, lambda out: out.detach() * onehot)
            finally:
                if budget is not None:
                    budget.remove()
        if budget is not None:
            opts.setdefault("layer_sums", []).extend(budget.rows(run.index.start))
        check_relevance(relevance, logits, target, run.model, method, opts)
        return Attribution(relevance, logits, target)

    return run_lrp


_EPSILON = Option(
    "epsilon", 1e-6, "stabiliser of the epsilon rule (dense layers, classifier), relative to each layer's rms output",
    non_negative_float,
)
_IGNORE_BIAS = Option("ignore_bias", False, "leave biases out of every rule, so they absorb no relevance", boolean)
_LAYER_BUDGET = Option(
    "layer_budget", False,
    "record per-layer relevance sums (in and out of every layer) in explanation.options['layer_sums']", boolean,
)

#: The methods of this module, in the order ``list_methods`` shows them.
METHODS: tuple[Method, ...] = (
    Method(
        "lrp_epsilon_plus_flat",
        "LRP: flat rule in the first layer, z+ in convolutions, epsilon in dense layers",
        _lrp("epsilon_plus_flat", "lrp_epsilon_plus_flat"),
        (_EPSILON, _IGNORE_BIAS, _LAYER_BUDGET),
        kind="lrp",
    ),
    Method(
        "lrp_alpha2_beta1",
        "LRP: alpha=2, beta=1 rule in every convolution, epsilon in dense layers",
        _lrp("alpha2_beta1", "lrp_alpha2_beta1"),
        (_EPSILON, _IGNORE_BIAS, _LAYER_BUDGET),
        kind="lrp",
    ),
    Method(
        "deep_taylor",
        "Deep Taylor decomposition: z^B rule in the first layer (input bounds), z+ in all others",
        _lrp("deep_taylor", "deep_taylor"),
        (
            Option("low", None, "lowest input value, a number or one per channel", float_or_tensor,
                   shown_default="the spec's per-channel input range, else each clip's minimum"),
            Option("high", None, "highest input value, a number or one per channel", float_or_tensor,
                   shown_default="the spec's per-channel input range, else each clip's maximum"),
            _IGNORE_BIAS,
            _LAYER_BUDGET,
        ),
        kind="lrp",
    ),
)
