"""LRP edges the first mutation run of ``attribution/lrp.py``, ``structure.py`` and
``canonizers.py`` showed no test reached (issue 15): the Deep Taylor bounds as options, from the
spec and per clip, and I3D's head pool on features that vary.

Expected values come from the definitions (the spec's pixel range normalised per channel, the
original ``InceptionI3d.forward``), never from the code under test.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.video import s3d
from torchvision.models.video.resnet import Bottleneck, Conv3DSimple
from zennit.attribution import Gradient
from zennit.composites import Composite, NameMapComposite
from zennit.rules import Flat

from motion_relevance.attribution import explain
from motion_relevance.attribution.canonizers import (
    ExactMergeBatchNorm,
    I3DHeadCanonizer,
    S3DHeadCanonizer,
    video_canonizers,
)
from motion_relevance.attribution.lrp import (
    ATOL,
    STABILIZER,
    AttentionRules,
    RelativeStabilizer,
    RelevanceCheckError,
    box_bounds,
    check_relevance,
    refuse_unsupported,
)
from motion_relevance.attribution.structure import model_structure
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.i3d import InceptionI3d
from motion_relevance.models.spec import InputSpec

SPEC = InputSpec(frames=4, size=(8, 8), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.5), scale=1 / 255)


def _run(spec: InputSpec | None) -> SimpleNamespace:
    return SimpleNamespace(spec=spec)


def test_bounds_from_the_spec_are_its_pixel_range_per_channel() -> None:
    x = torch.zeros(2, 3, 5, 4, 4, dtype=torch.float64)
    low, high = box_bounds(_run(SPEC), x, {})
    assert low.shape == high.shape == (1, 3, 1, 1, 1) and low.dtype == high.dtype == torch.float64
    expected_low = [(0 - m) / s for m, s in zip(SPEC.mean, SPEC.std, strict=True)]
    expected_high = [(1 - m) / s for m, s in zip(SPEC.mean, SPEC.std, strict=True)]
    assert low.flatten().tolist() == pytest.approx(expected_low, rel=1e-12)
    assert high.flatten().tolist() == pytest.approx(expected_high, rel=1e-12)


def test_bounds_from_a_three_channel_spec_for_a_one_channel_clip_span_all_channels() -> None:
    x = torch.zeros(1, 1, 5, 4, 4)
    low, high = box_bounds(_run(SPEC), x, {})
    assert low.shape == (1, 1, 1, 1, 1)
    assert float(low) == pytest.approx(min((0 - m) / s for m, s in zip(SPEC.mean, SPEC.std, strict=True)))
    assert float(high) == pytest.approx(max((1 - m) / s for m, s in zip(SPEC.mean, SPEC.std, strict=True)))


def test_bounds_as_options_a_number_a_number_per_channel_or_per_clip() -> None:
    x = torch.zeros(2, 3, 5, 4, 4, dtype=torch.float64)
    low, high = box_bounds(_run(SPEC), x, {"low": -2.0, "high": [1.0, 2.0, 3.0]})
    assert low.shape == (1, 3, 1, 1, 1) and low.dtype == torch.float64 and (low == -2.0).all()
    assert high.flatten().tolist() == [1.0, 2.0, 3.0] and high.dtype == torch.float64
    per_clip = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).view(2, 3, 1, 1, 1)
    _, high = box_bounds(_run(None), x, {"low": -1.0, "high": per_clip})
    assert torch.equal(high, per_clip.double())


@pytest.mark.parametrize("shape", [(2,), (1, 3, 2, 1, 1), (1, 3, 1, 2, 1), (1, 3, 1, 1, 2), (1, 2, 1, 1, 1),
                                   (3, 1, 1, 1, 1), (1, 3, 1, 1)])
def test_bounds_of_another_shape_are_refused_naming_the_option(shape: tuple[int, ...]) -> None:
    x = torch.zeros(1, 3, 5, 4, 4)  # 3 channels, 5 frames: a message naming 5 would be wrong
    with pytest.raises(InvalidInputError, match=rf"^option high must be a number or one number per channel \(3\), "
                       rf"got shape \({', '.join(map(str, shape))},?\)$"):
        box_bounds(_run(None), x, {"high": torch.ones(shape)})


def test_clips_outside_the_bounds_are_refused_within_a_tolerance_of_the_span() -> None:
    """The tolerance is 1e-4 of the widest span (here 20, so 0.002), on either side."""
    base = torch.zeros(1, 3, 2, 2, 2)
    opts = {"low": -10.0, "high": 10.0}
    outside = r"^clip values \[.*\] fall outside the deep_taylor bounds \[-10, 10\]; pass low= and high=, or the model's InputSpec$"
    for value in (10.0015, -10.0015):
        x = base.clone()
        x[0, 0, 0, 0, 0] = value
        low, high = box_bounds(_run(None), x, opts)  # within 0.002: accepted
        assert float(low.min()) == -10.0 and float(high.max()) == 10.0
        x[0, 0, 0, 0, 0] = 1.0003 * value  # 0.003 beyond
        with pytest.raises(InvalidInputError, match=outside):
            box_bounds(_run(None), x, opts)
    x = base.clone()
    x[0, 1, 0, 0, 0] = 1e-4  # a zero span counts as 1: tolerance 1e-4
    assert box_bounds(_run(None), x, {"low": 0.0, "high": 0.0})[0].shape == (1, 3, 1, 1, 1)
    x[0, 1, 0, 0, 0] = 1.5e-4
    with pytest.raises(InvalidInputError, match="outside the deep_taylor bounds"):
        box_bounds(_run(None), x, {"low": 0.0, "high": 0.0})
    with pytest.raises(InvalidInputError, match=r"^deep_taylor bounds must satisfy low <= high$"):
        box_bounds(_run(None), base, {"low": 1.0, "high": -1.0})


def test_clip_values_exactly_at_the_tolerance_are_accepted() -> None:
    """The bounds' tolerance is inclusive: float64 values exactly 1e-4 of the span outside pass."""
    x = torch.zeros(1, 3, 2, 2, 2, dtype=torch.float64)
    x[0, 0, 0, 0, 0] = 0.0 - 1e-4
    x[0, 1, 0, 0, 0] = 1.0 + 1e-4
    low, high = box_bounds(_run(None), x, {"low": 0.0, "high": 1.0})
    assert float(low.min()) == 0.0 and float(high.max()) == 1.0
    x[0, 0, 0, 0, 0] = torch.nextafter(torch.tensor(-1e-4, dtype=torch.float64), torch.tensor(-1.0, dtype=torch.float64))
    with pytest.raises(InvalidInputError, match="outside the deep_taylor bounds"):
        box_bounds(_run(None), x, {"low": 0.0, "high": 1.0})


