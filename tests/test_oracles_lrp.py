"""Independent oracles for the three LRP methods, computed by hand with matrices.

A three-layer ReLU network (two Conv3d layers and a linear classifier) is turned into dense
matrices (each convolution applied to the unit basis), and the rules of the documented rule
table (``attribution/lrp.py``) are written here from their definitions:

* epsilon: ``R_i = x_i sum_j w_ji R_j / (z_j + eps sign z_j)`` (bias in ``z_j``);
* alpha-beta: ``alpha`` times the positive contributions' share minus ``beta`` times the
  negative contributions' share (``x+ w+ + x- w-`` and ``x+ w- + x- w+``, bias split by sign);
* z+: alpha = 1, beta = 0;
* flat: ``R_j`` spread evenly over the inputs of ``j``'s receptive field;
* z^B: ``(x_i w_ji - l_i w+_ji - h_i w-_ji) / sum_i (...)``.

The relevance that starts at the output is the target's logit. Each method is compared with its
hand-computed relevance and shown to be far from its neighbours' (another first-layer rule,
alpha = 1 / beta = 0, z+ instead of epsilon in the classifier), so a method that silently ran a
neighbouring rule set fails.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import motion_relevance as mr

torch.set_num_threads(1)

SHAPE = (3, 2, 3, 3)  # (C, T, H, W)
EPS = 1e-6  # the rules' stabiliser and the epsilon rule's default


class ThreeLayers(nn.Module):
    """conv(3->4, 2x2x2) -> ReLU -> conv(4->3, 1x2x2) -> ReLU -> flatten -> linear(3->2)."""

    def __init__(self, seed: int = 0, bias: bool = True) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv3d(3, 4, 2, bias=bias)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv3d(4, 3, (1, 2, 2), bias=bias)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(3, 2, bias=bias)
        self.double()
        with torch.no_grad():  # larger, mixed-sign weights so every rule has work to do
            for m in (self.conv1, self.conv2, self.fc):
                m.weight.mul_(3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.fc(x.flatten(1))


def dense(layer: nn.Module, in_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) with ``layer(x).flatten() == W @ x.flatten() + b``, found by applying the layer's
    linear part to every unit vector."""
    n = int(torch.tensor(in_shape).prod())
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
    with torch.no_grad():
        if isinstance(layer, nn.Conv3d):
            cols = F.conv3d(basis, layer.weight)
            bias = F.conv3d(torch.zeros(1, *in_shape, dtype=torch.float64), layer.weight, layer.bias)
        else:
            cols = basis @ layer.weight.T
            bias = layer.bias[None] if layer.bias is not None else torch.zeros(1, layer.out_features, dtype=torch.float64)
    if bias is None:
        bias = torch.zeros_like(cols[:1])
    return cols.reshape(n, -1).T.contiguous(), bias.reshape(-1).clone()


def stab(z: torch.Tensor) -> torch.Tensor:
    return z + EPS * ((z == 0).to(z) + z.sign())


