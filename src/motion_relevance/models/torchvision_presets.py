"""torchvision's Kinetics-400 video classifiers with their published input specs.

The input specs are the ones torchvision documents for its ``KINETICS400_V1`` weights (crop,
resize, mean/std, training clip length). The weights themselves are never downloaded here: pass
the ``.pth`` file torchvision publishes (downloaded on a machine with internet access).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

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


@dataclass(frozen=True)
class TorchvisionPreset:
    """One torchvision video model: builder name, weights enum, input spec fields, CAM layer."""

    name: str
    weights_enum: str
    description: str
    frames: int
    size: tuple[int, int]
    resize: int | tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    cam_layer: str
    min_frames: int | None
    head: str
    """State-dict key of the classifier weight (its first dimension is the class count)."""
    cam_reshape: Callable[[torch.Tensor], torch.Tensor] | None = None

    def spec(self, labels: tuple[str, ...] | None) -> InputSpec:
        return InputSpec(
            frames=self.frames,
            size=self.size,
            resize=self.resize,
            mean=self.mean,
            std=self.std,
            scale=1.0 / 255.0,
            labels=labels,
            cam_layer=self.cam_layer,
            cam_reshape=self.cam_reshape,
            min_frames=self.min_frames,
            description=self.description,
        )

    def build(self, num_classes: int) -> nn.Module:
        """The untrained architecture (never downloads)."""
        from torchvision.models import video

        return getattr(video, self.name)(weights=None, num_classes=num_classes)

    def weights_info(self) -> tuple[str, str]:
        """(URL, file name) torchvision publishes the Kinetics-400 weights under."""
        from torchvision.models import video

        url = getattr(video, self.weights_enum).KINETICS400_V1.url
        return url, url.rsplit("/", 1)[-1]


TORCHVISION_PRESETS: dict[str, TorchvisionPreset] = {
    p.name: p
    for p in (
        TorchvisionPreset(
            name="r3d_18",
            weights_enum="R3D_18_Weights",
            description="torchvision R3D-18 (3D ResNet), Kinetics-400",
            frames=16, size=(112, 112), resize=(128, 171), mean=KINETICS_MEAN, std=KINETICS_STD,
            cam_layer="layer4", min_frames=1, head="fc.weight",
        ),
        TorchvisionPreset(
            name="mc3_18",
            weights_enum="MC3_18_Weights",
            description="torchvision MC3-18 (mixed 3D/2D convolutions), Kinetics-400",
            frames=16, size=(112, 112), resize=(128, 171), mean=KINETICS_MEAN, std=KINETICS_STD,
            cam_layer="layer4", min_frames=1, head="fc.weight",
        ),
        TorchvisionPreset(
            name="r2plus1d_18",
            weights_enum="R2Plus1D_18_Weights",
            description="torchvision R(2+1)D-18 (factorised space/time convolutions), Kinetics-400",
            frames=16, size=(112, 112), resize=(128, 171), mean=KINETICS_MEAN, std=KINETICS_STD,
            cam_layer="layer4", min_frames=1, head="fc.weight",
        ),
        TorchvisionPreset(
            name="s3d",
            weights_enum="S3D_Weights",
            description="torchvision S3D (separable Inception), Kinetics-400",
            frames=128, size=(224, 224), resize=(256, 256), mean=KINETICS_MEAN, std=KINETICS_STD,
            cam_layer="features", min_frames=14, head="classifier.1.weight",
        ),
        TorchvisionPreset(
            name="mvit_v2_s",
            weights_enum="MViT_V2_S_Weights",
            description="torchvision MViT-v2-S (multiscale vision transformer), Kinetics-400",
            frames=16, size=(224, 224), resize=256, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225),
            # The head reads only the class token after the last block, so Grad-CAM uses the
            # last block's input norm, where every token still carries gradient. 16x224x224
            # input -> 8x7x7 tokens in the last stage.
            cam_layer="blocks.15.norm1", min_frames=None, head="head.1.weight",
            cam_reshape=TokensToVolume((8, 7, 7)),
        ),
        TorchvisionPreset(
            name="swin3d_t",
            weights_enum="Swin3D_T_Weights",
            description="torchvision Video Swin-T, Kinetics-400",
            frames=32, size=(224, 224), resize=256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
            cam_layer="norm", min_frames=1, head="head.weight",
            cam_reshape=ChannelsLastToVolume(),
        ),
    )
}  # fmt: skip


__all__ = ["TORCHVISION_PRESETS", "ChannelsLastToVolume", "TokensToVolume", "TorchvisionPreset"]
