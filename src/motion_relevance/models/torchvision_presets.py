"""torchvision's Kinetics-400 video classifiers with their published input specs.

The input specs are the ones torchvision documents for its ``KINETICS400_V1`` weights (crop,
resize, mean/std, training clip length), and each record carries the URL of those weights. They
are never downloaded here: pass the ``.pth`` file torchvision publishes (downloaded on a
machine with internet access); a file under its published name is checked against the sha256
prefix in that name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from motion_relevance.models import weights as wts
from motion_relevance.models.preset import Preset, Weights
from motion_relevance.models.spec import InputSpec

#: torchvision's default video normalisation (ResNet-3D family and S3D).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class ChannelsLastToVolume:
    """``(N, T, H, W, C)`` activations (Swin3D) -> ``(N, C, T, H, W)``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 4, 1, 2, 3)


@dataclass(frozen=True)
class TokensToVolume:
    """``(N, [cls +] T*H*W, C)`` token activations (MViT) -> ``(N, C, T, H, W)``."""

    thw: tuple[int, int, int]
    cls_token: bool = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.cls_token:
            x = x[:, 1:]
        n, _, c = x.shape
        return x.reshape(n, *self.thw, c).permute(0, 4, 1, 2, 3)


def _build(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        """The untrained torchvision architecture (never downloads)."""
        from torchvision.models import video

        return getattr(video, name)(weights=None, num_classes=num_classes)

    return build


def _reader(url: str) -> Callable[[Path], dict[str, torch.Tensor]]:
    official = url.rsplit("/", 1)[-1]

    def read(path: Path) -> dict[str, torch.Tensor]:
        """torchvision names its files ``<arch>-<sha256 prefix>.pth``: the published file is
        checked against that prefix before it is read."""
        if path.name == official:
            wts.verify_file_digest(path, official.rsplit("-", 1)[-1].split(".")[0])
        return wts.read_checkpoint(path)

    return read


def _preset(
    name: str, description: str, url: str, *, frames: int, size: tuple[int, int], resize: int | tuple[int, int],
    mean: tuple[float, float, float], std: tuple[float, float, float], cam_layer: str, min_frames: int | None,
    head: str, cam_reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Preset:
    spec = InputSpec(
        frames=frames, size=size, resize=resize, mean=mean, std=std, scale=1.0 / 255.0,
        cam_layer=cam_layer, cam_reshape=cam_reshape, min_frames=min_frames, description=description,
    )  # fmt: skip
    weights = Weights(
        spec=spec,
        num_classes=400,
        labels="kinetics400",
        licence="BSD-3-Clause (torchvision)",
        source="user",
        location=url,
        hint=f"download {url} (torchvision's KINETICS400_V1 weights) on a machine with internet access",
    )
    return Preset(name, description, _build(name), weights, head, read_file=_reader(url))


#: The input of torchvision's 18-layer video ResNets.
_RESNET_18 = dict(
    frames=16, size=(112, 112), resize=(128, 171), mean=KINETICS_MEAN, std=KINETICS_STD,
    cam_layer="layer4", min_frames=1, head="fc.weight",
)  # fmt: skip

#: The torchvision presets with the input specs torchvision documents for ``KINETICS400_V1``.
PRESETS: tuple[Preset, ...] = (
    *(
        _preset(name, f"torchvision {title}, Kinetics-400", f"https://download.pytorch.org/models/{name}-{digest}.pth", **_RESNET_18)
        for name, title, digest in (
            ("r3d_18", "R3D-18 (3D ResNet)", "b3b3357e"),
            ("mc3_18", "MC3-18 (mixed 3D/2D convolutions)", "a90a0ba3"),
            ("r2plus1d_18", "R(2+1)D-18 (factorised space/time convolutions)", "91a641e6"),
        )
    ),
    _preset(
        "s3d", "torchvision S3D (separable Inception), Kinetics-400",
        "https://download.pytorch.org/models/s3d-d76dad2f.pth",
        frames=128, size=(224, 224), resize=(256, 256), mean=KINETICS_MEAN, std=KINETICS_STD,
        cam_layer="features", min_frames=14, head="classifier.1.weight",
    ),
    _preset(
        "mvit_v2_s", "torchvision MViT-v2-S (multiscale vision transformer), Kinetics-400",
        "https://download.pytorch.org/models/mvit_v2_s-ae3be167.pth",
        frames=16, size=(224, 224), resize=256, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225),
        # The head reads only the class token after the last block, so Grad-CAM uses the
        # last block's input norm, where every token still carries gradient. 16x224x224
        # input -> 8x7x7 tokens in the last stage.
        cam_layer="blocks.15.norm1", min_frames=None, head="head.1.weight",
        cam_reshape=TokensToVolume((8, 7, 7)),
    ),
    _preset(
        "swin3d_t", "torchvision Video Swin-T, Kinetics-400",
        "https://download.pytorch.org/models/swin3d_t-7615ae03.pth",
        frames=32, size=(224, 224), resize=256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        cam_layer="norm", min_frames=1, head="head.weight",
        cam_reshape=ChannelsLastToVolume(),
    ),
)  # fmt: skip


__all__ = ["KINETICS_MEAN", "KINETICS_STD", "PRESETS", "ChannelsLastToVolume", "TokensToVolume"]
