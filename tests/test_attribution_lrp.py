"""LRP / Deep Taylor: relevance conservation, the video canonizers and the layer discovery."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torchvision.models.video import r2plus1d_18, r3d_18
from torchvision.models.video.resnet import BasicBlock, Conv3DSimple
from zennit.core import Composite

from motion_relevance.attribution import canonizers, explain, lrp
from motion_relevance.attribution.canonizers import (
    ExactMergeBatchNorm,
    I3DHeadCanonizer,
    ResidualSumCanonizer,
    register_residual_block,
)
from motion_relevance.attribution.lrp import RelevanceCheckError
from motion_relevance.attribution.structure import model_structure
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.i3d import InceptionI3d
from motion_relevance.models.spec import InputSpec

torch.set_num_threads(1)

LRP_METHODS = ["lrp_epsilon_plus_flat", "lrp_alpha2_beta1", "deep_taylor"]
RTOL = 1e-3  # the bound on |sum(relevance) - explained logit| / |explained logit|


class TinyC3D(nn.Module):
    def __init__(self, bias: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(3, 8, 3, padding=1, bias=bias), nn.BatchNorm3d(8), nn.ReLU(), nn.MaxPool3d((1, 2, 2)),
            nn.Conv3d(8, 16, 3, padding=1, bias=bias), nn.BatchNorm3d(16), nn.ReLU(), nn.MaxPool3d(2),
            nn.Conv3d(16, 16, 3, padding=1, bias=bias), nn.BatchNorm3d(16), nn.ReLU(),
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(16, 5, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class TinyResNet3D(nn.Module):
    """Narrow r3d built from torchvision's video BasicBlock (one with a downsampling shortcut)."""

    def __init__(self, block: type[nn.Module] = BasicBlock, width: int = 8) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv3d(3, w, 3, padding=1, bias=False), nn.BatchNorm3d(w), nn.ReLU(inplace=True))
        down = nn.Sequential(nn.Conv3d(w, 2 * w, 1, stride=2, bias=False), nn.BatchNorm3d(2 * w))
        self.layer1 = block(w, w, Conv3DSimple)
        self.layer2 = block(w, 2 * w, Conv3DSimple, stride=2, downsample=down)
        self.pool = nn.AdaptiveAvgPool3d(1)  # a module, so LRP's proportional Norm rule applies
        self.fc = nn.Linear(2 * w, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


def clips(n: int = 1, shape: tuple[int, int, int] = (8, 32, 32), seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, *shape, generator=torch.Generator().manual_seed(seed))


def calibrate(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Give the batch norms the statistics of ``x`` (random nets otherwise fade to ~0)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def make(name: str, biases: bool) -> tuple[nn.Module, torch.Tensor]:
    """(model, clip). ``biases=False``: every bias is zero, also after merging batch norms;
    ``biases=True``: random biases and calibrated batch-norm statistics."""
    torch.manual_seed(0)
    if name == "c3d":
        model, x = TinyC3D(bias=biases), clips(2)
    elif name == "r3d":
        model, x = r3d_18(num_classes=5), clips(1)
    elif name == "resnet":
        model, x = TinyResNet3D(), clips(2)
    else:
        model, x = InceptionI3d(num_classes=5), clips(1, (9, 32, 32)).clamp(-1, 1)
    if biases:
        calibrate(model, clips(2, tuple(x.shape[2:]), seed=7).clamp(-1, 1) if name == "i3d" else clips(2, tuple(x.shape[2:]), seed=7))
    else:
        for m in model.modules():
            if getattr(m, "bias", None) is not None and not isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.zeros_(m.bias)
    return model.eval(), x


def refused_error(model: nn.Module, x: torch.Tensor, method: str, **opts: object) -> float:
    """The relative conservation error of a map that ``explain`` rejects (it must reject it)."""
    with pytest.raises(RelevanceCheckError, match="does not conserve relevance") as info:
        relative_error(model, x, method, **opts)
    return abs(info.value.relevance_sum - info.value.explained) / abs(info.value.explained)


def relative_error(model: nn.Module, x: torch.Tensor, method: str, **opts: object) -> torch.Tensor:
    if method == "deep_taylor" and "low" not in opts:
        opts = {**opts, "low": float(x.min()), "high": float(x.max())}
    expl = explain(model, x, method, **opts)
    explained = expl.logits.gather(1, expl.target[:, None]).squeeze(1)
    assert explained.abs().min() > 1e-4
    return (expl.relevance.sum(dim=(1, 2, 3, 4)) - explained).abs() / explained.abs()


@pytest.mark.parametrize("method", LRP_METHODS)
@pytest.mark.parametrize("name", ["c3d", "r3d"])
def test_conservation_on_bias_free_models(name: str, method: str) -> None:
    # Bias convention: biases keep their share of relevance (Zennit's rules), so with all biases
    # zero -- torchvision's r3d_18 initialisation, with its classifier bias zeroed -- the input
    # relevance sums to the explained logit.
    model, x = make(name, biases=False)
    assert relative_error(model, x, method).max() < RTOL


@pytest.mark.parametrize("method", LRP_METHODS)
@pytest.mark.parametrize("name", ["c3d", "r3d", "i3d"])
def test_conservation_with_biases_left_out(name: str, method: str) -> None:
    # With random biases (and merged batch-norm shifts) the sum misses what the biases absorb;
    # ignore_bias=True leaves biases out of every rule and restores conservation.
    model, x = make(name, biases=True)
    assert relative_error(model, x, method, ignore_bias=True).max() < RTOL
    if name == "c3d":
        assert relative_error(model, x, method).min() > 10 * RTOL  # the convention matters


def test_conservation_needs_the_residual_canonizer(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = make("r3d", biases=True)
    assert relative_error(model, x, "lrp_epsilon_plus_flat", ignore_bias=True).max() < RTOL

    def without_residual(structure: object) -> list:
        return [c for c in canonizers.video_canonizers(structure) if not isinstance(c, ResidualSumCanonizer)]

    monkeypatch.setattr(lrp, "video_canonizers", without_residual)
    # `out += residual` copies the relevance to both branches: far from conserved
    assert refused_error(model, x, "lrp_epsilon_plus_flat", ignore_bias=True) > 0.05


def test_first_layer_rules_skip_the_padding_of_tf_same_models(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = make("i3d", biases=True)
    mask = model_structure(model, x).first_input_mask
    assert mask is not None and mask.shape == (1, 3, 15, 37, 37)
    assert mask.sum() == 3 * 9 * 32 * 32  # exactly the clip's voxels, the rest is F.pad's zeros
    for method in ("lrp_epsilon_plus_flat", "deep_taylor"):
        assert relative_error(model, x, method, ignore_bias=True).max() < RTOL

    original = lrp.model_structure
    monkeypatch.setattr(lrp, "model_structure", lambda m, t: dataclasses.replace(original(m, t), first_input_mask=None))
    for method in ("lrp_epsilon_plus_flat", "deep_taylor"):
        # flat and z^B rules would hand relevance to the padding, where it is lost
        assert refused_error(model, x, method, ignore_bias=True) > 0.05


# --------------------------------------------------------------------------------------------
# canonizers
# --------------------------------------------------------------------------------------------


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.1])
def test_batch_norm_merge_is_exact_and_undone(eps: float) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, bias=False), nn.BatchNorm3d(4, eps=eps)).eval()
    bn = model[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.05, 2)
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    x = clips(1, (4, 6, 6))
    before = _params(model)
    with torch.no_grad():
        reference = model(x)
        with Composite(canonizers=[ExactMergeBatchNorm([(["0"], "1")])]).context(model):
            merged = model(x)
            assert model[0].bias is not None
    torch.testing.assert_close(merged, reference, rtol=1e-5, atol=1e-6)
    assert model[0].bias is None
    for k, v in _params(model).items():
        assert torch.equal(v, before[k]), k