def test_bounds_per_clip_from_each_clips_range() -> None:
    x = torch.stack([torch.linspace(-1, 2, 3 * 5 * 4 * 4).view(3, 5, 4, 4), torch.zeros(3, 5, 4, 4)])
    low, high = box_bounds(_run(None), x, {})
    assert torch.equal(low, x.amin(dim=(2, 3, 4), keepdim=True))
    assert torch.equal(high, x.amax(dim=(2, 3, 4), keepdim=True))


@pytest.mark.parametrize("features", [(3, 9, 10), (4, 2, 9), (2, 7, 7), (5, 8, 3)])
def test_i3d_head_canonizer_keeps_the_logits_of_features_that_vary(features: tuple[int, int, int]) -> None:
    """The untrained I3D's features hardly vary in time or space (std ~1e-6), so a head pool with
    the wrong stride or kernel gave the same logits there; here the features are random."""
    torch.manual_seed(0)
    model = InceptionI3d(num_classes=4).eval()
    model.features = lambda v: v  # feed the head directly
    x = torch.randn(2, 1024, *features)
    with torch.no_grad():
        reference = model(x)
        with Composite(canonizers=[I3DHeadCanonizer()]).context(model):
            canonized = model(x)
    torch.testing.assert_close(canonized, reference, rtol=1e-5, atol=1e-6)


# --- the stabiliser --------------------------------------------------------------------------


