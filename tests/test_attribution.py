"""explain / list_methods: every method on small video models, targets, errors, model state."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.video import r3d_18
from torchvision.models.video.resnet import BasicBlock, Conv3DSimple

import motion_relevance as mr
from motion_relevance import cli
from motion_relevance.attribution import METHOD_NAMES, SlowFastInput, explain, list_methods
from motion_relevance.errors import InvalidInputError, UnknownNameError
from motion_relevance.models.spec import InputSpec

torch.set_num_threads(1)

#: Small settings for the multi-pass methods so the tests stay fast.
FAST = {
    "integrated_gradients": {"n_steps": 4},
    "smoothgrad": {"samples": 3},
    "occlusion": {"window": (4, 16, 16)},
}
GRADIENT_METHODS = [m for m in METHOD_NAMES if m != "gradcam"]


class TinyC3D(nn.Module):
    """C3D-like: three conv-BN-ReLU stages with max pooling, global average pool, linear."""

    def __init__(self, num_classes: int = 5, bias: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, 3, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm3d(8)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool3d((1, 2, 2))
        self.conv2 = nn.Conv3d(8, 16, 3, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm3d(16)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool3d(2)
        self.conv3 = nn.Conv3d(16, 16, 3, padding=1, bias=bias)
        self.bn3 = nn.BatchNorm3d(16)
        self.relu3 = nn.ReLU()
        self.avg = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(16, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.fc(self.avg(x).flatten(1))


class TinyResNet3D(nn.Module):
    """A narrow r3d: torchvision's video BasicBlocks (one with a downsampling shortcut)."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1, bias=False), nn.BatchNorm3d(8), nn.ReLU(inplace=True))
        down = nn.Sequential(nn.Conv3d(8, 16, 1, stride=2, bias=False), nn.BatchNorm3d(16))
        self.layer1 = BasicBlock(8, 8, Conv3DSimple)
        self.layer2 = BasicBlock(8, 16, Conv3DSimple, stride=2, downsample=down)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(self.avgpool(x).flatten(1))


def make_c3d(seed: int = 0, bias: bool = False) -> TinyC3D:
    torch.manual_seed(seed)
    return TinyC3D(bias=bias).eval()


