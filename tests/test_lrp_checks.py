"""LRP's own checks: finite and conserved relevance, the per-layer budget, the relative stabiliser,
and per-layer conservation through each canonizer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv3DSimple

from motion_relevance.attribution import explain, lrp
from motion_relevance.attribution.lrp import RTOL, RelevanceCheckError
from motion_relevance.errors import InvalidInputError, MotionRelevanceError
from motion_relevance.models.i3d import InceptionI3d

torch.set_num_threads(1)
LRP_METHODS = ("lrp_epsilon_plus_flat", "lrp_alpha2_beta1", "deep_taylor")


def clip(shape: tuple[int, int, int] = (6, 16, 16), seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(seed))


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 16, 3, padding=1, bias=False)
        self.pool1 = nn.MaxPool3d(2, padding=1)
        self.conv2 = nn.Conv3d(16, 32, 3, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(32, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(torch.relu(self.conv1(x)))
        return self.fc(self.pool(torch.relu(self.conv2(x))).flatten(1))


class FunctionalResidual(TinyNet):
    """``x + relu(conv(x))`` with a plain ``+``: the gradient copies relevance to both branches."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(torch.relu(self.conv1(x)))
        y = torch.relu(self.conv2(x))
        y = y + torch.cat([x, x], dim=1)
        return self.fc(self.pool(y).flatten(1))


class SqrtNet(TinyNet):
    """A functional square root after a ReLU module: its gradient is 0/0 at the zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sqrt(self.relu(self.conv1(x)))
        return self.fc(self.pool(torch.relu(self.conv2(x))).flatten(1))


def model(cls: type[nn.Module] = TinyNet) -> nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def test_relevance_sum_is_reported_and_bias_share_without_ignore_bias() -> None:
    net = model()
    nn.init.uniform_(net.fc.weight, -1, 1)
    net.fc.bias = nn.Parameter(torch.full((4,), 0.5))
    x = clip()
    expl = explain(net, x, "lrp_epsilon_plus_flat", target=0)
    total = float(expl.relevance.double().sum())
    logit = float(expl.logits[0, 0])
    assert expl.options["relevance_sum"] == pytest.approx([total], rel=1e-6)
    # the classifier's bias keeps its share: 0.5 of the logit, reported
    share = expl.options["bias_share"][0]
    assert share == pytest.approx((logit - total) / abs(logit), abs=1e-6)
    assert abs(share * abs(logit) - 0.5) < 0.01 * abs(logit) + 1e-4
    ignored = explain(net, x, "lrp_epsilon_plus_flat", target=0, ignore_bias=True)
    assert "bias_share" not in ignored.options
    assert float(ignored.relevance.double().sum()) == pytest.approx(logit, rel=RTOL)


@pytest.mark.parametrize("method", LRP_METHODS)
def test_non_conserving_model_raises_one_line_naming_model_and_method(method: str) -> None:
    net, x = model(FunctionalResidual), clip()
    with pytest.raises(RelevanceCheckError) as info:
        explain(net, x, method, ignore_bias=True)
    message = str(info.value)
    assert isinstance(info.value, InvalidInputError) and isinstance(info.value, MotionRelevanceError)
    assert "\n" not in message and "does not conserve" in message
    assert method in message and "FunctionalResidual" in message
    # with the biases in the rules the sum may differ from the logit: no error, the share is reported
    expl = explain(net, x, method)
    assert len(expl.options["bias_share"]) == 1


def test_nan_relevance_raises() -> None:
    net, x = model(SqrtNet), clip()
    for ignore_bias in (False, True):
        with pytest.raises(RelevanceCheckError, match="SqrtNet gave NaN or infinite relevance"):
            explain(net, x, "lrp_alpha2_beta1", ignore_bias=ignore_bias)


class TinyTransformer(nn.Module):
    """Patch embedding, then two pre-norm blocks written like torchvision's video transformers:
    functional attention (``F.linear`` on the layer's weights, softmax, ``@``), residual ``+``,
    layer norms, a GELU MLP, a positional table added, mean pooling over tokens."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Conv3d(3, dim, (2, 4, 4), stride=(2, 4, 4))
        self.pos = nn.Parameter(torch.randn(1, 48, dim) * 0.1)
        self.heads = heads
        self.blocks = nn.ModuleList()
        for _ in range(2):
            self.blocks.append(nn.ModuleDict({
                "norm1": nn.LayerNorm(dim), "qkv": nn.Linear(dim, 3 * dim), "proj": nn.Linear(dim, dim),
                "norm2": nn.LayerNorm(dim), "mlp": nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)),
            }))  # fmt: skip
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 4)
        for m in self.modules():  # zero biases, as torchvision initialises its video transformers
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2) + self.pos  # (N, 48, dim)
        n, t, c = x.shape
        for b in self.blocks:
            q, k, v = F.linear(b["norm1"](x), b["qkv"].weight, b["qkv"].bias).reshape(n, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
            y = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, t, c)
            x = x + F.linear(y, b["proj"].weight, b["proj"].bias)
            x = x + b["mlp"](b["norm2"](x))
        return self.head(self.norm(x).mean(dim=1))