def test_relative_stabilizer_by_its_definition() -> None:
    stab = RelativeStabilizer(0.5)
    z = torch.tensor([[3.0, -4.0, 0.0], [1.0, 1.0, -1.0]], dtype=torch.float64)
    rms = z.pow(2).mean(dim=1, keepdim=True).sqrt()  # per clip (row)
    tiny = torch.finfo(torch.float64).tiny
    expected = z + torch.tensor([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0]], dtype=torch.float64) * (0.5 * rms + tiny)
    assert torch.equal(stab(z), expected)
    # zero is shifted up (sign(0) = +1) by exactly the floor when epsilon is 0
    assert torch.equal(RelativeStabilizer(0.0)(torch.zeros(1, 2, dtype=torch.float64)), torch.full((1, 2), tiny, dtype=torch.float64))
    # an unbatched (1-D) output is scaled by each element's own magnitude
    assert torch.allclose(stab(torch.tensor([2.0, -4.0])), torch.tensor([3.0, -6.0]))
    for dtype in (torch.float16, torch.bfloat16):
        assert stab(z.to(dtype)).dtype == dtype


# --- batch norms merged along the data flow, checked against a model folded by hand ----------


class _ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv3d(3, 4, 2)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.3, 2.0)
            self.bn.weight.uniform_(0.5, 2.0)
            self.bn.bias.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3, 4)))


class _Folded(nn.Module):
    """The same function with the batch norm folded into the convolution by hand."""

    def __init__(self, src: _ConvBN) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 2)
        self.fc = src.fc
        bn = src.bn
        scale = bn.weight.detach() / (bn.running_var + bn.eps).sqrt()
        with torch.no_grad():
            self.conv.weight.copy_(src.conv.weight * scale.view(-1, 1, 1, 1, 1))
            self.conv.bias.copy_((src.conv.bias - bn.running_mean) * scale + bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("method", ["lrp_epsilon_plus_flat", "lrp_alpha2_beta1"])
def test_batch_norm_merge_equals_folding_by_hand(method: str) -> None:
    """With biases in the rules the merged shift takes its share: the map equals that of the
    model folded by hand, and differs from leaving the batch norm out of the rules."""
    net = _ConvBN().eval()
    folded = _Folded(net).eval()
    x = torch.randn(2, 3, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    merged = explain(net, x, method, target=0).relevance
    by_hand = explain(folded, x, method, target=0).relevance
    torch.testing.assert_close(merged, by_hand, rtol=1e-4, atol=1e-6 * float(by_hand.abs().max()))
    no_merge = explain(_NoMerge(net), x, method, target=0).relevance
    assert float((no_merge - by_hand).abs().max()) > 0.01 * float(by_hand.abs().max())


class _NoMerge(nn.Module):
    """``_ConvBN`` with the batch norm applied functionally (LRP cannot merge it)."""

    def __init__(self, src: _ConvBN) -> None:
        super().__init__()
        self.conv, self.fc, self.bn = src.conv, src.fc, src.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        y = F.batch_norm(self.conv(x), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return self.fc(torch.relu(y).mean(dim=(2, 3, 4)))


# --- torchvision's Bottleneck blocks and S3D's head ------------------------------------------


class _BottleneckNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1, bias=False), nn.BatchNorm3d(8), nn.ReLU())
        down = nn.Sequential(nn.Conv3d(8, 16, 1, stride=2, bias=False), nn.BatchNorm3d(16))
        self.block1 = Bottleneck(8, 2, Conv3DSimple)  # 8 -> 8, identity shortcut
        self.block2 = Bottleneck(8, 4, Conv3DSimple, stride=2, downsample=down)  # 8 -> 16
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(16, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.block2(self.block1(self.stem(x)))).flatten(1))


def test_bottleneck_blocks_are_canonized() -> None:
    net = _BottleneckNet().eval()
    x = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    structure = model_structure(net, x)
    with torch.no_grad():
        reference = net(x)
        with Composite(canonizers=video_canonizers(structure)).context(net):
            assert all("canonizer_sum" in b._modules for b in (net.block1, net.block2))
            canonized = net(x)
    torch.testing.assert_close(canonized, reference, rtol=1e-5, atol=1e-6)