def make_r3d(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return r3d_18(num_classes=5).eval()


def clips(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 32, 32, generator=g)


@pytest.fixture(scope="module")
def c3d() -> TinyC3D:
    return make_c3d()


@pytest.fixture(scope="module")
def r3d() -> nn.Module:
    return make_r3d()


def test_list_methods_has_every_name_with_one_line_descriptions() -> None:
    infos = list_methods()
    assert tuple(i.name for i in infos) == METHOD_NAMES
    for info in infos:
        assert info.description and "\n" not in info.description
        for option, text in info.options.items():
            assert isinstance(option, str) and "default" in text and "\n" not in text
    assert set(next(i for i in infos if i.name == "integrated_gradients").options) == {"n_steps", "baseline"}
    assert mr.list_methods() == infos


def test_cli_lists_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in METHOD_NAMES:
        assert f"\n{name} " in "\n" + out
    assert "n_steps:" in out and "window:" in out


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("model_name", ["c3d", "r3d"])
def test_every_method_on_video_models(method: str, model_name: str, c3d: nn.Module, r3d: nn.Module) -> None:
    model = c3d if model_name == "c3d" else r3d
    x = clips(2 if model_name == "c3d" else 1)
    first = explain(model, x, method, **FAST.get(method, {}))
    second = explain(model, x, method, **FAST.get(method, {}))

    assert first.relevance.shape == x.shape
    assert first.relevance.dtype == torch.float32
    assert torch.isfinite(first.relevance).all()
    assert first.relevance.abs().sum() > 0
    assert torch.equal(first.relevance, second.relevance)  # deterministic on CPU
    assert first.method == method
    with torch.no_grad():
        logits = model(x)
    assert first.logits.dtype == torch.float32 and first.logits.shape == (x.shape[0], 5)
    torch.testing.assert_close(first.logits, logits)
    assert first.target.dtype == torch.int64
    assert torch.equal(first.target, logits.argmax(1))
    assert set(FAST.get(method, {})) <= set(first.options)
    assert first.options["seed"] == 0 and first.options["batch_size"] is None


class IgnoresPart(nn.Module):
    """Multiplies the clip by a fixed mask (last 4 frames and left half zeroed) before a C3D."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_c3d(seed=3)
        mask = torch.ones(1, 1, 8, 32, 32)
        mask[:, :, 4:] = 0
        mask[..., :16] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.mask)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_ignored_input_gets_exactly_zero_relevance(method: str) -> None:
    # gradcam is left out: its trilinear upsampling spreads the map by construction.
    model = IgnoresPart().eval()
    expl = explain(model, clips(1), method, **FAST.get(method, {}))
    ignored = model.mask.expand_as(expl.relevance) == 0
    assert torch.all(expl.relevance[ignored] == 0)
    assert expl.relevance[~ignored].abs().sum() > 0


def calibrated_c3d_with_biases() -> TinyC3D:
    model = make_c3d(seed=5, bias=True)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(clips(4, seed=9))
    return model.eval()


def smooth_c3d() -> TinyC3D:
    """The calibrated C3D with softplus activations and average pooling: a smooth network."""
    model = calibrated_c3d_with_biases()
    model.relu1, model.relu2, model.relu3 = nn.Softplus(beta=4), nn.Softplus(beta=4), nn.Softplus(beta=4)
    model.pool1, model.pool2 = nn.AvgPool3d((1, 2, 2)), nn.AvgPool3d(2)
    return model.eval()


@pytest.mark.parametrize(
    ("smooth", "n_steps", "rtol"),
    [
        # smooth network: the Gauss-Legendre rule is exact to float precision (measured ~1e-6)
        (True, 16, 1e-4),
        # ReLU/max-pool network: the path crosses many kinks; with 128 steps the sum is within
        # 2 % of the difference (measured 0.3-1.4 % on these clips)
        (False, 128, 2e-2),
    ],
)
@pytest.mark.parametrize("baseline", ["zeros", 0.3])
def test_integrated_gradients_completeness(baseline: str | float, smooth: bool, n_steps: int, rtol: float) -> None:
    """Sum of attributions == f(x) - f(baseline) for the explained logit."""
    model = smooth_c3d() if smooth else calibrated_c3d_with_biases()
    x = clips(2)
    expl = explain(model, x, "integrated_gradients", n_steps=n_steps, baseline=baseline, batch_size=32)
    b = torch.zeros_like(x) if baseline == "zeros" else torch.full_like(x, baseline)
    with torch.no_grad():
        diff = (model(x) - model(b)).gather(1, expl.target[:, None]).squeeze(1)
    total = expl.relevance.sum(dim=(1, 2, 3, 4))
    assert diff.abs().min() > 1e-3
    torch.testing.assert_close(total, diff, rtol=rtol, atol=0.0)


def test_integrated_gradients_baseline_tensor_per_clip(c3d: nn.Module) -> None:
    x = clips(2)
    base = torch.stack([torch.zeros(3, 8, 32, 32), torch.full((3, 8, 32, 32), 0.5)])
    both = explain(c3d, x, "integrated_gradients", n_steps=8, baseline=base)
    second = explain(c3d, x[1:], "integrated_gradients", n_steps=8, baseline=base[1])
    torch.testing.assert_close(both.relevance[1:], second.relevance)
    assert both.options["baseline"] == "tensor(2, 3, 8, 32, 32)"
    with pytest.raises(InvalidInputError, match="baseline"):
        explain(c3d, x, "integrated_gradients", n_steps=2, baseline=torch.zeros(3, 4, 32, 32))


def test_batch_size_does_not_change_results(c3d: nn.Module) -> None:
    x = clips(3)
    for method, opts in [("saliency", {}), ("lrp_epsilon_plus_flat", {}), ("integrated_gradients", {"n_steps": 6})]:
        whole = explain(c3d, x, method, **opts)
        pieces = explain(c3d, x, method, batch_size=2, **opts)
        torch.testing.assert_close(whole.relevance, pieces.relevance, rtol=1e-4, atol=1e-7)
        assert torch.equal(whole.target, pieces.target)
        assert pieces.options["batch_size"] == 2


def test_multi_pass_methods_use_internal_batches(c3d: nn.Module) -> None:
    calls: list[int] = []
    handle = c3d.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        explain(c3d, clips(2), "integrated_gradients", n_steps=10, batch_size=4)
        assert max(calls) == 4 and sum(calls) == 2 * (10 + 1)  # 10 steps + the plain forward per clip
        calls.clear()
        explain(c3d, clips(1), "smoothgrad", samples=6, batch_size=3)
        assert max(calls) == 3
        calls.clear()
        explain(c3d, clips(1), "occlusion", window=(4, 16, 16), batch_size=2)
        assert max(calls) == 2
    finally:
        handle.remove()


def test_smoothgrad_seed_and_global_rng(c3d: nn.Module) -> None:
    x = clips(1)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = explain(c3d, x, "smoothgrad", samples=3, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    b = explain(c3d, x, "smoothgrad", samples=3, seed=7)
    c = explain(c3d, x, "smoothgrad", samples=3, seed=8)
    assert torch.equal(a.relevance, b.relevance)
    assert not torch.equal(a.relevance, c.relevance)
    zero_noise = explain(c3d, x, "smoothgrad", samples=2, noise=0.0)
    torch.testing.assert_close(zero_noise.relevance, explain(c3d, x, "saliency").relevance)


def test_occlusion_window_and_fill(c3d: nn.Module) -> None:
    x = clips(1)
    expl = explain(c3d, x, "occlusion", window=(8, 32, 32), fill=0.0)
    with torch.no_grad():
        drop = (c3d(x) - c3d(torch.zeros_like(x)))[0, expl.target[0]]
    # one window covering the whole clip: every voxel gets the same drop
    torch.testing.assert_close(expl.relevance, torch.full_like(x, float(drop)))
    with pytest.raises(InvalidInputError, match="larger than the clip"):
        explain(c3d, x, "occlusion", window=(16, 16, 16))


# --------------------------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------------------------


def test_gradcam_default_layer_and_spec_layer(r3d: nn.Module) -> None:
    x = clips(1)
    expl = explain(r3d, x, "gradcam")
    # at 8 frames layer4 has one time step left; the last Conv3d with two is layer3's last
    assert expl.options["layer"] == "layer3.1.conv2.0"
    spec = InputSpec(frames=8, size=(32, 32), cam_layer="layer2")
    assert explain(r3d, x, "gradcam", spec=spec).options["layer"] == "layer2"
    as_module = explain(r3d, x, "gradcam", layer=r3d.layer2)
    assert as_module.options["layer"] == "layer2"
    torch.testing.assert_close(as_module.relevance, explain(r3d, x, "gradcam", spec=spec).relevance)
    # spread evenly over channels: identical channels, channel sum is the CAM
    assert torch.equal(expl.relevance[:, 0], expl.relevance[:, 1])
    assert (expl.relevance >= 0).all()


def test_gradcam_signed_map(r3d: nn.Module) -> None:
    x = clips(1)
    signed = explain(r3d, x, "gradcam", layer="layer2", relu=False).relevance
    relu = explain(r3d, x, "gradcam", layer="layer2").relevance
    assert (signed < 0).any() and (signed > 0).any()
    assert (relu >= 0).all()
    # trilinear weights are non-negative, so upsample(relu(cam)) >= upsample(cam) everywhere
    assert (relu >= signed - 1e-7).all()
    assert not torch.allclose(relu, signed.clamp(min=0))


def test_gradcam_with_cam_reshape_matches_captum_path(r3d: nn.Module) -> None:
    # The token path (spec.cam_reshape) must give the same map as Captum's LayerGradCam when
    # the reshape is the identity.
    x = clips(1)
    plain = InputSpec(frames=8, size=(32, 32), cam_layer="layer2")
    token = InputSpec(frames=8, size=(32, 32), cam_layer="layer2", cam_reshape=lambda t: t)
    for method, opts in [("gradcam", {}), ("gradcam", {"relu": False}), ("guided_gradcam", {})]:
        a = explain(r3d, x, method, spec=plain, **opts).relevance
        b = explain(r3d, x, method, spec=token, **opts).relevance
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)


def test_gradcam_layer_errors(r3d: nn.Module) -> None:
    x = clips(1)
    with pytest.raises(UnknownNameError, match="no module 'layer9'"):
        explain(r3d, x, "gradcam", layer="layer9")
    with pytest.raises(InvalidInputError, match="not part of the model"):
        explain(r3d, x, "gradcam", layer=nn.Conv3d(1, 1, 1))
    with pytest.raises(InvalidInputError, match="not \\(N, 1, T, H, W\\)"):
        explain(r3d, x, "gradcam", layer="fc")
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 32 * 32, 5))
    with pytest.raises(InvalidInputError, match="pass layer="):
        explain(flat, x, "gradcam")


# --------------------------------------------------------------------------------------------
# targets and errors
# --------------------------------------------------------------------------------------------

LABELS = ("walk", "run", "jump", "swim", "climb")


def test_targets_int_label_list_tensor(c3d: nn.Module) -> None:
    x = clips(2)
    spec = InputSpec(frames=8, size=(32, 32), labels=LABELS)
    assert explain(c3d, x, "saliency", target=3).target.tolist() == [3, 3]
    assert explain(c3d, x, "saliency", target="Jump", spec=spec).target.tolist() == [2, 2]
    assert explain(c3d, x, "saliency", target=["run", 4], spec=spec).target.tolist() == [1, 4]
    assert explain(c3d, x, "saliency", target=torch.tensor([0, 1])).target.tolist() == [0, 1]
    assert explain(c3d, x, "deep_taylor", target=torch.tensor(2)).target.tolist() == [2, 2]
    c3d.input_spec = spec  # load_model attaches the spec like this
    try:
        assert explain(c3d, x, "integrated_gradients", n_steps=2, target="swim").target.tolist() == [3, 3]
    finally:
        del c3d.input_spec
    # explaining another class changes the relevance
    a = explain(c3d, x, "saliency", target=0).relevance
    b = explain(c3d, x, "saliency", target=1).relevance
    assert not torch.allclose(a, b)


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (5, InvalidInputError, "out of range for a model with 5 classes"),
        (-1, InvalidInputError, "out of range"),
        ([0, 1, 2], InvalidInputError, "one target per clip"),
        (torch.tensor([0.5, 1.0]), InvalidInputError, "integer class indices"),
        ("fly", UnknownNameError, "unknown label 'fly'"),
        (True, InvalidInputError, "class index or a label name"),
    ],
)
@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "lrp_epsilon_plus_flat", "gradcam"])
def test_bad_targets(c3d: nn.Module, method: str, target: object, error: type, match: str) -> None:
    spec = InputSpec(frames=8, size=(32, 32), labels=LABELS)
    with pytest.raises(error, match=match) as info:
        explain(c3d, clips(2), method, target=target, spec=spec, **FAST.get(method, {}))
    assert "\n" not in str(info.value)


def test_label_target_without_spec(c3d: nn.Module) -> None:
    with pytest.raises(UnknownNameError, match="no InputSpec"):
        explain(c3d, clips(1), "saliency", target="walk")
    with pytest.raises(UnknownNameError, match="no label names"):
        explain(c3d, clips(1), "saliency", target="walk", spec=InputSpec(frames=8, size=(32, 32)))


def test_unknown_method_and_bad_options(c3d: nn.Module) -> None:
    x = clips(1)
    with pytest.raises(UnknownNameError, match=r"unknown method 'lime'.*saliency, input_x_gradient"):
        explain(c3d, x, "lime")
    assert explain(c3d, x, "Input-X-Gradient").method == "input_x_gradient"
    bad = [
        ("saliency", {"n_steps": 3}, "takes no options"),
        ("integrated_gradients", {"steps": 3}, "its options are baseline, n_steps"),
        ("integrated_gradients", {"n_steps": 0}, "positive integer"),
        ("integrated_gradients", {"baseline": "ones"}, "'zeros'"),
        ("smoothgrad", {"noise": -1.0}, ">= 0"),
        ("occlusion", {"window": (1, 2)}, "three positive ints"),
        ("gradcam", {"relu": "yes"}, "True or False"),
        ("lrp_epsilon_plus_flat", {"ignore_bias": 1}, "True or False"),
        ("deep_taylor", {"low": "a"}, "number"),
    ]
    for method, opts, match in bad:
        with pytest.raises(InvalidInputError, match=match):
            explain(c3d, x, method, **opts)
    for kwargs, match in [({"batch_size": 0}, "batch_size"), ({"seed": 1.5}, "seed")]:
        with pytest.raises(InvalidInputError, match=match):
            explain(c3d, x, "saliency", **kwargs)


def test_bad_clips_and_models(c3d: nn.Module) -> None:
    for bad, match in [
        (torch.zeros(3, 8, 32, 32), r"\(N, C, T, H, W\)"),
        (torch.zeros(1, 3, 8, 32, 32, dtype=torch.uint8), "floating point"),
        (torch.full((1, 3, 8, 32, 32), float("nan")), "NaN"),
        (torch.zeros(0, 3, 8, 32, 32), "empty"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            explain(c3d, bad, "saliency")
    with pytest.raises(InvalidInputError, match=r"torch\.nn\.Module"):
        explain(lambda t: t, clips(1), "saliency")  # type: ignore[arg-type]

    class Features(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(3, 4))

    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.mean(dim=(2, 3, 4)), x

    for model in (Features(), Pair()):
        for method in ("saliency", "integrated_gradients", "lrp_epsilon_plus_flat"):
            with pytest.raises(InvalidInputError, match="logits"):
                explain(model, clips(1), method, **FAST.get(method, {}))


# --------------------------------------------------------------------------------------------
# the model is left as it was
# --------------------------------------------------------------------------------------------


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": [
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
            for m in model.modules()
        ],
        "attributes": [sorted(vars(m)) for m in model.modules()],
        "modules": [name for name, _ in model.named_modules()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "params": [id(p) for p in model.parameters()],
    }


def _assert_same(before: dict[str, object], after: dict[str, object]) -> None:
    for key in ("training", "requires_grad", "hooks", "attributes", "modules", "params"):
        assert before[key] == after[key], key
    for name, value in before["state"].items():  # type: ignore[union-attr]
        assert torch.equal(value, after["state"][name]), name  # type: ignore[index]


class Boom(torch.autograd.Function):
    """Identity forward whose backward raises: fails a method in the middle of its backward."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom in backward")


