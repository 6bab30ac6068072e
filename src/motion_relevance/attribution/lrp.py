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
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from zennit.attribution import Gradient
from zennit.composites import NameLayerMapComposite, layer_map_base
from zennit.core import Hook
from zennit.rules import AlphaBeta, Epsilon, Flat, ZBox, ZPlus
from zennit.types import Convolution

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
            bound = _per_channel(torch.tensor(values), x, name)
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
        return ZBox(low=low, high=high, stabilizer=STABILIZER, zero_params=zero)
    if kind == "epsilon_plus_flat":
        rule = Flat(stabilizer=STABILIZER, zero_params=zero)
        if mask is not None:
            # Flat spreads relevance over the receptive field: only over clip entries, not padding.
            rule.input_modifiers = [lambda inp: mask.to(inp).expand_as(inp)]
        return rule
    return AlphaBeta(alpha=2.0, beta=1.0, stabilizer=STABILIZER, zero_params=zero)


def _composite(kind: str, structure: ModelStructure, opts: dict[str, Any],
               bounds: tuple[torch.Tensor, torch.Tensor] | None) -> NameLayerMapComposite:
    zero = ["bias"] if opts["ignore_bias"] else None
    if kind == "deep_taylor":
        hidden: Hook = ZPlus(stabilizer=STABILIZER, zero_params=zero)
        dense: Hook = ZPlus(stabilizer=STABILIZER, zero_params=zero)
        classifier: Hook = ZPlus(stabilizer=STABILIZER, zero_params=zero)
    else:
        if kind == "epsilon_plus_flat":
            hidden = ZPlus(stabilizer=STABILIZER, zero_params=zero)
        else:
            hidden = AlphaBeta(alpha=2.0, beta=1.0, stabilizer=STABILIZER, zero_params=zero)
        dense = Epsilon(epsilon=opts["epsilon"], zero_params=zero)
        classifier = Epsilon(epsilon=opts["epsilon"], zero_params=zero)
    low, high = bounds if bounds is not None else (None, None)
    first = _first_layer_rule(kind, structure, low, high, zero)
    name_map: list[tuple[tuple[str, ...], Hook]] = [((structure.first_layer,), first)]
    if structure.last_layer != structure.first_layer:
        name_map.append(((structure.last_layer,), classifier))
    layer_map = [
        *layer_map_base(STABILIZER),
        (Convolution, hidden),
        (torch.nn.Linear, dense),
    ]
    return NameLayerMapComposite(name_map=name_map, layer_map=layer_map, canonizers=video_canonizers(structure))


def _lrp(kind: str):
    def run_lrp(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
        logits, target = run.plain_forward(x)
        structure = model_structure(run.model, x)
        if structure.first_layer is None:
            raise InvalidInputError("LRP needs a model with at least one convolution or linear layer (nn.Module)")
        bounds = box_bounds(run, x, opts) if kind == "deep_taylor" else None
        onehot = F.one_hot(target, logits.shape[1]).to(x.dtype)
        composite = _composite(kind, structure, opts, bounds)
        with Gradient(model=run.model, composite=composite) as attributor:
            _, relevance = attributor(x, lambda out: out.detach() * onehot)
        return Attribution(relevance, logits, target)

    return run_lrp


_EPSILON = Option("epsilon", 1e-6, "stabiliser of the epsilon rule (dense layers, classifier)", non_negative_float)
_IGNORE_BIAS = Option("ignore_bias", False, "leave biases out of every rule, so they absorb no relevance", boolean)

#: The methods of this module, in the order ``list_methods`` shows them.
METHODS: tuple[Method, ...] = (
    Method(
        "lrp_epsilon_plus_flat",
        "LRP: flat rule in the first layer, z+ in convolutions, epsilon in dense layers",
        _lrp("epsilon_plus_flat"),
        (_EPSILON, _IGNORE_BIAS),
        kind="lrp",
    ),
    Method(
        "lrp_alpha2_beta1",
        "LRP: alpha=2, beta=1 rule in every convolution, epsilon in dense layers",
        _lrp("alpha2_beta1"),
        (_EPSILON, _IGNORE_BIAS),
        kind="lrp",
    ),
    Method(
        "deep_taylor",
        "Deep Taylor decomposition: z^B rule in the first layer (input bounds), z+ in all others",
        _lrp("deep_taylor"),
        (
            Option("low", None, "lowest input value, a number or one per channel", float_or_tensor,
                   shown_default="the spec's per-channel input range, else each clip's minimum"),
            Option("high", None, "highest input value, a number or one per channel", float_or_tensor,
                   shown_default="the spec's per-channel input range, else each clip's maximum"),
            _IGNORE_BIAS,
        ),
        kind="lrp",
    ),
)
