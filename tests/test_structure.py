"""The dry forward pass that finds a model's LRP-relevant layers (attribution/structure.py):
call order, the default Grad-CAM layer, which batch norms can be folded, the padding mask, the
cache, and what it logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zennit.composites import Composite

from motion_relevance.attribution.canonizers import video_canonizers
from motion_relevance.attribution.structure import model_structure

LOGGER = "motion_relevance.attribution.structure"


def clip(n: int = 1, shape: tuple[int, int, int] = (4, 6, 6), dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, 3, *shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


class _CallOrder(nn.Module):
    """Registers its layers in the reverse of the order it calls them; names sort neither way."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.m = nn.Conv3d(2, 2, (2, 1, 1))  # 2 time steps -> 1
        self.a = nn.Conv3d(2, 2, (3, 1, 1))  # 4 time steps -> 2
        self.z = nn.Conv3d(3, 2, 1)  # 4 time steps -> 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.m(self.a(self.z(x))).mean(dim=(2, 3, 4)))


def test_layers_in_call_order_and_the_cam_layer_is_the_last_called_with_time_steps() -> None:
    s = model_structure(_CallOrder().eval(), clip())
    assert s.linear_layers == ("z", "a", "m", "fc")
    assert (s.first_layer, s.last_layer) == ("z", "fc")
    # "m" keeps one time step; "a" keeps two (the fewest that still has time) and runs after "z"
    assert s.cam_layer == "a"


def test_a_model_without_convolution_or_linear_layers_has_none() -> None:
    s = model_structure(nn.Sequential(nn.AvgPool3d(2), nn.Flatten()).eval(), clip())
    assert s.linear_layers == ()
    assert (s.first_layer, s.last_layer, s.cam_layer, s.first_input_mask) == (None, None, None, None)


class _Shared(nn.Module):
    """One convolution or one batch norm called twice: neither can be folded into the other."""

    def __init__(self, share: str) -> None:
        super().__init__()
        self.share = share
        self.conv = nn.Conv3d(3, 2, 1)
        self.other = nn.Conv3d(3, 2, 1)
        self.bn = nn.BatchNorm3d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.share == "conv":
            return self.bn(self.conv(x)) + self.conv(x.flip(2))
        return self.bn(self.conv(x)) + self.bn(self.other(x))


@pytest.mark.parametrize("share", ["conv", "bn"])
def test_a_layer_or_batch_norm_called_twice_is_not_merged(share: str) -> None:
    s = model_structure(_Shared(share).eval(), clip())
    assert s.batch_norm_merges == () and s.unmerged_batch_norms == ("bn",)


def test_a_batch_norm_after_an_activation_is_not_merged() -> None:
    model = nn.Sequential(nn.Conv3d(3, 2, 1), nn.ReLU(), nn.BatchNorm3d(2)).eval()
    s = model_structure(model, clip())
    assert s.batch_norm_merges == () and s.unmerged_batch_norms == ("2",)