class Faulty(nn.Module):
    """A residual video net that fails once, in forward or in backward, in the pass that
    explains: the first call with gradients enabled (the dry runs and plain-logit passes run
    without), or for occlusion (never any gradient) its second call."""

    def __init__(self, where: str | None, method: str = "") -> None:
        super().__init__()
        torch.manual_seed(2)
        self.net = TinyResNet3D()
        self.where, self.by_count, self.calls = where, method == "occlusion", 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.net(x)
        armed = self.calls == 2 if self.by_count else torch.is_grad_enabled()
        if armed and self.where is not None:
            where, self.where = self.where, None  # fail once
            if where == "forward":
                raise RuntimeError("boom in forward")
            out = Boom.apply(out)
        return out


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_model_is_left_as_it_was(method: str) -> None:
    model = Faulty(None)
    model.train()
    model.net.layer1.eval()  # mixed train/eval flags must come back as they were
    model.net.fc.weight.requires_grad_(False)
    # value range [-5, 5] covers the clips (deep_taylor checks its bounds)
    model.input_spec = InputSpec(frames=8, size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.1, 0.1, 0.1))
    before = _snapshot(model)
    explain(model, clips(1), method, **FAST.get(method, {}))
    _assert_same(before, _snapshot(model))


@pytest.mark.parametrize("where", ["forward", "backward"])
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_model_is_left_as_it_was_when_a_method_raises(method: str, where: str) -> None:
    if where == "backward" and method == "occlusion":
        pytest.skip("occlusion never runs a backward pass")
    model = Faulty(where, method)
    model.train()
    model.net.fc.bias.requires_grad_(False)
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match=f"boom in {where}"):
        explain(model, clips(1), method, **FAST.get(method, {}))
    _assert_same(before, _snapshot(model))
    # and it still explains normally afterwards, like a fresh copy
    again = explain(model, clips(1), method, **FAST.get(method, {}))
    fresh = explain(Faulty(None), clips(1), method, **FAST.get(method, {}))
    torch.testing.assert_close(again.relevance, fresh.relevance)