class ReversedUnit(nn.Module):
    """Registers its batch norm before its convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm3d(4)
        self.conv = nn.Conv3d(3, 4, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class ConcatThenNorm(nn.Module):
    """Two convolutions concatenated, then one batch norm over both."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(3, 2, 1, bias=False)
        self.b = nn.Conv3d(3, 2, 1, bias=False)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], dim=1)))
        return self.fc(y.mean(dim=(2, 3, 4)))


def test_batch_norm_pairs_follow_the_data_flow() -> None:
    x = clips(1, (4, 8, 8))
    reversed_model = nn.Sequential(ReversedUnit(), nn.Flatten(), nn.LazyLinear(3))
    reversed_model(x)  # materialise the lazy layer
    s = model_structure(reversed_model.eval(), x)
    assert s.batch_norm_merges == ((("0.conv",), "0.bn"),)
    assert s.first_layer == "0.conv" and s.last_layer == "2"

    s = model_structure(ConcatThenNorm().eval(), x)
    assert s.batch_norm_merges == () and s.unmerged_batch_norms == ("bn",)

    for factory in (r3d_18, r2plus1d_18):
        model = factory(num_classes=5).eval()
        s = model_structure(model, clips(1, (8, 32, 32)))
        bns = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm3d)]
        assert sorted(bn for _, bn in s.batch_norm_merges) == sorted(bns)
        assert s.unmerged_batch_norms == ()
        assert s.first_layer == "stem.0" and s.last_layer == "fc"


