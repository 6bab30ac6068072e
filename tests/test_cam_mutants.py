"""Grad-CAM and guided Grad-CAM: cases the mutation run of ``attribution/cam.py`` found untested
(a token layer with a real ``cam_reshape``, the error messages word for word, the warnings).

Expected maps are computed here with plain autograd on the layer's output, weighted by hand,
upsampled with ``F.interpolate`` and, for guided Grad-CAM, multiplied by guided backpropagation
written as a ``torch.autograd.Function``; neither Captum nor the code under test computes them.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import motion_relevance as mr
from motion_relevance.errors import InvalidInputError, UnknownNameError
from motion_relevance.models.spec import InputSpec
from test_oracles_gradient import GuidedReLU

SHAPE = (3, 4, 4, 4)  # (C, T, H, W)
RELU_HOOK = "Setting backward hooks on ReLU activations"


def clips(n: int, seed: int) -> torch.Tensor:
    return (torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed)) * 2 - 1).double()


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-6) -> None:
    expected = expected.detach().double()
    scale = float(expected.abs().max())
    assert scale > 0
    err = float((actual.detach().double() - expected).abs().max())
    assert err <= rtol * scale, f"max error {err:.3g} vs scale {scale:.3g}"


class ThreeConvs(nn.Module):
    """Three Conv3d layers (so the first, the second and the last conv are three names)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv3d(3, 2, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv3d(2, 3, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv3d(3, 4, 2, stride=2)
        self.relu3 = nn.ReLU()
        self.fc = nn.Linear(4, 3)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu3(self.conv3(self.relu2(self.conv2(self.relu1(self.conv1(x))))))
        return self.fc(x.mean(dim=(2, 3, 4)))


class Tokens(nn.Module):
    """(N, C, T, H, W) -> (N, T*H*W, C), as a transformer's patch embedding would give."""

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a.flatten(2).transpose(1, 2)


class TokenNet(nn.Module):
    """conv(3->4, 2x2x2 stride 2) -> tokens (N, 8, 4) -> ReLU -> mean over tokens -> linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv3d(3, 4, 2, stride=2)
        self.tokens = Tokens()
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.tokens(self.conv(x))).mean(dim=1))


def untoken(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], 2, 2, 2)


TOKEN_SPEC = InputSpec(frames=4, size=(4, 4), cam_layer="tokens", cam_reshape=untoken)


def token_net_by_hand(net: TokenNet, x: torch.Tensor, relu, keep: dict) -> torch.Tensor:
    keep["a"] = F.conv3d(x, net.conv.weight, net.conv.bias, stride=2)  # (N, 4, 2, 2, 2)
    h = relu(keep["a"]).mean(dim=(2, 3, 4))
    return h @ net.fc.weight.T + net.fc.bias


def token_cam_by_hand(net: TokenNet, x: torch.Tensor, target: int, relu: bool) -> torch.Tensor:
    keep: dict = {}
    out = token_net_by_hand(net, x, torch.relu, keep)
    (g,) = torch.autograd.grad(out[:, target].sum(), keep["a"])
    cam = (g.mean(dim=(2, 3, 4), keepdim=True) * keep["a"]).sum(dim=1, keepdim=True).detach()
    if relu:
        cam = cam.clamp(min=0)
    return F.interpolate(cam, size=SHAPE[1:], mode="trilinear", align_corners=False)


@pytest.mark.parametrize("relu", [True, False])
def test_gradcam_of_a_token_layer_through_cam_reshape(relu: bool) -> None:
    net = TokenNet().eval()
    x = clips(2, seed=1)
    expl = mr.explain(net, x, "gradcam", target=2, spec=TOKEN_SPEC, relu=relu)
    cam = token_cam_by_hand(net, x, 2, relu)
    if not relu:
        assert float(cam.min()) < 0 < float(cam.max())
    close(expl.relevance, (cam / 3).expand_as(x))


def test_guided_gradcam_of_a_token_layer_through_cam_reshape() -> None:
    net = TokenNet().eval()
    x = clips(2, seed=2)
    expl = mr.explain(net, x, "guided_gradcam", target=0, spec=TOKEN_SPEC)
    xx = x.clone().requires_grad_(True)
    (guided,) = torch.autograd.grad(token_net_by_hand(net, xx, GuidedReLU.apply, {})[:, 0].sum(), xx)
    close(expl.relevance, guided * token_cam_by_hand(net, x, 0, relu=True))


def test_cam_reshape_that_does_not_give_five_axes() -> None:
    spec = InputSpec(frames=4, size=(4, 4), cam_layer="tokens", cam_reshape=lambda t: t)
    with pytest.raises(InvalidInputError) as info:
        mr.explain(TokenNet(), clips(1, seed=3), "gradcam", spec=spec)
    assert str(info.value) == "spec.cam_reshape must return (N, C, T, H, W), got shape (1, 8, 4)"


def test_layer_option_of_the_wrong_type() -> None:
    with pytest.raises(InvalidInputError) as info:
        mr.explain(ThreeConvs(), clips(1, seed=4), "gradcam", layer=3)
    assert str(info.value) == "option layer must be a dotted module name or a module of the model, got int"


def test_unknown_layer_names_the_last_conv3d() -> None:
    with pytest.raises(UnknownNameError) as info:
        mr.explain(ThreeConvs(), clips(1, seed=5), "gradcam", layer="conv9")
    assert str(info.value) == (
        "the model has no module 'conv9'; pass a dotted name from model.named_modules(), e.g. 'conv3'"
    )


def test_unknown_layer_of_a_model_without_conv3d() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4 * 4, 2)).double()
    with pytest.raises(UnknownNameError) as info:
        mr.explain(flat, clips(1, seed=6), "gradcam", layer="conv")
    assert str(info.value) == "the model has no module 'conv'; pass a dotted name from model.named_modules()"


def test_no_default_layer_and_foreign_module_messages() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4 * 4, 2)).double()
    with pytest.raises(InvalidInputError) as info:
        mr.explain(flat, clips(1, seed=7), "gradcam")
    assert str(info.value) == (
        "no Conv3d output with more than one time step to take Grad-CAM at; pass layer='<module name>'"
    )
    with pytest.raises(InvalidInputError) as info:
        mr.explain(ThreeConvs(), clips(1, seed=7), "gradcam", layer=nn.Conv3d(3, 2, 3))
    assert str(info.value) == "the Grad-CAM layer module is not part of the model; pass one of its submodules"


def test_gradcam_layer_that_is_not_convolutional_word_for_word() -> None:
    with pytest.raises(InvalidInputError) as info:
        mr.explain(ThreeConvs(), clips(1, seed=8), "gradcam", layer="fc")
    assert str(info.value) == (
        "layer 'fc' gives a CAM of shape (1, 1), not (N, 1, T, H, W); choose a 3-D "
        "convolutional layer, or give the model's InputSpec a cam_reshape"
    )


class Pair(nn.Module):
    """A layer with two outputs: the first two channels and the rest."""

    def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a[:, :2], a[:, 2:]


class PairNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.pair = Pair()
        self.fc = nn.Linear(4, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.pair(self.conv(x))
        return self.fc(torch.cat([a.mean(dim=(2, 3, 4)), b.mean(dim=(2, 3, 4))], dim=1))


def test_gradcam_layer_with_two_outputs_word_for_word() -> None:
    with pytest.raises(InvalidInputError) as info:
        mr.explain(PairNet(), clips(1, seed=9), "gradcam", layer="pair")
    assert str(info.value) == (
        "layer 'pair' gives a CAM of shape tuple, not (N, 1, T, H, W); choose a 3-D "
        "convolutional layer, or give the model's InputSpec a cam_reshape"
    )


@pytest.mark.parametrize("spec", [None, InputSpec(frames=4, size=(4, 4))])
def test_guided_gradcam_layer_that_is_not_convolutional_word_for_word(spec: InputSpec | None) -> None:
    """With or without a spec (that has no cam_reshape) the message is guided Grad-CAM's own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns that it cannot upsample
        with pytest.raises(InvalidInputError) as info:
            mr.explain(ThreeConvs(), clips(1, seed=10), "guided_gradcam", layer="fc", spec=spec)
    assert str(info.value) == "layer 'fc' does not give a (N, 1, T, H, W) CAM; choose a 3-D convolutional layer"


class Warns(ThreeConvs):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        warnings.warn("the model's own warning", UserWarning, stacklevel=2)
        return super().forward(x)


@pytest.mark.parametrize("spec", [None, TOKEN_SPEC])
def test_guided_gradcam_silences_only_the_relu_hook_warning(spec: InputSpec | None) -> None:
    model = Warns() if spec is None else _WarnsTokens()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mr.explain(model, clips(1, seed=11), "guided_gradcam", spec=spec)
    messages = [str(w.message) for w in caught]
    assert "the model's own warning" in messages
    assert not any(RELU_HOOK in m for m in messages)


class _WarnsTokens(TokenNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        warnings.warn("the model's own warning", UserWarning, stacklevel=2)
        return super().forward(x)
