"""Independent oracles for Grad-CAM and guided Grad-CAM.

The expected maps come from the test's own functional copy of a small ReLU network: the CAM
layer's output and its gradient are taken with plain autograd, weighted by hand, upsampled with
``F.interpolate`` and (for guided Grad-CAM) multiplied by guided backpropagation written as a
``torch.autograd.Function``. Neither Captum nor the code under test computes an expected value.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import motion_relevance as mr
from motion_relevance.models.spec import InputSpec

torch.set_num_threads(1)

SHAPE = (3, 4, 8, 8)


class CamNet(nn.Module):
    """conv(3->4, stride 1x2x2) -> ReLU -> conv(4->5) -> ReLU -> conv(5->6, stride 4x2x2)
    -> ReLU -> global average -> linear. The last Conv3d with more than one output frame is
    ``conv2`` (``conv3`` leaves one frame of the four)."""

    def __init__(self, k: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv3d(3, 4, 3, stride=(1, 2, 2), padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv3d(4, 5, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv3d(5, 6, 3, stride=(4, 2, 2), padding=1)
        self.relu3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(6, k)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = self.relu3(self.conv3(x))
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


def forward_by_hand(net: CamNet, x: torch.Tensor, relu, keep: dict[str, torch.Tensor]) -> torch.Tensor:
    """CamNet with F.conv3d, keeping every conv output (the layers Grad-CAM can look at)."""
    keep["conv1"] = F.conv3d(x, net.conv1.weight, net.conv1.bias, stride=(1, 2, 2), padding=1)
    keep["conv2"] = F.conv3d(relu(keep["conv1"]), net.conv2.weight, net.conv2.bias, padding=1)
    keep["conv3"] = F.conv3d(relu(keep["conv2"]), net.conv3.weight, net.conv3.bias, stride=(4, 2, 2), padding=1)
    h = relu(keep["conv3"]).mean(dim=(2, 3, 4))
    return h @ net.fc.weight.T + net.fc.bias


def cam_by_hand(net: CamNet, x: torch.Tensor, target: torch.Tensor, layer: str, relu: bool) -> torch.Tensor:
    """(N, 1, T, H, W): sum_k mean(dy/dA_k) A_k at ``layer``, optional ReLU, trilinear upsampling."""
    keep: dict[str, torch.Tensor] = {}
    xx = x.double()
    out = forward_by_hand(net, xx, torch.relu, keep)
    acts = keep[layer]
    (grads,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), acts)
    weights = grads.mean(dim=(2, 3, 4), keepdim=True)
    cam = (weights * acts).sum(dim=1, keepdim=True).detach()
    if relu:
        cam = cam.clamp(min=0)
    return F.interpolate(cam, size=x.shape[2:], mode="trilinear", align_corners=False)


def guided_by_hand(net: CamNet, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    xx = x.double().clone().requires_grad_(True)
    out = forward_by_hand(net, xx, GuidedReLU.apply, {})
    (g,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), xx)
    return g


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    expected = expected.detach().double()
    scale = float(expected.abs().max())
    assert scale > 0
    err = float((actual.double() - expected).abs().max())
    assert err <= rtol * scale, f"max error {err:.3g} vs scale {scale:.3g}"


def far(a: torch.Tensor, b: torch.Tensor, share: float = 0.2) -> bool:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max()) > share * float(b.abs().max())


@pytest.fixture(scope="module")
def net() -> CamNet:
    return CamNet().eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    return 2 * torch.rand((2, *SHAPE), generator=gen) - 1


TARGET = torch.tensor([1, 3])


@pytest.mark.parametrize("layer", [None, "conv2", "conv1"])
def test_gradcam_matches_hooks_written_here(net: CamNet, x: torch.Tensor, layer: str | None) -> None:
    opts = {} if layer is None else {"layer": layer}
    expl = mr.explain(net, x, "gradcam", target=TARGET, **opts)
    cam = cam_by_hand(net, x, TARGET, layer or "conv2", relu=True)
    # the channel sum of the relevance is the CAM, spread evenly over the three channels
    for c in range(3):
        close(expl.relevance[:, c : c + 1], cam / 3)
    close(expl.relevance.sum(1, keepdim=True), cam)
    assert expl.options["layer"] == (layer or "conv2")


def test_gradcam_relu_and_signed_map_differ_as_they_should(net: CamNet, x: torch.Tensor) -> None:
    signed = cam_by_hand(net, x, TARGET, "conv2", relu=False)
    assert float(signed.min()) < -0.2 * float(signed.abs().max())  # the ReLU removes a lot here
    expl = mr.explain(net, x, "gradcam", target=TARGET, relu=False)
    close(expl.relevance.sum(1, keepdim=True), signed)
    expl_relu = mr.explain(net, x, "gradcam", target=TARGET)
    assert far(expl_relu.relevance.sum(1, keepdim=True), signed)


def test_gradcam_layer_from_the_spec(net: CamNet, x: torch.Tensor) -> None:
    spec = InputSpec(frames=4, size=(8, 8), cam_layer="conv3")
    expl = mr.explain(net, x, "gradcam", target=TARGET, spec=spec)
    cam = cam_by_hand(net, x, TARGET, "conv3", relu=True)
    close(expl.relevance.sum(1, keepdim=True), cam)
    assert far(expl.relevance.sum(1, keepdim=True), cam_by_hand(net, x, TARGET, "conv2", relu=True))


def test_gradcam_of_other_targets_differs(net: CamNet, x: torch.Tensor) -> None:
    other = torch.tensor([0, 2])
    expl = mr.explain(net, x, "gradcam", target=other)
    close(expl.relevance.sum(1, keepdim=True), cam_by_hand(net, x, other, "conv2", relu=True))
    assert far(expl.relevance.sum(1, keepdim=True), cam_by_hand(net, x, TARGET, "conv2", relu=True))


@pytest.mark.parametrize("layer", [None, "conv1"])
def test_guided_gradcam_is_guided_backprop_times_the_relu_cam(net: CamNet, x: torch.Tensor, layer: str | None) -> None:
    opts = {} if layer is None else {"layer": layer}
    expl = mr.explain(net, x, "guided_gradcam", target=TARGET, **opts)
    cam = cam_by_hand(net, x, TARGET, layer or "conv2", relu=True)
    guided = guided_by_hand(net, x, TARGET)
    expected = guided * cam
    close(expl.relevance, expected)
    # neither factor alone, and not the signed CAM
    assert far(expl.relevance, guided)
    assert far(expl.relevance, cam.expand_as(guided) / 3)
    assert far(expl.relevance, guided * cam_by_hand(net, x, TARGET, layer or "conv2", relu=False))
