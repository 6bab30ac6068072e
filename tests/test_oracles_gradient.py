"""Independent oracles for the gradient, path and perturbation methods.

Every expected value here is computed without the code under test (and without Captum): closed
forms on linear and exponential-linear models, Gauss-Legendre nodes from NumPy, plain autograd
on a functional copy of a small ReLU network whose ReLU backward is replaced by hand-written
``torch.autograd.Function``s (guided backpropagation, DeconvNet), an explicit three-unit network
where saliency, guided backpropagation and DeconvNet differ in a known way, and occlusion windows
slid by hand. Each test also checks that its oracle is far from the neighbouring method's answer,
so a method that silently ran its neighbour fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import motion_relevance as mr
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec

torch.set_num_threads(1)

SHAPE = (3, 4, 8, 8)  # (C, T, H, W) of the clips below
D = int(np.prod(SHAPE))


def clip_batch(n: int, seed: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (low + (high - low) * torch.rand((n, *SHAPE), generator=gen, dtype=torch.float64)).float()


def far(a: torch.Tensor, b: torch.Tensor, share: float = 0.2) -> bool:
    """True when ``a`` and ``b`` differ by more than ``share`` of ``b``'s largest magnitude."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max()) > share * float(b.abs().max())


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    """float32 output against a float64 oracle, relative to the oracle's scale."""
    expected = expected.detach().double()
    scale = float(expected.abs().max())
    assert scale > 0
    err = float((actual.double() - expected).abs().max())
    assert err <= rtol * scale, f"max error {err:.3g} vs scale {scale:.3g}"


