"""LRP on every preset at its input size: conserved within 1 % (biases ignored) or refused.

Random weights (``weights="random"``), one clip of random pixels preprocessed like real frames.
Input sizes: the presets' own for r3d_18, mc3_18, r2plus1d_18 (16x112x112) and C3D (the only
size it accepts); I3D at 16x224x224 and S3D at 14x224x224 -- their full spatial size with
fewer frames (I3D's preset is 64 frames, S3D's 128; at 2 cores one LRP pass on the full clip
takes minutes, ``benchmarks/lrp_conservation.py`` measures those). Swin3D at 8x56x56, MViT at
its own (only) input size 16x224x224 (about 2 minutes per test at 2 busy cores); Deep Taylor
is refused on both, up front.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import motion_relevance as mr
from motion_relevance.attribution import explain
from motion_relevance.attribution.lrp import RTOL, RelevanceCheckError
from motion_relevance.errors import InvalidInputError

LRP_METHODS = ("lrp_epsilon_plus_flat", "lrp_alpha2_beta1", "deep_taylor")
FRAMES = {"i3d-kinetics400": 16, "s3d": 14}
CNN_PRESETS = ("r3d_18", "mc3_18", "r2plus1d_18", "c3d", "i3d-kinetics400", "s3d")


def preset_clip(preset: str) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model, spec = mr.load_model(preset, weights="random")
    h, w = spec.size
    frames = FRAMES.get(preset, spec.frames)
    pixels = np.random.default_rng(0).integers(0, 256, size=(frames, h, w, 3), dtype=np.uint8)
    return model, spec.preprocess(pixels)[:1]


@pytest.fixture(scope="module", params=CNN_PRESETS)
def preset(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module, torch.Tensor]:
    return (request.param, *preset_clip(request.param))


@pytest.mark.slow
@pytest.mark.parametrize("method", LRP_METHODS)
def test_cnn_presets_conserve_at_their_input_size(preset: tuple[str, torch.nn.Module, torch.Tensor], method: str) -> None:
    name, model, x = preset
    torch.set_num_threads(2)
    expl = explain(model, x, method, ignore_bias=True)  # the built-in check would raise past 1 %
    total = expl.relevance.double().sum()
    logit = expl.logits[0, expl.target[0]].double()
    assert torch.isfinite(expl.relevance).all()
    assert abs(float(total - logit)) <= RTOL * abs(float(logit)), (name, float(total), float(logit))
    assert expl.options["relevance_sum"] == pytest.approx([float(total)], rel=1e-6)


# Swin3D accepts any size: 8x56x56 keeps every attention window unpadded, as at 32x224x224
# (padded windows hand relevance to the values' biases). MViT takes only its own 16x224x224,
# and gets a clip of random pixels preprocessed like real frames.
TRANSFORMER_SHAPES = {"swin3d_t": (8, 56, 56), "mvit_v2_s": (16, 224, 224)}


@pytest.fixture(scope="module", params=["swin3d_t", "mvit_v2_s"])
def transformer(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.Tensor]:
    if request.param == "mvit_v2_s":
        return preset_clip("mvit_v2_s")
    torch.manual_seed(0)
    model, _ = mr.load_model(request.param, weights="random")
    x = torch.randn(1, 3, *TRANSFORMER_SHAPES[request.param], generator=torch.Generator().manual_seed(1))
    return model, x


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lrp_epsilon_plus_flat", "lrp_alpha2_beta1"])
def test_video_transformers_conserve(transformer: tuple[torch.nn.Module, torch.Tensor], method: str) -> None:
    model, x = transformer
    torch.set_num_threads(2)
    expl = explain(model, x, method, ignore_bias=True)
    total = expl.relevance.double().sum()
    logit = expl.logits[0, expl.target[0]].double()
    assert torch.isfinite(expl.relevance).all()
    assert abs(float(total - logit)) <= RTOL * abs(float(logit)), (type(model).__name__, float(total), float(logit))


@pytest.mark.slow
def test_mvit_on_noise_is_rejected_not_returned(transformer: tuple[torch.nn.Module, torch.Tensor]) -> None:
    # On N(0, 1) noise MViT's class token (a learnt constant, like a bias) keeps a large part of
    # the relevance (measured: 0.77 of a 1.36 logit); the check must reject that map.
    model, x = transformer
    if type(model).__name__ != "MViT":
        pytest.skip("MViT only")
    torch.set_num_threads(2)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    with pytest.raises(RelevanceCheckError, match="lrp_epsilon_plus_flat on MViT does not conserve relevance"):
        explain(model, noise, "lrp_epsilon_plus_flat", ignore_bias=True)


def test_deep_taylor_is_refused_on_transformers_with_one_line(transformer: tuple[torch.nn.Module, torch.Tensor]) -> None:
    model, x = transformer
    calls = []
    handle = model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.raises(InvalidInputError) as info:
            explain(model, x, "deep_taylor")
    finally:
        handle.remove()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"deep_taylor is not supported for {type(model).__name__}: its z+ rules assume ReLU")
    assert calls == []  # refused up front, before any forward pass