@pytest.mark.parametrize("method", ["lrp_epsilon_plus_flat", "lrp_alpha2_beta1"])
def test_attention_rules_conserve_through_a_transformer(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = model(TinyTransformer), clip((6, 16, 16))
    expl = explain(net, x, method, ignore_bias=True, layer_budget=True)
    logit = float(expl.logits[0, expl.target[0]])
    assert float(expl.relevance.double().sum()) == pytest.approx(logit, rel=RTOL)
    by_name = assert_layers_conserve(expl.options["layer_sums"], logit)
    assert by_name["head"]["relevance_out"] == pytest.approx(logit, rel=1e-5)
    assert {"blocks.0.norm1", "blocks.1.mlp.0", "embed"} <= set(by_name)
    # with biases in the rules, the positional table takes a share (it is a constant added), reported
    assert abs(explain(net, x, method).options["bias_share"][0]) > 0.01
    # the same model through Zennit's module rules alone: attention, residual + and layer norm
    # see plain gradients, and the check rejects the map
    monkeypatch.setattr(lrp, "uses_attention_rules", lambda m: False)
    with pytest.raises(RelevanceCheckError, match="TinyTransformer"):
        explain(net, x, method, ignore_bias=True)


def test_multihead_attention_and_deep_taylor_on_transformers_are_refused() -> None:
    class WithMHA(TinyNet):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(32, 4, batch_first=True)

    with pytest.raises(InvalidInputError, match=r"not supported for WithMHA: nn\.MultiheadAttention"):
        explain(model(WithMHA), clip(), "lrp_epsilon_plus_flat")
    with pytest.raises(InvalidInputError, match="deep_taylor is not supported for TinyTransformer"):
        explain(model(TinyTransformer), clip((6, 16, 16)), "deep_taylor")


@pytest.mark.parametrize("method", LRP_METHODS)
def test_relevance_does_not_depend_on_the_scale_of_the_weights(method: str) -> None:
    # A bias-free ReLU network scaled by 1e-3 per layer computes 1e-9 times the logits. LRP
    # explains it identically only with a stabiliser relative to each layer's outputs; Zennit's
    # absolute 1e-6 would absorb nearly all of the relevance here.
    net, x = model(), clip()
    small = model()
    with torch.no_grad():
        for m in (small.conv1, small.conv2, small.fc):
            m.weight.mul_(1e-3)
    opts = {"low": float(x.min()), "high": float(x.max())} if method == "deep_taylor" else {}
    a = explain(net, x, method, target=1, ignore_bias=True, **opts)
    b = explain(small, x, method, target=1, ignore_bias=True, **opts)
    torch.testing.assert_close(b.logits, a.logits * 1e-9, rtol=1e-4, atol=0)
    torch.testing.assert_close(b.relevance / b.logits[0, 1], a.relevance / a.logits[0, 1], rtol=1e-3, atol=1e-6)


def budget(net: nn.Module, x: torch.Tensor, method: str) -> tuple[list[dict], float]:
    opts = {"low": float(x.min()), "high": float(x.max())} if method == "deep_taylor" else {}
    expl = explain(net, x, method, ignore_bias=True, layer_budget=True, **opts)
    return expl.options["layer_sums"], float(expl.logits[0, expl.target[0]])


def assert_layers_conserve(rows: list[dict], logit: float, tol: float = 1e-3) -> dict[str, dict]:
    by_name = {r["layer"]: r for r in rows}
    for r in rows:
        if r["relevance_in"] is not None and r["relevance_out"] is not None:
            assert r["relevance_in"] == pytest.approx(r["relevance_out"], rel=tol, abs=1e-6 * abs(logit)), r
    return by_name


@pytest.mark.parametrize("method", LRP_METHODS)
def test_layer_budget_lists_every_layer_in_call_order(method: str) -> None:
    net, x = model(), clip()
    rows, logit = budget(net, x, method)
    assert [r["layer"] for r in rows] == ["conv1", "pool1", "conv2", "pool", "fc"]
    by_name = assert_layers_conserve(rows, logit)
    assert by_name["fc"]["relevance_out"] == pytest.approx(logit, rel=1e-6)
    assert by_name["conv1"]["relevance_in"] == pytest.approx(logit, rel=RTOL)
    assert "layer_sums" not in explain(net, x, method, ignore_bias=True, **(
        {"low": float(x.min()), "high": float(x.max())} if method == "deep_taylor" else {})).options


def test_layer_budget_shows_where_a_functional_residual_creates_relevance() -> None:
    net, x = model(FunctionalResidual), clip()
    expl = explain(net, x, "lrp_epsilon_plus_flat", layer_budget=True)  # biases kept: no check
    by_name = {r["layer"]: r for r in expl.options["layer_sums"]}
    # every rule conserves; the relevance grows between pool1's output and the layers it feeds
    assert_layers_conserve(expl.options["layer_sums"], float(expl.logits[0, expl.target[0]]))
    assert abs(by_name["pool1"]["relevance_out"]) > 1.2 * abs(by_name["conv2"]["relevance_in"])


# --------------------------------------------------------------------------------------------
# per-layer conservation through each canonizer
# --------------------------------------------------------------------------------------------


class TinyResNet(nn.Module):
    """Two torchvision video BasicBlocks, 32 and 64 wide (in much narrower nets z+ meets units
    without any positive contribution often enough to lose a percent)."""

    def __init__(self, w: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, w, 3, padding=1, bias=False), nn.BatchNorm3d(w), nn.ReLU())
        down = nn.Sequential(nn.Conv3d(w, 2 * w, 1, stride=2, bias=False), nn.BatchNorm3d(2 * w))
        self.layer1 = BasicBlock(w, w, Conv3DSimple)
        self.layer2 = BasicBlock(w, 2 * w, Conv3DSimple, stride=2, downsample=down)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(2 * w, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


def calibrated(net: nn.Module, x: torch.Tensor) -> nn.Module:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    net.train()
    with torch.no_grad():
        net(x)
    return net.eval()


@pytest.mark.parametrize("method", LRP_METHODS)
def test_batch_norm_merge_and_residual_sums_conserve_per_layer(method: str) -> None:
    torch.manual_seed(0)
    x = clip((8, 16, 16))
    net = calibrated(TinyResNet(), torch.cat([x, clip((8, 16, 16), seed=5)]))
    rows, logit = budget(net, x, method)
    by_name = assert_layers_conserve(rows, logit)
    # merged batch norms are exact identities for relevance
    for name in ("stem.1", "layer1.conv1.1", "layer2.downsample.1"):
        assert by_name[name]["relevance_in"] == pytest.approx(by_name[name]["relevance_out"], rel=1e-6)
    # the residual canonizer's Sum modules split relevance between the branches, conserving it
    sums = [n for n in by_name if n.endswith("canonizer_sum")]
    assert sorted(sums) == ["layer1.canonizer_sum", "layer2.canonizer_sum"]
    assert by_name["layer2.canonizer_sum"]["relevance_out"] == pytest.approx(by_name["pool"]["relevance_in"], rel=1e-5)


@pytest.mark.parametrize("method", LRP_METHODS)
def test_i3d_head_canonizer_conserves_per_layer(method: str) -> None:
    torch.manual_seed(0)
    net = InceptionI3d(num_classes=4).eval()
    x = clip((9, 32, 32)).clamp(-1, 1)
    rows, logit = budget(net, x, method)
    by_name = assert_layers_conserve(rows, logit)
    assert by_name["canonizer_mean"]["relevance_out"] == pytest.approx(logit, rel=1e-6)
    assert by_name["canonizer_pool"]["relevance_out"] == pytest.approx(by_name["Logits"]["relevance_in"], rel=1e-6)
    assert by_name["Conv3d_1a_7x7.conv"]["relevance_in"] == pytest.approx(logit, rel=RTOL)