class LinearModel(nn.Module):
    """logits = W vec(x) + b: saliency is W[c], input x gradient x * W[c], IG (from 0) x * W[c]."""

    def __init__(self, k: int = 3, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.lin = nn.Linear(D, k).double()
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn((k, D), generator=gen, dtype=torch.float64))
            self.lin.bias.copy_(torch.randn(k, generator=gen, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


class ExpLinear(nn.Module):
    """logits = exp(W vec(x)): IG has the closed form (x - b) W[c] (e^u(x) - e^u(b)) / (u(x) - u(b))."""

    def __init__(self, k: int = 3, seed: int = 0, scale: float = 0.05, shift: float = 0.01) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(scale * torch.randn((k, D), generator=gen, dtype=torch.float64) + shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x.flatten(1) @ self.weight.T)


class Cubic(nn.Module):
    """logit_0 = sum_i c x_i^3 + w . x, logit_1 = -logit_0: the gradient is 3 c x^2 + w, so the
    expected SmoothGrad with noise N(0, s^2) is 3 c (x^2 + s^2) + w, unlike the plain gradient."""

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(2 * torch.rand(D, generator=gen, dtype=torch.float64) - 1)
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = (self.c * x.flatten(1) ** 3).sum(1) + x.flatten(1) @ self.w
        return torch.stack([f, -f], dim=1)


# ---------------------------------------------------------------------------------------------
# A small ReLU conv network and a functional copy of it with hand-written ReLU backward rules
# ---------------------------------------------------------------------------------------------


class ConvNet(nn.Module):
    """conv(3->4, stride 1x2x2) -> ReLU -> conv(4->5) -> ReLU -> global average -> linear."""

    def __init__(self, k: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv3d(3, 4, 3, stride=(1, 2, 2), padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv3d(4, 5, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(5, k)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))


class GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients at active units."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0) * (g > 0)


class DeconvReLU(torch.autograd.Function):
    """ReLU whose backward is the ReLU of the gradient, whatever the forward activation."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


def functional_forward(net: ConvNet, x: torch.Tensor, relu, keep: dict | None = None) -> torch.Tensor:
    """ConvNet's forward written with F.conv3d and a chosen ReLU (the oracle's own network)."""
    a = relu(F.conv3d(x, net.conv1.weight, net.conv1.bias, stride=(1, 2, 2), padding=1))
    z2 = F.conv3d(a, net.conv2.weight, net.conv2.bias, padding=1)
    if keep is not None:
        keep["conv2"] = z2
    h = relu(z2).mean(dim=(2, 3, 4))
    return h @ net.fc.weight.T + net.fc.bias


def rule_gradient(net: ConvNet, x: torch.Tensor, target: torch.Tensor, relu) -> torch.Tensor:
    """Gradient of the target logit through ``functional_forward`` with ``relu``."""
    xx = x.double().clone().requires_grad_(True)
    out = functional_forward(net, xx, relu)
    (g,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), xx)
    return g


PLAIN = torch.relu


@pytest.fixture(scope="module")
def net() -> ConvNet:
    return ConvNet().eval()


# ---------------------------------------------------------------------------------------------
# saliency and input x gradient
# ---------------------------------------------------------------------------------------------


def test_saliency_is_the_weight_row_of_a_linear_model() -> None:
    model = LinearModel()
    x = clip_batch(2, seed=1)
    target = torch.tensor([2, 0])
    expl = mr.explain(model, x, "saliency", target=target)
    expected = model.lin.weight[target].reshape(2, *SHAPE)
    close(expl.relevance, expected)
    assert far(expl.relevance, x.double() * expected)  # not input x gradient
    assert torch.equal(expl.target, target)
    close(expl.logits, model(x.double()))


def test_saliency_matches_plain_autograd_on_a_relu_network(net: ConvNet) -> None:
    x = clip_batch(2, seed=2)
    target = torch.tensor([1, 3])
    expected = rule_gradient(net, x, target, PLAIN)
    expl = mr.explain(net, x, "saliency", target=target)
    close(expl.relevance, expected)
    assert far(expl.relevance, rule_gradient(net, x, target, GuidedReLU.apply))
    assert far(expl.relevance, x * expected)


def test_saliency_of_the_argmax_class_by_default(net: ConvNet) -> None:
    x = clip_batch(3, seed=3)
    top = net(x.double()).argmax(1)
    expl = mr.explain(net, x, "saliency")
    assert torch.equal(expl.target, top)
    close(expl.relevance, rule_gradient(net, x, top, PLAIN))


def test_input_x_gradient_is_input_times_weight_of_a_linear_model() -> None:
    model = LinearModel()
    x = clip_batch(2, seed=4, low=-2.0, high=3.0)
    target = torch.tensor([1, 1])
    expl = mr.explain(model, x, "input_x_gradient", target=target)
    weight = model.lin.weight[target].reshape(2, *SHAPE)
    close(expl.relevance, x.double() * weight)
    assert far(expl.relevance, weight)  # not the plain gradient


def test_input_x_gradient_matches_plain_autograd_on_a_relu_network(net: ConvNet) -> None:
    x = clip_batch(2, seed=5)
    target = torch.tensor([0, 2])
    grad = rule_gradient(net, x, target, PLAIN)
    expl = mr.explain(net, x, "input_x_gradient", target=target)
    close(expl.relevance, x.double() * grad)
    assert far(expl.relevance, grad)


# ---------------------------------------------------------------------------------------------
# integrated gradients: closed form, and the Gauss-Legendre quadrature itself
# ---------------------------------------------------------------------------------------------


def ig_closed_form(model: ExpLinear, x: torch.Tensor, baseline: torch.Tensor, c: int) -> torch.Tensor:
    w = model.weight.detach()[c]
    u_x = x.double().flatten() @ w
    u_b = baseline.double().flatten() @ w
    ratio = (torch.exp(u_x) - torch.exp(u_b)) / (u_x - u_b)
    return ((x.double().flatten() - baseline.double().flatten()) * w * ratio).reshape(x.shape)


def ig_gauss_legendre(model: ExpLinear, x: torch.Tensor, baseline: torch.Tensor, c: int, n: int) -> torch.Tensor:
    """sum_k (w_k / 2) grad f_c(b + a_k (x - b)) * (x - b), with NumPy's Legendre nodes on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    w = model.weight.detach()[c]
    xb, bb = x.double().flatten(), baseline.double().flatten()
    total = torch.zeros_like(xb)
    for node, weight in zip(nodes, weights, strict=True):
        point = bb + (node + 1) / 2 * (xb - bb)
        total += weight / 2 * torch.exp(point @ w) * w
    return ((xb - bb) * total).reshape(x.shape)


def test_integrated_gradients_equals_the_closed_form_path_integral() -> None:
    model = ExpLinear()
    x = clip_batch(2, seed=6, low=0.0, high=1.0)
    target = torch.tensor([0, 2])
    expl = mr.explain(model, x, "integrated_gradients", target=target, n_steps=32)
    zero = torch.zeros(SHAPE)
    for i in range(2):
        exact = ig_closed_form(model, x[i], zero, int(target[i]))
        close(expl.relevance[i], exact, rtol=1e-5)
        # completeness: the attributions sum to f(x) - f(0)
        u = x[i].double().flatten() @ model.weight.detach()[int(target[i])]
        assert float(exact.sum()) == pytest.approx(float(torch.exp(u) - 1.0), rel=1e-9)
        # IG on a non-linear model is neither the gradient nor input x gradient
        grad = (torch.exp(u) * model.weight.detach()[int(target[i])]).reshape(SHAPE)
        assert far(expl.relevance[i], x[i].double() * grad)
        assert far(expl.relevance[i], grad)


@pytest.mark.parametrize("n_steps", [2, 3])
def test_integrated_gradients_uses_gauss_legendre_nodes(n_steps: int) -> None:
    model = ExpLinear()
    x = clip_batch(1, seed=7, low=0.0, high=1.0)
    baseline = 0.25
    expl = mr.explain(model, x, "integrated_gradients", target=1, n_steps=n_steps, baseline=baseline)
    b = torch.full(SHAPE, baseline)
    quadrature = ig_gauss_legendre(model, x[0], b, 1, n_steps)
    close(expl.relevance[0], quadrature, rtol=1e-5)
    # so few nodes miss the exact integral by far more than the tolerance, so the check above
    # pins the rule (a Riemann or trapezoid sum with these steps would fail it)
    exact = ig_closed_form(model, x[0], b, 1)
    assert float((quadrature - exact).abs().max()) > 10 * 1e-5 * float(quadrature.abs().max())


def test_integrated_gradients_baseline_tensor() -> None:
    model = ExpLinear()
    x = clip_batch(1, seed=8, low=0.0, high=1.0)
    base = clip_batch(1, seed=9, low=-0.5, high=0.5)[0]
    expl = mr.explain(model, x, "integrated_gradients", target=2, n_steps=32, baseline=base)
    close(expl.relevance[0], ig_closed_form(model, x[0], base, 2))
    assert far(expl.relevance[0], ig_closed_form(model, x[0], torch.zeros(SHAPE), 2), share=0.05)


# ---------------------------------------------------------------------------------------------
# SmoothGrad: the expectation of the gradient under Gaussian noise
# ---------------------------------------------------------------------------------------------

#: value_range (-2, 2): noise std = noise * 4
SPEC = InputSpec(frames=4, size=(8, 8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_smoothgrad_without_noise_is_the_gradient() -> None:
    model = Cubic()
    x = clip_batch(1, seed=10)
    expl = mr.explain(model, x, "smoothgrad", target=0, spec=SPEC, noise=0.0, samples=2)
    close(expl.relevance[0], (3 * x[0].double() ** 2 + model.w.detach().reshape(SHAPE)))


@pytest.mark.parametrize("use_spec", [True, False])
def test_smoothgrad_is_the_expected_gradient_under_noise(use_spec: bool) -> None:
    """On the cubic model E[grad] = 3 c (x^2 + s^2) + w with s = noise * (value range): the
    noise adds 3 c s^2 to every voxel, which the plain gradient lacks."""
    model = Cubic(c=1.0)
    samples, noise = 64, 0.1
    x = torch.zeros((1, *SHAPE))
    if use_spec:
        spec, span = SPEC, 4.0  # spec.value_range = (-2, 2)
    else:
        x[0, 0, 0, 0, 0], x[0, 1, 1, 1, 1] = -1.0, 2.0  # the clip's own range: 3
        spec, span = None, 3.0
    sigma = noise * span
    expl = mr.explain(model, x, "smoothgrad", target=0, spec=spec, noise=noise, samples=samples)
    gradient = 3 * x[0].double() ** 2 + model.w.detach().reshape(SHAPE)
    excess = (expl.relevance[0].double() - gradient)[x[0] == 0]
    # at x = 0 the excess is 3 mean(e^2) over the samples: mean 3 s^2, and its mean over the
    # voxels has standard deviation 3 s^2 sqrt(2 / (voxels * samples))
    sd = 3 * sigma**2 * np.sqrt(2.0 / (excess.numel() * samples))
    assert abs(float(excess.mean()) - 3 * sigma**2) < 5 * sd
    assert 3 * sigma**2 > 40 * sd  # a method without the noise (or with s off by 2x) is far outside
    # signed, voxel by voxel: mean(e^2) / s^2 is chi-square(64) / 64, well inside (0, 2.5)
    assert float(excess.min()) > 0
    assert float(excess.max()) < 3 * sigma**2 * 2.5


def test_smoothgrad_static_noise_adds_no_motion() -> None:
    """With ``noise_in_time="static"`` every noisy copy of a frozen clip is still frozen, so on
    the cubic model (gradient 3 c x^2 + w, voxel by voxel) relevance minus w is the same in
    every frame; with noise drawn for every voxel it is not."""
    model = Cubic(c=1.0)
    x = clip_batch(1, seed=11)[:, :, :1].expand(1, *SHAPE).contiguous()  # one frame repeated
    w = model.w.detach().reshape(SHAPE)

    def excess(noise_in_time: str) -> torch.Tensor:
        expl = mr.explain(model, x, "smoothgrad", target=0, spec=SPEC, samples=8, noise=0.1,
                          noise_in_time=noise_in_time)
        return expl.relevance[0].double() - w - 3 * x[0].double() ** 2  # 3 (2 x e + e^2), mean over copies

    static, independent = excess("static"), excess("independent")
    spread = float((static - static[:, :1]).abs().max())
    assert spread < 1e-5, spread
    assert float(static.abs().max()) > 0.05  # the noise is there, only constant in time
    assert float((independent - independent[:, :1]).abs().max()) > 0.05


def test_static_host_noise_repeats_one_frame() -> None:
    from motion_relevance.attribution.gradient import host_noise

    noise = host_noise(torch.Generator().manual_seed(2), (2, 3, 5, 4, 4), 0.5, "static")
    assert noise.shape == (2, 3, 5, 4, 4)
    assert torch.equal(noise, noise[:, :, :1].expand_as(noise))
    assert 0.3 < float(noise[:, :, 0].std()) < 0.7  # one N(0, 0.5^2) draw per (clip, channel, pixel)


def test_smoothgrad_rejects_an_unknown_noise_in_time() -> None:
    with pytest.raises(InvalidInputError, match="noise_in_time"):
        mr.explain(Cubic(), clip_batch(1, seed=1), "smoothgrad", target=0, spec=SPEC, noise_in_time="frames")


def test_smoothgrad_is_seeded() -> None:
    model = Cubic()
    x = torch.zeros((2, *SHAPE))
    a = mr.explain(model, x, "smoothgrad", target=0, spec=SPEC, samples=4, seed=3)
    b = mr.explain(model, x, "smoothgrad", target=0, spec=SPEC, samples=4, seed=3)
    c = mr.explain(model, x, "smoothgrad", target=0, spec=SPEC, samples=4, seed=4)
    assert torch.equal(a.relevance, b.relevance)
    assert not torch.equal(a.relevance, c.relevance)
    assert not torch.equal(a.relevance[0], a.relevance[1])  # each clip gets its own noise


# ---------------------------------------------------------------------------------------------
# guided backpropagation and DeconvNet
# ---------------------------------------------------------------------------------------------


class ThreeUnits(nn.Module):
    """x (1, 3, 1, 1, 2) -> 3 hidden ReLU units -> 2 logits, with weights chosen by hand.

    For x = [1, 2, 0.5, -1, 1, 0] (flattened): unit A = x0 = 1 (active, logit weight -1),
    unit B = -x1 = -2 (inactive, weight +1), unit C = x2 = 0.5 (active, weight +2). For logit 0:
    saliency = -e0 + 2 e2 (active units, signed), guided backprop = 2 e2 (active units with a
    positive gradient), DeconvNet = -e1 + 2 e2 (positive gradients, active or not).
    """

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(6, 3, bias=False)
        self.relu = nn.ReLU()
        self.out = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, -1.0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0]]))
            self.out.weight.copy_(torch.tensor([[-1.0, 1.0, 2.0], [0.5, 0.5, 0.5]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.relu(self.hidden(x.flatten(1))))


HAND_X = torch.tensor([1.0, 2.0, 0.5, -1.0, 1.0, 0.0]).reshape(1, 3, 1, 1, 2)
HAND = {
    "saliency": [-1.0, 0.0, 2.0, 0.0, 0.0, 0.0],
    "guided_backprop": [0.0, 0.0, 2.0, 0.0, 0.0, 0.0],
    "deconvolution": [0.0, -1.0, 2.0, 0.0, 0.0, 0.0],
}


@pytest.mark.parametrize("method", sorted(HAND))
def test_relu_rules_on_a_hand_built_network(method: str) -> None:
    expl = mr.explain(ThreeUnits(), HAND_X, method, target=0)
    assert expl.relevance.flatten().tolist() == HAND[method]


RULES = {"saliency": PLAIN, "guided_backprop": GuidedReLU.apply, "deconvolution": DeconvReLU.apply}


@pytest.mark.parametrize("method", ["guided_backprop", "deconvolution"])
def test_relu_rules_match_hand_written_backward_on_a_conv_network(net: ConvNet, method: str) -> None:
    x = clip_batch(2, seed=11)
    target = torch.tensor([2, 1])
    expected = rule_gradient(net, x, target, RULES[method])
    expl = mr.explain(net, x, method, target=target)
    close(expl.relevance, expected)
    for name, other in RULES.items():
        if name != method:
            assert far(expl.relevance, rule_gradient(net, x, target, other)), name


# ---------------------------------------------------------------------------------------------
# occlusion: windows slid by hand
# ---------------------------------------------------------------------------------------------


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window origins 0, s, 2s, ... until the clip's end is covered; the last window may stick
    out and is cut at the border, so every voxel is occluded at least once."""
    return [i * stride for i in range(-(-(size - window) // stride) + 1)]


def occlusion_by_hand(model: nn.Module, x: torch.Tensor, c: int, window: tuple[int, int, int],
                      stride: tuple[int, int, int], fill: float) -> torch.Tensor:
    """Each voxel's mean target-logit drop over the windows (all channels) that cover it."""
    x = x.double()
    base = model(x[None])[0, c]
    total = torch.zeros_like(x)
    count = torch.zeros_like(x)
    t, h, w = x.shape[1:]
    with torch.no_grad():
        for t0 in window_starts(t, window[0], stride[0]):
            for h0 in window_starts(h, window[1], stride[1]):
                for w0 in window_starts(w, window[2], stride[2]):
                    box = (slice(None), slice(t0, t0 + window[0]), slice(h0, h0 + window[1]), slice(w0, w0 + window[2]))
                    occluded = x.clone()
                    occluded[box] = fill
                    total[box] += base - model(occluded[None])[0, c]
                    count[box] += 1
    assert bool((count > 0).all())
    return total / count


@pytest.mark.parametrize(
    ("window", "stride", "fill"),
    [((2, 4, 4), None, 0.0), ((2, 4, 4), (1, 2, 2), 0.3), ((2, 3, 3), None, -0.5), ((4, 3, 3), (1, 2, 2), -0.5)],
)
def test_occlusion_matches_windows_slid_by_hand(net: ConvNet, window: tuple, stride: tuple | None, fill: float) -> None:
    x = clip_batch(1, seed=12)
    opts = {"window": window, "fill": fill}
    if stride is not None:
        opts["stride"] = stride
    expl = mr.explain(net, x, "occlusion", target=3, batch_size=5, **opts)
    expected = occlusion_by_hand(net, x[0], 3, window, stride or window, fill)
    close(expl.relevance[0], expected)
    if fill != 0.0:
        assert far(expl.relevance[0], occlusion_by_hand(net, x[0], 3, window, stride or window, 0.0), share=0.05)
    if stride is not None:
        assert far(expl.relevance[0], occlusion_by_hand(net, x[0], 3, window, window, fill), share=0.05)