class _ReusedAddress(nn.Module):
    """Its batch norm's input is a new tensor that CPython places where a freed convolution output
    lived, so the two share an ``id``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 3, 1)
        self.bn = nn.BatchNorm3d(3)
        self.ids: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        dead = id(out)
        del out
        kept = []  # should another object take the freed slot first, keep trying (kept alive)
        for _ in range(1000):
            fresh = x * 2
            if id(fresh) == dead:
                break
            kept.append(fresh)
        self.ids.append((dead, id(fresh)))
        return self.bn(fresh)


def test_a_batch_norm_fed_by_a_tensor_at_a_dead_outputs_address_is_not_merged() -> None:
    model = _ReusedAddress().eval()
    s = model_structure(model, clip())
    assert model.ids[0][0] == model.ids[0][1], "precondition: the freed output's id was reused"
    assert s.batch_norm_merges == () and s.unmerged_batch_norms == ("bn",)


def _conv_bn(layer: nn.Module, bn: nn.Module) -> nn.Module:
    model = nn.Sequential(layer, bn).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d) and m.running_mean is not None:
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
            if isinstance(m, nn.BatchNorm3d) and m.weight is not None:
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-1, 1)
    return model


@pytest.mark.parametrize(
    ("layer", "bn"),
    [
        (lambda: nn.Conv3d(3, 4, 3), lambda: nn.BatchNorm3d(4)),
        # a transposed convolution's weight is (in, out, ...): 3 in, 4 out, kernel 2
        (lambda: nn.ConvTranspose3d(3, 4, 2), lambda: nn.BatchNorm3d(4)),
    ],
    ids=["conv", "transposed"],
)
def test_a_batch_norm_after_a_layer_is_merged_and_the_merge_keeps_the_function(layer, bn) -> None:
    torch.manual_seed(0)
    model = _conv_bn(layer(), bn())
    x = clip()
    s = model_structure(model, x)
    assert s.batch_norm_merges == ((("0",), "1"),) and s.unmerged_batch_norms == ()
    with torch.no_grad():
        reference = model(x)
        with Composite(canonizers=video_canonizers(s)).context(model):
            merged = model(x)
            assert torch.equal(model[1].running_var, torch.ones(4))  # the batch norm is folded away
    torch.testing.assert_close(merged, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("layer", "bn"),
    [
        # grouped: the weight is (in, out / groups, ...), Zennit's per-channel scale cannot apply
        (lambda: nn.ConvTranspose3d(4, 4, 3, groups=2), lambda: nn.BatchNorm3d(4)),
        (lambda: nn.Conv3d(4, 4, 3), lambda: nn.BatchNorm3d(4, track_running_stats=False)),
        (lambda: nn.Conv3d(4, 4, 3), lambda: nn.BatchNorm3d(4, affine=False)),
    ],
    ids=["grouped-transposed", "no-running-statistics", "not-affine"],
)
def test_batch_norms_zennit_cannot_fold_are_kept_and_logged(
    layer, bn, caplog: pytest.LogCaptureFixture
) -> None:
    model = nn.Sequential(layer(), bn()).eval()
    x = torch.randn(1, 4, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        s = model_structure(model, x)
    assert s.batch_norm_merges == () and s.unmerged_batch_norms == ("1",)
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "batch norms not directly after a convolution/linear layer (kept as is): ['1']"
    ]


# --------------------------------------------------------------------------------------------
# the cache
# --------------------------------------------------------------------------------------------


def test_the_structure_is_cached_and_found_again_when_a_module_is_replaced() -> None:
    model = _conv_bn(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4))
    x = clip()
    first = model_structure(model, x)
    assert model_structure(model, clip(2)) is first  # the batch size is not part of the key
    assert first.batch_norm_merges == ((("0",), "1"),)
    model[1] = nn.Identity()  # same name, another kind of module
    again = model_structure(model, x)
    assert again.batch_norm_merges == () and again.unmerged_batch_norms == ()


class _ByChannels(nn.Module):
    """Takes a different branch for one-channel (grey) clips."""

    def __init__(self) -> None:
        super().__init__()
        self.grey = nn.Conv3d(1, 2, 1)
        self.rgb = nn.Conv3d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.grey if x.shape[1] == 1 else self.rgb)(x)


def test_the_structure_is_found_per_clip_shape_channels_included() -> None:
    model = _ByChannels().eval()
    assert model_structure(model, clip()).first_layer == "rgb"
    assert model_structure(model, clip()[:, :1]).first_layer == "grey"


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 1)
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        return self.conv(F.pad(x, (1, 1)))


def test_the_dry_runs_see_one_clip_of_a_batch() -> None:
    model = _Counting().eval()
    s = model_structure(model, clip(5))
    assert model.batch_sizes == [1, 1]  # the hooked pass and the padding trace
    assert s.first_input_mask is not None and s.first_input_mask.shape == (1, 3, 4, 6, 8)


# --------------------------------------------------------------------------------------------
# the first layer's padding mask
# --------------------------------------------------------------------------------------------


class _Padded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (1, 1, 2, 0)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_padding_mask_marks_the_clip_in_the_clips_dtype(dtype: torch.dtype) -> None:
    mask = model_structure(_Padded().to(dtype).eval(), clip(dtype=dtype)).first_input_mask
    assert mask is not None and mask.dtype == dtype and mask.shape == (1, 3, 4, 8, 8)
    expected = torch.zeros(1, 3, 4, 8, 8, dtype=dtype)
    expected[..., 2:, 1:7] = 1
    assert torch.equal(mask, expected)


def test_a_first_layer_that_sees_the_clip_itself_has_no_mask() -> None:
    assert (
        model_structure(
            nn.Sequential(nn.Conv3d(3, 2, 3, padding=1)).eval(), clip()
        ).first_input_mask
        is None
    )


class _FrameWise(nn.Module):
    """A 2-D network run on every frame (frames folded into the batch), padded by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        return self.conv(F.pad(frames, (1, 1, 1, 1))).reshape(n, t, -1).mean(1)


def test_a_frame_wise_model_gets_one_frames_mask() -> None:
    mask = model_structure(_FrameWise().eval(), clip()).first_input_mask
    assert mask is not None and mask.shape == (1, 3, 8, 8)
    assert mask.sum() == 3 * 6 * 6


class _ByKeyword(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(input=F.pad(x, (1, 1)))


def test_a_first_layer_called_by_keyword_is_not_traced_and_nothing_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert model_structure(_ByKeyword().eval(), clip()).first_input_mask is None
    assert [r for r in caplog.records if r.name == LOGGER] == []


class _NoForwardAD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * 2


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(_NoForwardAD.apply(x), (1, 1)))


def test_a_clip_that_cannot_be_traced_gets_no_mask_and_the_reason_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert model_structure(_Untraceable().eval(), clip()).first_input_mask is None
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    message = record.getMessage()
    assert message.startswith("could not trace padding before the first layer (")
    assert message.endswith("); assuming none")
    assert "jvp" in message  # PyTorch's own reason, passed on


class _Warns(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import warnings

        warnings.warn("from the model", FutureWarning, stacklevel=2)
        return self.conv(F.pad(x, (1, 1)))


def test_the_models_own_future_warnings_are_not_hidden_by_the_trace() -> None:
    with pytest.warns(FutureWarning, match="from the model") as record:
        model_structure(_Warns().eval(), clip())
    assert len([w for w in record if "from the model" in str(w.message)]) == 2  # dry run and trace


def test_torchs_deprecation_warning_from_the_first_forward_ad_trace_is_not_shown() -> None:
    # a fresh interpreter: torch warns once, when forward-mode AD loads its decompositions
    code = (
        "import torch, torch.nn.functional as F\n"
        "from torch import nn\n"
        "from motion_relevance.attribution.structure import model_structure\n"
        "class P(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.conv = nn.Conv3d(3, 2, 3)\n"
        "    def forward(self, x):\n"
        "        return self.conv(F.pad(x, (1, 1)))\n"
        "assert model_structure(P().eval(), torch.randn(1, 3, 4, 6, 6)).first_input_mask is not None\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # the same motion_relevance as here
    done = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