def test_works_under_no_grad_and_inference_mode(c3d: nn.Module) -> None:
    x = clips(1)
    reference = explain(c3d, x, "saliency").relevance
    with torch.no_grad():
        assert torch.equal(explain(c3d, x, "saliency").relevance, reference)
    with torch.inference_mode():
        x_inf = clips(1)
        assert torch.equal(explain(c3d, x_inf, "saliency").relevance, reference)
        assert torch.equal(explain(c3d, x_inf, "lrp_epsilon_plus_flat").relevance,
                           explain(c3d, x, "lrp_epsilon_plus_flat").relevance)


# --------------------------------------------------------------------------------------------
# SlowFast-style models
# --------------------------------------------------------------------------------------------


class TwoPathway(nn.Module):
    """Takes ``[slow, fast]``: the slow path sees few frames, the fast path only their mean."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = nn.Conv3d(3, 4, (1, 3, 3), padding=(0, 1, 1))
        self.fast = nn.Conv3d(3, 4, (3, 3, 3), padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, pathways: list[torch.Tensor]) -> torch.Tensor:
        slow, fast = pathways
        a = torch.relu(self.slow(slow)).mean(dim=(2, 3, 4))
        b = torch.relu(self.fast(fast)).mean(dim=(2, 3, 4))
        return self.fc(torch.cat([a, b], dim=1))


def test_slowfast_wrapper_feeds_both_pathways_from_one_clip() -> None:
    torch.manual_seed(0)
    inner = TwoPathway().eval()
    model = SlowFastInput(inner, alpha=4)
    x = clips(2)
    with torch.no_grad():
        slow = x[:, :, torch.tensor([0, 7])]
        torch.testing.assert_close(model(x), inner([slow, x]))
    for method in ("saliency", "integrated_gradients", "lrp_epsilon_plus_flat"):
        expl = explain(model, x, method, **FAST.get(method, {}))
        assert expl.relevance.shape == x.shape and torch.isfinite(expl.relevance).all()
    # without the fast pathway, only the frames the slow pathway samples get gradient
    inner.fast.weight.data.zero_()
    inner.fast.bias.data.fill_(-1.0)
    grad = explain(model, x, "saliency").relevance
    frames_with_gradient = (grad.abs().sum(dim=(0, 1, 3, 4)) > 0).nonzero().flatten().tolist()
    assert frames_with_gradient == [0, 7]
    with pytest.raises(InvalidInputError, match="alpha"):
        SlowFastInput(inner, alpha=0)