@pytest.mark.parametrize("name", ["r3d", "resnet", "i3d"])
def test_canonized_model_computes_the_same_function(name: str) -> None:
    model, x = make(name, biases=True)
    structure = model_structure(model, x)
    before = _params(model)
    with torch.no_grad():
        reference = model(x)
        composite = Composite(canonizers=canonizers.video_canonizers(structure))
        with composite.context(model):
            canonized = model(x)
            blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
            assert all("canonizer_sum" in vars(b)["_modules"] for b in blocks)
    torch.testing.assert_close(canonized, reference, rtol=1e-4, atol=1e-4)
    assert all("forward" not in vars(m) and "canonizer_sum" not in m._modules for m in model.modules())
    for k, v in _params(model).items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("shape", [(9, 32, 32), (17, 72, 88)])
def test_i3d_head_canonizer_keeps_the_logits(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = InceptionI3d(num_classes=4).eval()
    x = clips(1, shape).clamp(-1, 1)
    with torch.no_grad():
        reference = model(x)
        with Composite(canonizers=[I3DHeadCanonizer()]).context(model):
            assert isinstance(model.canonizer_pool, nn.AvgPool3d)
            canonized = model(x)
    torch.testing.assert_close(canonized, reference, rtol=1e-5, atol=1e-6)
    assert "forward" not in vars(model)


class AddBlock(nn.Module):
    """A residual block torchvision does not know: relu(conv(x) + x)."""

    def __init__(self, inplanes: int, planes: int, conv_builder: object, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv3d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.bn(self.conv(x)) + shortcut)


def _add_block_forward(self: AddBlock, x: torch.Tensor) -> torch.Tensor:
    shortcut = x if self.downsample is None else self.downsample(x)
    return torch.relu(self.canonizer_sum(torch.stack([shortcut, self.bn(self.conv(x))], dim=-1)))


def test_register_residual_block(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = calibrate(TinyResNet3D(block=AddBlock, width=32), clips(2, seed=7))
    x = clips(2)
    # unknown block: the addition copies relevance to both branches (measured: ~3x too much)
    assert refused_error(model, x, "lrp_epsilon_plus_flat", ignore_bias=True) > 0.5
    monkeypatch.setitem(canonizers._RESIDUAL_BLOCKS, AddBlock, _add_block_forward)
    assert relative_error(model, x, "lrp_epsilon_plus_flat", ignore_bias=True).max() < RTOL
    monkeypatch.delitem(canonizers._RESIDUAL_BLOCKS, AddBlock)
    register_residual_block(AddBlock, _add_block_forward)  # the public way does the same
    try:
        assert relative_error(model, x, "deep_taylor", ignore_bias=True).max() < RTOL
    finally:
        del canonizers._RESIDUAL_BLOCKS[AddBlock]


# --------------------------------------------------------------------------------------------
# Deep Taylor bounds
# --------------------------------------------------------------------------------------------


def test_deep_taylor_bounds_from_spec_options_or_clip() -> None:
    model, _ = make("c3d", biases=False)
    spec = InputSpec(frames=8, size=(32, 32), mean=(0.45, 0.45, 0.4), std=(0.225, 0.225, 0.25))
    lows = [(0 - m) / s for m, s in zip(spec.mean, spec.std, strict=True)]
    highs = [(1 - m) / s for m, s in zip(spec.mean, spec.std, strict=True)]
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 8, 32, 32, generator=g)  # pixel values in [0, 1] ...
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1, 1)  # ... normalised
    from_spec = explain(model, x, "deep_taylor", spec=spec).relevance
    explicit = explain(model, x, "deep_taylor", low=lows, high=highs).relevance
    torch.testing.assert_close(from_spec, explicit)
    wider = explain(model, x, "deep_taylor", low=-10.0, high=10.0).relevance
    assert not torch.allclose(from_spec, wider)  # z^B depends on the bounds
    from_clip = explain(model, x, "deep_taylor").relevance  # no spec: each clip's own range
    assert torch.isfinite(from_clip).all()

    with pytest.raises(InvalidInputError, match="outside the deep_taylor bounds"):
        explain(model, x * 3, "deep_taylor", spec=spec)
    with pytest.raises(InvalidInputError, match="low <= high"):
        explain(model, x, "deep_taylor", low=1.0, high=-1.0)
    with pytest.raises(InvalidInputError, match="one number per channel"):
        explain(model, x, "deep_taylor", low=[0.0, 1.0])