def pos(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


def neg(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=0)


def epsilon(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return x * (w.T @ (r / stab(w @ x + b)))


def alpha_beta(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, r: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    zp = pos(w) @ pos(x) + neg(w) @ neg(x) + pos(b)
    zn = neg(w) @ pos(x) + pos(w) @ neg(x) + neg(b)
    sp, sn = r / stab(zp), r / stab(zn)
    positive = pos(x) * (pos(w).T @ sp) + neg(x) * (neg(w).T @ sp)
    negative = pos(x) * (neg(w).T @ sn) + neg(x) * (pos(w).T @ sn)
    return alpha * positive - beta * negative


def flat(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    field = (w != 0).to(w)  # which inputs each output sees (the weights here are never exactly 0)
    return field.T @ (r / stab(field.sum(1)))


def zbox(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, r: torch.Tensor, low: torch.Tensor,
         high: torch.Tensor) -> torch.Tensor:
    z = w @ x - pos(w) @ low - neg(w) @ high
    s = r / stab(z)
    return x * (w.T @ s) - low * (pos(w).T @ s) - high * (neg(w).T @ s)


def box(bounds: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel bounds ``(low, high)`` spread over every input entry of a clip."""
    low, high = (bound.double().reshape(3, 1, 1, 1).expand(SHAPE).flatten() for bound in bounds)
    return low, high


RULES = {
    "epsilon": epsilon,
    "zplus": lambda x, w, b, r: alpha_beta(x, w, b, r, 1.0, 0.0),
    "ab21": lambda x, w, b, r: alpha_beta(x, w, b, r, 2.0, 1.0),
    "flat": flat,
}


def lrp_by_hand(net: ThreeLayers, x: torch.Tensor, c: int, first: str, hidden: str, last: str,
                ignore_bias: bool = False, bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Relevance of one clip ``x`` (C, T, H, W) for logit ``c`` with the given rule per layer."""
    x = x.double()
    w1, b1 = dense(net.conv1, SHAPE)
    a1_shape = (4, 1, 2, 2)
    w2, b2 = dense(net.conv2, a1_shape)
    w3, b3 = dense(net.fc, (3,))
    x0 = x.flatten()
    a1 = pos(w1 @ x0 + b1)
    a2 = pos(w2 @ a1 + b2)
    y = w3 @ a2 + b3
    if ignore_bias:
        b1, b2, b3 = torch.zeros_like(b1), torch.zeros_like(b2), torch.zeros_like(b3)
    r = torch.zeros_like(y)
    r[c] = y[c]
    r = RULES[last](a2, w3, b3, r)
    r = RULES[hidden](a1, w2, b2, r)  # the ReLUs pass relevance on unchanged
    if first == "zbox":
        assert bounds is not None
        r = zbox(x0, w1, b1, r, *box(bounds))
    else:
        r = RULES[first](x0, w1, b1, r)
    return r.reshape(SHAPE)


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4) -> None:
    expected = expected.detach()
    scale = float(expected.abs().max())
    assert scale > 0
    err = float((actual.double() - expected.double()).abs().max())
    assert err <= rtol * scale, f"max error {err:.3g} vs scale {scale:.3g}"


def far(a: torch.Tensor, b: torch.Tensor, share: float = 0.1) -> bool:
    a, b = a.detach(), b.detach()
    return float((a.double() - b.double()).abs().max()) > share * float(b.abs().max())


def clips(n: int, seed: int, net: ThreeLayers | None = None) -> torch.Tensor:
    """``n`` clips in [-1, 1]; with ``net``, only clips where at least two units of each hidden
    layer are active (so that every layer's rule shapes the relevance)."""
    gen = torch.Generator().manual_seed(seed)
    kept = []
    while len(kept) < n:
        x = 2 * torch.rand(SHAPE, generator=gen) - 1
        if net is not None:
            with torch.no_grad():
                a1 = net.relu1(net.conv1(x.double()[None]))
                a2 = net.relu2(net.conv2(a1))
            if int((a1 > 0).sum()) < 2 or int((a2 > 0).sum()) < 2:
                continue
        kept.append(x)
    return torch.stack(kept)


#: method -> (first, hidden, classifier) rules, as documented in attribution/lrp.py
TABLE = {
    "lrp_epsilon_plus_flat": ("flat", "zplus", "epsilon"),
    "lrp_alpha2_beta1": ("ab21", "ab21", "epsilon"),
}
NEIGHBOURS = {
    "lrp_epsilon_plus_flat": [("epsilon", "zplus", "epsilon"), ("flat", "ab21", "epsilon"), ("flat", "zplus", "zplus")],
    "lrp_alpha2_beta1": [("zplus", "zplus", "epsilon"), ("ab21", "zplus", "epsilon"), ("zplus", "ab21", "epsilon"),
                         ("flat", "zplus", "epsilon")],
}


def live_target(net: ThreeLayers, x: torch.Tensor) -> int:
    """The class with the largest positive contribution from the last hidden layer, so that
    z+ in the classifier (deep Taylor) has relevance to pass on."""
    with torch.no_grad():
        a2 = net.relu2(net.conv2(net.relu1(net.conv1(x.double()[None])))).flatten()
        return int((pos(net.fc.weight) @ a2).argmax())


@pytest.mark.parametrize("method", sorted(TABLE))
def test_lrp_matches_the_rule_table_by_hand(net: ThreeLayers, method: str) -> None:
    """Biases take part in the rules (and keep their share), as in the bias convention; with a
    bias-free network ``ignore_bias=True`` must give the same and conserve the logit."""
    x = clips(3, seed=5, net=net)
    ignore_bias = net.fc.bias is None
    targets = [live_target(net, x[i]) for i in range(3)]
    expl = mr.explain(net, x, method, target=targets, ignore_bias=ignore_bias)
    for i, c in enumerate(targets):
        expected = lrp_by_hand(net, x[i], c, *TABLE[method], ignore_bias=ignore_bias)
        close(expl.relevance[i], expected)
        for other in NEIGHBOURS[method]:
            # where a neighbour's relevance differs from the method's on this clip, the output
            # must be told apart from it (the next test shows each neighbour differs somewhere)
            alt = lrp_by_hand(net, x[i], c, *other, ignore_bias=ignore_bias)
            if far(alt, expected, share=1e-3):
                assert far(expl.relevance[i], alt, share=1e-3), (method, other)


NETS = [(0, True), (1, True), (2, False)]


@pytest.fixture(scope="module", params=NETS, ids=["seed0", "seed1", "no-bias"])
def net(request: pytest.FixtureRequest) -> ThreeLayers:
    seed, bias = request.param
    return ThreeLayers(seed=seed, bias=bias).eval()


@pytest.mark.parametrize("method", sorted(TABLE))
def test_every_neighbouring_rule_set_is_far_on_these_clips(method: str) -> None:
    """The oracle is discriminating: each neighbour differs from the method by more than 20 %
    of its largest relevance on some clip of some of the networks above."""
    for other in NEIGHBOURS[method]:
        gaps = []
        for seed, bias in NETS:
            net = ThreeLayers(seed=seed, bias=bias).eval()
            x = clips(3, seed=5, net=net)
            for i in range(3):
                c = live_target(net, x[i])
                gaps.append(far(lrp_by_hand(net, x[i], c, *other), lrp_by_hand(net, x[i], c, *TABLE[method]), share=0.2))
        assert any(gaps), other


def test_alpha2_beta1_is_not_alpha1_beta0() -> None:
    """The neighbour the rule set is most easily confused with, checked on its own."""
    net = ThreeLayers(seed=0).eval()
    x = clips(3, seed=5, net=net)
    targets = [live_target(net, x[i]) for i in range(3)]
    expl = mr.explain(net, x, "lrp_alpha2_beta1", target=targets)
    gaps = [
        float((expl.relevance[i].double() - lrp_by_hand(net, x[i], c, "zplus", "zplus", "epsilon").detach()).abs().max())
        / float(expl.relevance[i].abs().max())
        for i, c in enumerate(targets)
    ]
    assert max(gaps) > 0.2


def test_deep_taylor_with_explicit_bounds(net: ThreeLayers) -> None:
    x = clips(2, seed=6, net=net)
    ignore_bias = net.fc.bias is None
    low, high = [-1.0, -1.5, -2.0], [1.0, 1.5, 2.0]
    targets = [live_target(net, x[i]) for i in range(2)]
    expl = mr.explain(net, x, "deep_taylor", target=targets, low=low, high=high, ignore_bias=ignore_bias)
    bounds = (torch.tensor(low), torch.tensor(high))
    for i, c in enumerate(targets):
        expected = lrp_by_hand(net, x[i], c, "zbox", "zplus", "zplus", ignore_bias=ignore_bias, bounds=bounds)
        close(expl.relevance[i], expected)
        other = (torch.full((3,), -1.0), torch.full((3,), 1.0))
        assert far(expl.relevance[i], lrp_by_hand(net, x[i], c, "zbox", "zplus", "zplus", ignore_bias=ignore_bias,
                                                  bounds=other), share=0.02)
        assert far(expl.relevance[i], lrp_by_hand(net, x[i], c, "flat", "zplus", "zplus", ignore_bias=ignore_bias))
        alt = lrp_by_hand(net, x[i], c, "zbox", "zplus", "epsilon", ignore_bias=ignore_bias, bounds=bounds)
        if far(alt, expected, share=1e-3):  # z+ vs epsilon in the classifier
            assert far(expl.relevance[i], alt, share=1e-3)


def test_deep_taylor_bounds_default_to_each_clips_range() -> None:
    net = ThreeLayers(seed=1).eval()
    x = clips(2, seed=7, net=net)
    targets = [live_target(net, x[i]) for i in range(2)]
    expl = mr.explain(net, x, "deep_taylor", target=targets)
    for i, c in enumerate(targets):
        bounds = (x[i].amin(dim=(1, 2, 3)), x[i].amax(dim=(1, 2, 3)))
        close(expl.relevance[i], lrp_by_hand(net, x[i], c, "zbox", "zplus", "zplus", bounds=bounds))


# --------------------------------------------------------------------------------------------
# a dense hidden layer, the epsilon option and ignore_bias with biases present
# --------------------------------------------------------------------------------------------


class FourLayers(nn.Module):
    """ThreeLayers with a dense hidden layer: ... -> flatten -> linear(3->3) -> ReLU -> linear(3->2)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv3d(3, 4, 2)
        self.conv2 = nn.Conv3d(4, 3, (1, 2, 2))
        self.dense = nn.Linear(3, 3)
        self.out = nn.Linear(3, 2)
        self.double()
        with torch.no_grad():
            for m in (self.conv1, self.conv2, self.dense, self.out):
                m.weight.mul_(3.0)
                m.bias.mul_(3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.out(torch.relu(self.dense(x.flatten(1))))


def epsilon_relative(eps: float):
    """The epsilon rule with the option's stabiliser: ``eps`` times the layer's rms output."""

    def rule(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        z = w @ x + b
        s = z + torch.where(z >= 0, 1.0, -1.0).to(z) * eps * z.pow(2).mean().sqrt()
        return x * (w.T @ (r / s))

    return rule


def four_by_hand(net: FourLayers, x: torch.Tensor, c: int, rules: tuple, ignore_bias: bool = False,
                 bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Relevance of one clip for logit ``c``; ``rules``: (first, conv, dense, classifier), each a
    name of ``RULES`` or a rule function."""
    layers = [dense(net.conv1, SHAPE), dense(net.conv2, (4, 1, 2, 2)), dense(net.dense, (3,)), dense(net.out, (3,))]
    acts = [x.double().flatten()]
    for w, b in layers[:-1]:
        acts.append(pos(w @ acts[-1] + b))
    y = layers[-1][0] @ acts[-1] + layers[-1][1]
    r = torch.zeros_like(y)
    r[c] = y[c]
    for k in (3, 2, 1, 0):
        w, b = layers[k]
        b = torch.zeros_like(b) if ignore_bias else b
        rule = rules[k]
        if rule == "zbox":
            r = zbox(acts[0], w, b, r, *box(bounds))
        else:
            r = (RULES[rule] if isinstance(rule, str) else rule)(acts[k], w, b, r)
    return r.reshape(SHAPE)


def four_clips(net: FourLayers, n: int, seed: int) -> tuple[torch.Tensor, list[int]]:
    """Clips where every hidden layer has two active units, and their live targets."""
    gen = torch.Generator().manual_seed(seed)
    kept, targets = [], []
    while len(kept) < n:
        x = 2 * torch.rand(SHAPE, generator=gen) - 1
        with torch.no_grad():
            a1 = torch.relu(net.conv1(x.double()[None]))
            a2 = torch.relu(net.conv2(a1)).flatten(1)
            a3 = torch.relu(net.dense(a2))
        if min(int((a > 0).sum()) for a in (a1, a2, a3)) < 2:
            continue
        kept.append(x)
        targets.append(int((pos(net.out.weight) @ a3[0]).argmax()))
    return torch.stack(kept), targets


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_hidden_layers_and_the_epsilon_option_by_hand(seed: int) -> None:
    """Dense hidden layers get epsilon (z+ in deep Taylor); ``epsilon=`` sets the stabiliser
    of both dense rules, as a share of the layer's rms output."""
    net = FourLayers(seed).eval()
    x, targets = four_clips(net, 2, seed=11)
    eps = 0.5
    table = {
        "lrp_epsilon_plus_flat": ("flat", "zplus", epsilon_relative(eps), epsilon_relative(eps)),
        "lrp_alpha2_beta1": ("ab21", "ab21", epsilon_relative(eps), epsilon_relative(eps)),
    }
    for method, rules in table.items():
        expl = mr.explain(net, x, method, target=targets, epsilon=eps)
        default = mr.explain(net, x, method, target=targets)
        for i, c in enumerate(targets):
            expected = four_by_hand(net, x[i], c, rules)
            close(expl.relevance[i], expected)
            assert far(default.relevance[i], expected, share=0.01)  # the option matters
    bounds = (torch.full((3,), -1.0), torch.full((3,), 1.0))
    expl = mr.explain(net, x, "deep_taylor", target=targets, low=-1.0, high=1.0)
    for i, c in enumerate(targets):
        close(expl.relevance[i], four_by_hand(net, x[i], c, ("zbox", "zplus", "zplus", "zplus"), bounds=bounds))


def test_ignore_bias_leaves_every_bias_out_of_the_rules() -> None:
    """With biases in the network, ``ignore_bias=True`` drops them from every layer's rule (the
    activations still have them) and the relevance conserves the logit."""
    net = FourLayers(2).eval()
    x, targets = four_clips(net, 2, seed=12)
    for method, rules in {"lrp_epsilon_plus_flat": ("flat", "zplus", "epsilon", "epsilon"),
                          "lrp_alpha2_beta1": ("ab21", "ab21", "epsilon", "epsilon")}.items():  # fmt: skip
        expl = mr.explain(net, x, method, target=targets, ignore_bias=True)
        for i, c in enumerate(targets):
            expected = four_by_hand(net, x[i], c, rules, ignore_bias=True)
            close(expl.relevance[i], expected)
            assert far(expected, four_by_hand(net, x[i], c, rules), share=1e-3)
    # deep Taylor: the z^B first layer and every z+ layer leave their biases out too (a net and
    # clips where no unit lacks a positive contribution, so z+ conserves and the check passes)
    net = FourLayers(7).eval()
    x, targets = four_clips(net, 2, seed=12)
    bounds = (torch.full((3,), -1.0), torch.full((3,), 1.0))
    rules = ("zbox", "zplus", "zplus", "zplus")
    expl = mr.explain(net, x, "deep_taylor", target=targets, low=-1.0, high=1.0, ignore_bias=True)
    for i, c in enumerate(targets):
        expected = four_by_hand(net, x[i], c, rules, ignore_bias=True, bounds=bounds)
        close(expl.relevance[i], expected)
        assert far(expected, four_by_hand(net, x[i], c, rules, bounds=bounds), share=1e-3)


@pytest.mark.parametrize("method", ["lrp_epsilon_plus_flat", "lrp_alpha2_beta1", "deep_taylor"])
def test_relevance_scales_with_the_clip_of_a_bias_free_network(method: str) -> None:
    """A bias-free ReLU network is homogeneous (f(s x) = s f(x)) and every rule here is, with its
    stabiliser relative to the layer's outputs: relevance of ``1e-8 x`` is ``1e-8`` times that of
    ``x``. An absolute stabiliser (Zennit's default 1e-6) would swallow most of it."""
    net = FourLayers(7).eval()
    with torch.no_grad():
        for m in (net.conv1, net.conv2, net.dense, net.out):
            m.bias.zero_()
    x, targets = four_clips(net, 2, seed=12)
    x = x.double()
    full = mr.explain(net, x, method, target=targets).relevance
    tiny = mr.explain(net, x * 1e-8, method, target=targets).relevance
    close(tiny * 1e8, full, rtol=1e-5)


class ConvClassifier(ThreeLayers):
    """ThreeLayers whose classifier is a 1x1x1 convolution (as I3D's logits layer)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        conv = nn.Conv3d(3, 2, 1).double()
        with torch.no_grad():
            conv.weight.copy_(self.fc.weight.view(2, 3, 1, 1, 1))
            conv.bias.copy_(self.fc.bias)
        del self.fc
        self.head = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu2(self.conv2(self.relu1(self.conv1(x))))).flatten(1)


@pytest.mark.parametrize("method", sorted(TABLE))
def test_a_convolutional_classifier_gets_the_classifier_rule(method: str) -> None:
    """The last layer is found by the data flow, not by its type: a convolution as classifier
    gets epsilon, not the convolutions' rule."""
    net = ConvClassifier(seed=0).eval()
    as_linear = ThreeLayers(seed=0).eval()  # the same weights, the classifier as nn.Linear
    x = clips(3, seed=5, net=as_linear)
    targets = [live_target(as_linear, x[i]) for i in range(3)]
    expl = mr.explain(net, x, method, target=targets)
    first, hidden, _ = TABLE[method]
    told_apart = 0
    for i, c in enumerate(targets):
        expected = lrp_by_hand(as_linear, x[i], c, *TABLE[method])
        close(expl.relevance[i], expected)
        wrong = lrp_by_hand(as_linear, x[i], c, first, hidden, hidden)  # the convolutions' rule
        if far(wrong, expected, share=1e-3):
            told_apart += 1
            assert far(expl.relevance[i], wrong, share=1e-3)
    assert told_apart > 0  # these clips can tell the two classifier rules apart


class PaddedFirst(nn.Module):
    """Pads H and W by one before its first layer (as TensorFlow-"SAME" models do):
    pad -> conv(3->4, 2x2x2) -> ReLU -> flatten -> linear(->2)."""

    PADDED = (3, 2, 5, 5)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv3d(3, 4, 2)
        self.fc = nn.Linear(4 * 1 * 4 * 4, 2)
        self.double()
        with torch.no_grad():
            self.conv1.weight.mul_(3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv1(F.pad(x, (1, 1, 1, 1)))).flatten(1))


def padded_by_hand(net: PaddedFirst, x: torch.Tensor, c: int, method: str) -> torch.Tensor:
    """The first layer's rule on the padded input, where only the clip's entries may receive
    relevance (flat: spread over the clip entries each output sees; z^B: bounds 0 on padding)."""
    clip = F.pad(torch.ones(SHAPE, dtype=torch.float64), (1, 1, 1, 1)).flatten() > 0
    x0 = F.pad(x.double(), (1, 1, 1, 1)).flatten()
    w1, b1 = dense(net.conv1, PaddedFirst.PADDED)
    w2, b2 = dense(net.fc, (64,))
    a1 = pos(w1 @ x0 + b1)
    y = w2 @ a1 + b2
    r = torch.zeros_like(y)
    r[c] = y[c]
    if method == "lrp_epsilon_plus_flat":
        r = epsilon(a1, w2, b2, r)
        field = ((w1 != 0) & clip[None]).to(w1)
        r = field.T @ (r / stab(field.sum(1)))
    else:  # deep_taylor with each channel's range in the clip as bounds
        r = RULES["zplus"](a1, w2, b2, r)
        per_channel = torch.ones(PaddedFirst.PADDED, dtype=torch.float64)
        low = (per_channel * x.double().amin(dim=(1, 2, 3)).view(3, 1, 1, 1)).flatten()
        high = (per_channel * x.double().amax(dim=(1, 2, 3)).view(3, 1, 1, 1)).flatten()
        r = zbox(x0, w1, b1, r, low * clip, high * clip)
    return r[clip].reshape(SHAPE)


@pytest.mark.parametrize("method", ["lrp_epsilon_plus_flat", "deep_taylor"])
def test_first_layer_rules_on_a_padded_input_by_hand(method: str) -> None:
    net = PaddedFirst().eval()
    x = clips(2, seed=7)
    with torch.no_grad():
        targets = [int(v) for v in net(x.double()).argmax(1)]
    expl = mr.explain(net, x, method, target=targets)
    for i, c in enumerate(targets):
        close(expl.relevance[i], padded_by_hand(net, x[i], c, method))
