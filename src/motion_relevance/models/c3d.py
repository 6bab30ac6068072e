"""C3D (Tran et al. 2015) as used by the selective-relevance paper: 16x112x112 clips, 101 classes.

Layer names follow the Caffe model and the common PyTorch ports (``conv1`` ... ``conv5b``,
``fc6`` ... ``fc8``), so their checkpoints load as they are. There are no public weights for
this preset: pass a checkpoint, or ask for random weights explicitly.
"""

from __future__ import annotations

import torch
from torch import nn

from motion_relevance.errors import InvalidInputError
from motion_relevance.models.preset import Preset, Weights
from motion_relevance.models.spec import InputSpec

#: Clip length and crop size C3D was trained with.
FRAMES = 16
CROP = 112
#: Frames are resized to 128x171 before the centre crop (as in the C3D paper).
RESIZE = (128, 171)
#: Per-channel RGB means subtracted from 0..255 pixel values (no scaling, std 1).
MEAN = (90.25, 96.77, 101.41)
FC6_IN = 8192


class C3D(nn.Module):
    """Eight 3x3x3 conv + ReLU layers with five max-pools, then fc6/fc7 (4096) and fc8."""

    def __init__(self, num_classes: int = 101, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.conv2 = nn.Conv3d(64, 128, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool3d(2, 2)
        self.conv3a = nn.Conv3d(128, 256, 3, padding=1)
        self.relu3a = nn.ReLU()
        self.conv3b = nn.Conv3d(256, 256, 3, padding=1)
        self.relu3b = nn.ReLU()
        self.pool3 = nn.MaxPool3d(2, 2)
        self.conv4a = nn.Conv3d(256, 512, 3, padding=1)
        self.relu4a = nn.ReLU()
        self.conv4b = nn.Conv3d(512, 512, 3, padding=1)
        self.relu4b = nn.ReLU()
        self.pool4 = nn.MaxPool3d(2, 2)
        self.conv5a = nn.Conv3d(512, 512, 3, padding=1)
        self.relu5a = nn.ReLU()
        self.conv5b = nn.Conv3d(512, 512, 3, padding=1)
        self.relu5b = nn.ReLU()
        self.pool5 = nn.MaxPool3d(2, 2, padding=(0, 1, 1))
        self.fc6 = nn.Linear(FC6_IN, 4096)
        self.relu6 = nn.ReLU()
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)
        self.relu7 = nn.ReLU()
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or tuple(x.shape[1:]) != (3, FRAMES, CROP, CROP):
            raise InvalidInputError(
                f"C3D needs clips of {FRAMES}x{CROP}x{CROP} (N, 3, T, H, W), got {tuple(x.shape)}; "
                "preprocess them with the model's InputSpec"
            )
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.pool3(self.relu3b(self.conv3b(self.relu3a(self.conv3a(x)))))
        x = self.pool4(self.relu4b(self.conv4b(self.relu4a(self.conv4a(x)))))
        x = self.pool5(self.relu5b(self.conv5b(self.relu5a(self.conv5a(x)))))
        x = torch.flatten(x, 1)
        x = self.drop6(self.relu6(self.fc6(x)))
        x = self.drop7(self.relu7(self.fc7(x)))
        return self.fc8(x)


DESCRIPTION = "C3D as in the selective-relevance paper (UCF-101 classes); bring your own weights"

PRESETS: tuple[Preset, ...] = (
    Preset(
        name="c3d",
        description=DESCRIPTION,
        architecture=C3D,
        weights=Weights(
            spec=InputSpec(
                frames=FRAMES,
                size=(CROP, CROP),
                resize=RESIZE,
                mean=MEAN,
                std=(1.0, 1.0, 1.0),
                scale=1.0,
                cam_layer="conv5b",
                description=DESCRIPTION,
            ),
            num_classes=101,
            labels="ucf101",
            licence="the checkpoint's own",
            source="user",
            location="a C3D checkpoint (keys conv1 ... fc8), trained or converted by the user",
            hint="train C3D or convert a published C3D checkpoint (keys conv1 ... fc8)",
        ),
        head="fc8.weight",
    ),
)

__all__ = ["C3D", "CROP", "FRAMES", "MEAN", "PRESETS", "RESIZE"]