def test_s3d_head_canonizer_keeps_the_logits_and_pools_with_a_module() -> None:
    torch.manual_seed(0)
    model = s3d(num_classes=4).eval()
    model.features = nn.Identity()  # feed the head directly: (N, 1024, T, 7, 7) features
    x = torch.randn(2, 1024, 4, 7, 7)
    with torch.no_grad():
        reference = model(x)
        with Composite(canonizers=[S3DHeadCanonizer()]).context(model):
            assert isinstance(model.canonizer_mean, nn.AdaptiveAvgPool3d) and "forward" in vars(model)
            canonized = model(x)
    torch.testing.assert_close(canonized, reference, rtol=1e-5, atol=1e-6)
    assert "forward" not in vars(model)


# --- the layer budget ------------------------------------------------------------------------


class _Gate(nn.Module):
    """A leaf module whose output carries no gradient (a mask)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.detach() > 0).to(x)


class _BudgetNet(nn.Module):
    """A shared convolution called twice, a pool that also returns its indices, a mask module,
    and a two-input layer, inside containers."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.body = nn.Sequential(nn.Conv3d(3, 3, 3, padding=1, bias=False), nn.ReLU())
        self.pool = nn.MaxPool3d(2, return_indices=True)
        self.gate = _Gate()
        self.head = nn.ModuleDict({"pair": nn.Bilinear(3, 3, 3, bias=False), "fc": nn.Linear(3, 2, bias=False)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.body(x))
        x, _ = self.pool(x)
        x = (x * self.gate(x)).mean(dim=(2, 3, 4))
        return self.head["fc"](self.head["pair"](x, x))


def test_layer_budget_rows_per_clip_for_shared_and_unusual_layers() -> None:
    net = _BudgetNet().eval()
    x = torch.randn(2, 3, 4, 6, 6, generator=torch.Generator().manual_seed(2)).abs()
    expl = explain(net, x, "lrp_epsilon_plus_flat", target=0, layer_budget=True)
    rows = expl.options["layer_sums"]
    # leaf modules only (no containers, no activations), in call order; the mask module carries
    # no relevance and has no rows
    assert [r["layer"] for r in rows] == ["body.0", "body.0", "pool", "pool", "head.pair", "head.pair",
                                          "head.fc", "head.fc"]
    assert [r["clip"] for r in rows] == [0, 1] * 4
    by = {(r["layer"], r["clip"]): r for r in rows}
    for clip in (0, 1):
        logit = float(expl.logits[clip, 0])
        assert by[("head.fc", clip)]["relevance_out"] == pytest.approx(logit, rel=1e-6)
        # the convolution is called twice and both calls conserve (flat, z+): its sums add the
        # relevance of both calls, twice what the pool passes on
        conv, pool = by[("body.0", clip)], by[("pool", clip)]
        assert conv["relevance_out"] == pytest.approx(2 * pool["relevance_in"], rel=1e-5)
        assert conv["relevance_in"] == pytest.approx(2 * pool["relevance_in"], rel=1e-5)
        assert pool["relevance_out"] is None  # it returns (values, indices): tapped at its input only
    # the same clip explained alone gives its rows, numbered from 0
    alone = explain(net, x[1:], "lrp_epsilon_plus_flat", target=0, layer_budget=True).options["layer_sums"]
    assert [r["clip"] for r in alone] == [0] * 4
    for r in alone:
        assert r["relevance_in"] == pytest.approx(by[(r["layer"], 1)]["relevance_in"], rel=1e-5)
    batched = explain(net, x, "lrp_epsilon_plus_flat", target=0, layer_budget=True, batch_size=1)
    assert [r["clip"] for r in batched.options["layer_sums"]] == [0, 0, 0, 0, 1, 1, 1, 1]


# --- refusals, word for word -----------------------------------------------------------------


def test_refusals_word_for_word() -> None:
    class WithMHA(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(4, 1)

    class WithNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(4)

    with pytest.raises(InvalidInputError, match=r"^lrp_alpha2_beta1 is not supported for WithMHA: "
                       r"nn.MultiheadAttention runs attention in one fused kernel that LRP rules cannot see into; "
                       r"use saliency, integrated_gradients or gradcam$"):
        refuse_unsupported(WithMHA(), "lrp_alpha2_beta1")
    with pytest.raises(InvalidInputError, match=r"^deep_taylor is not supported for WithNorm: its z\+ rules assume "
                       r"ReLU activations, and a transformer's layer norms and residual streams are signed; use "
                       r"lrp_epsilon_plus_flat or lrp_alpha2_beta1$"):
        refuse_unsupported(WithNorm(), "deep_taylor")
    refuse_unsupported(WithNorm(), "lrp_epsilon_plus_flat")  # allowed


def test_lrp_refusals_through_explain_name_the_method() -> None:
    class WithMHA(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 1)
            self.mha = nn.MultiheadAttention(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean(dim=(2, 3, 4))

    class NoLayers(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 3, 4))

    x = torch.rand(1, 3, 4, 4, 4)
    with pytest.raises(InvalidInputError, match=r"^lrp_epsilon_plus_flat is not supported for WithMHA: "):
        explain(WithMHA(), x, "lrp_epsilon_plus_flat")
    with pytest.raises(InvalidInputError, match=r"^LRP needs a model with at least one convolution or linear layer "
                       r"\(nn.Module\)$"):
        explain(NoLayers(), x, "lrp_alpha2_beta1")


def test_only_deep_taylor_checks_the_clip_against_bounds() -> None:
    """A clip outside the spec's pixel range is refused by deep_taylor (z^B needs the bounds)
    and explained by the other LRP methods, which have none."""
    net = nn.Sequential(nn.Conv3d(3, 2, 1), nn.Flatten(), nn.Linear(2 * 4 * 2 * 2, 2))
    spec = InputSpec(frames=4, size=(2, 2), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # range [-1, 1]
    x = 3 * torch.ones(1, 3, 4, 2, 2)
    with pytest.raises(InvalidInputError, match="outside the deep_taylor bounds"):
        explain(net, x, "deep_taylor", spec=spec)
    for method in ("lrp_epsilon_plus_flat", "lrp_alpha2_beta1"):
        assert torch.isfinite(explain(net, x, method, spec=spec).relevance).all()


def test_the_conservation_check_accepts_a_gap_exactly_at_its_tolerance() -> None:
    """The check refuses a gap *larger* than RTOL |logit| + ATOL; a logit of 0 and a relevance
    sum of exactly ATOL is on the boundary and passes, the next float64 up fails."""
    logits, target = torch.zeros(1, 2, dtype=torch.float64), torch.tensor([0])
    check_relevance(torch.tensor([[ATOL]], dtype=torch.float64), logits, target, nn.Identity(), "m", {"ignore_bias": True})
    above = torch.nextafter(torch.tensor(ATOL, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(RelevanceCheckError, match="does not conserve relevance"):
        check_relevance(above.view(1, 1), logits, target, nn.Identity(), "m", {"ignore_bias": True})


class _Twice(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


class _Cat(nn.Module):
    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts, dim=1)


class _Scale(nn.Module):
    def forward(self, pair: tuple[torch.Tensor, float]) -> torch.Tensor:
        return pair[0] * pair[1]


class _Pick(nn.Module):
    def forward(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return parts["h"] * 1.0


class _OddCalls(nn.Module):
    """A module called by keyword only, one given a list, one a tuple with a number, one a dict."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.conv = nn.Conv3d(3, 2, 3, padding=1, bias=False)
        self.twice = _Twice()
        self.cat = _Cat()
        self.scale = _Scale()
        self.pick = _Pick()
        self.fc = nn.Linear(4, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        h = self.pick({"h": self.scale((self.cat([self.twice(x=h), h]), 0.5))})
        return self.fc(h.mean(dim=(2, 3, 4)))


def test_layer_budget_rows_of_modules_called_by_keyword_with_a_list_or_a_dict() -> None:
    """A keyword input and the tensors of a list or tuple are tapped (summed); a dict's are not,
    so that row has no relevance_in. The taps leave the relevance as it is without them."""
    net = _OddCalls().eval()
    x = torch.randn(1, 3, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    expl = explain(net, x, "lrp_epsilon_plus_flat", target=0, layer_budget=True)
    rows = {r["layer"]: r for r in expl.options["layer_sums"]}
    assert [r["layer"] for r in expl.options["layer_sums"]] == ["conv", "twice", "cat", "scale", "pick", "fc"]
    # no rule on these: plain autograd, so 2 * x doubles what it hands down and cat keeps it
    assert rows["twice"]["relevance_in"] == pytest.approx(2 * rows["twice"]["relevance_out"], rel=1e-6)
    assert rows["cat"]["relevance_in"] == pytest.approx(rows["cat"]["relevance_out"], rel=1e-6)
    assert rows["scale"]["relevance_in"] == pytest.approx(0.5 * rows["scale"]["relevance_out"], rel=1e-6)
    assert rows["scale"]["relevance_in"] == pytest.approx(rows["cat"]["relevance_out"], rel=1e-6)
    assert rows["pick"]["relevance_in"] is None
    assert rows["pick"]["relevance_out"] == pytest.approx(rows["scale"]["relevance_out"], rel=1e-6)
    with torch.no_grad():  # the classifier's epsilon rule hands down the target logit (no bias)
        logit = float(net(x)[0, 0])
    assert rows["fc"]["relevance_out"] == pytest.approx(logit, rel=1e-6)
    assert rows["pick"]["relevance_out"] == pytest.approx(logit, rel=1e-3)  # the mean conserves
    plain = explain(net, x, "lrp_epsilon_plus_flat", target=0)
    torch.testing.assert_close(expl.relevance, plain.relevance)


class _TinyAttention(nn.Module):
    """Patch embedding (the first layer), a 1x1x1 convolution with a batch norm, layer norm, one
    attention block, residual, head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(8)
        self.embed = nn.Conv3d(3, 4, (1, 2, 2), stride=(1, 2, 2))
        self.mix = nn.Conv3d(4, 4, 1)
        self.bn = nn.BatchNorm3d(4)
        self.norm = nn.LayerNorm(4)
        self.qkv = nn.Linear(4, 12)
        self.proj = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.2, 3)
            self.bn.weight.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.bn(self.mix(self.embed(x))).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(self.norm(t)).chunk(3, dim=-1)
        t = t + self.proj((q @ k.transpose(1, 2) / 2.0).softmax(dim=-1) @ v)
        return self.head(t.mean(dim=1))


def test_transformers_get_the_first_layers_zennit_rule_and_attention_rules_for_the_rest() -> None:
    """The wiring of the transformer path, rebuilt here from its parts: a Zennit composite with
    a rule for the first layer only, and ``AttentionRules`` (epsilon and ignore_bias from the
    options) for every other operation, leaving the first layer to its rule, with the batch norm
    merged into ``mix``. (A composite with the convolutions' z+ rule would claim ``mix``.)"""
    net = _TinyAttention().eval()
    x = torch.randn(2, 3, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    onehot = torch.eye(2)[[0, 1]]
    for eps, ignore_bias in ((1e-6, False), (0.3, False), (1e-6, True)):
        got = explain(net, x, "lrp_epsilon_plus_flat", target=[0, 1], epsilon=eps, ignore_bias=ignore_bias)
        net.requires_grad_(False)
        leaf = x.clone().requires_grad_()
        composite = NameMapComposite([(("embed",), Flat(stabilizer=RelativeStabilizer(STABILIZER)))],
                                     canonizers=[ExactMergeBatchNorm([(["mix"], "bn")])])
        with Gradient(model=net, composite=composite) as attributor, \
                AttentionRules(net, RelativeStabilizer(eps), ignore_bias, net.embed):
            _, expected = attributor(leaf, lambda out: out.detach() * onehot)
        net.requires_grad_(True)
        torch.testing.assert_close(got.relevance, expected, rtol=1e-5, atol=1e-7)
