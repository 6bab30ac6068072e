"""InputSpec: everything needed to feed frames to a model, travelling with the model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from motion_relevance.errors import InvalidInputError, UnknownNameError


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its clips: size, length, value scaling, labels and CAM layer.

    Pixel values ``v`` (uint8, 0..255) become ``(v * scale - mean[c]) / std[c]``.
    """

    frames: int
    """Frames per clip (T) the model was trained on."""
    size: tuple[int, int]
    """(H, W) of the model input, after resize and centre crop."""
    resize: int | tuple[int, int] | None = None
    """Short side resized to this (int), or exact (H, W) resize, before the centre crop;
    None resizes straight to ``size``."""
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0 / 255.0
    channel_order: str = "RGB"
    labels: tuple[str, ...] | None = None
    cam_layer: str | None = None
    """Dotted name of the default Grad-CAM layer (a module of the model)."""
    cam_reshape: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)
    """Turns the CAM layer's output into (N, C, T, H, W) (token outputs of transformers)."""
    min_frames: int | None = None
    """Smallest T the model accepts (temporally fully convolutional models); None: exactly
    ``frames``."""
    description: str = ""

    @property
    def value_range(self) -> tuple[float, float]:
        """(lowest, highest) value any input voxel can take after preprocessing."""
        lows = [(0.0 * self.scale - m) / s for m, s in zip(self.mean, self.std, strict=True)]
        highs = [(255.0 * self.scale - m) / s for m, s in zip(self.mean, self.std, strict=True)]
        return (min(lows), max(highs))

    @property
    def num_classes(self) -> int | None:
        return None if self.labels is None else len(self.labels)

    def label_index(self, name: str) -> int:
        """Class index of a label name (exact, then case-insensitive match)."""
        if self.labels is None:
            raise UnknownNameError(f"this model has no label names; give the target as an integer, not {name!r}")
        if name in self.labels:
            return self.labels.index(name)
        lowered = [label.lower() for label in self.labels]
        if name.lower() in lowered:
            return lowered.index(name.lower())
        raise UnknownNameError(f"unknown label {name!r}; see the model's labels (e.g. {self.labels[0]!r})")

    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 frames ``(T, H, W, 3)`` or ``(N, T, H, W, 3)`` RGB -> float32 ``(N, 3, T, h, w)``."""
        x = torch.as_tensor(frames)
        if x.ndim == 4:
            x = x.unsqueeze(0)
        if x.ndim != 5 or x.shape[-1] != 3:
            raise InvalidInputError(
                f"frames must be uint8 (T, H, W, 3) or (N, T, H, W, 3) RGB, got shape {tuple(x.shape)}"
            )
        if x.dtype != torch.uint8:
            raise InvalidInputError(f"frames must be uint8, got {x.dtype}")
        n, t, h, w, _ = x.shape
        if t == 0 or h == 0 or w == 0:
            raise InvalidInputError(f"frames are empty: shape {tuple(x.shape)}")
        if self.channel_order == "BGR":
            x = x.flip(-1)
        x = x.reshape(n * t, h, w, 3).float().permute(0, 3, 1, 2)  # converting before permuting: same values, faster
        x = self._resize_crop(x)
        x = x * self.scale
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - mean) / std
        oh, ow = x.shape[-2:]
        return x.reshape(n, t, 3, oh, ow).permute(0, 2, 1, 3, 4).contiguous()

    def _resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        """Resize (short side or exact) then centre-crop ``x`` shaped (B, 3, H, W)."""
        h, w = x.shape[-2:]
        th, tw = self.size
        if self.resize is None:
            target = (th, tw)
        elif isinstance(self.resize, int):
            short = min(h, w)
            target = (round(h * self.resize / short), round(w * self.resize / short))
        else:
            target = tuple(self.resize)
        if target != (h, w):
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=True)
            x = x.clamp_(0.0, 255.0)
        h, w = x.shape[-2:]
        if h < th or w < tw:
            x = F.interpolate(x, size=(max(h, th), max(w, tw)), mode="bilinear", align_corners=False)
            h, w = x.shape[-2:]
        top, left = (h - th) // 2, (w - tw) // 2
        return x[..., top : top + th, left : left + tw]

    def crop_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """(top, left, height, width) of the model's view in original-frame pixels."""
        th, tw = self.size
        if self.resize is None:
            return (0.0, 0.0, float(height), float(width))
        if isinstance(self.resize, int):
            f = self.resize / min(height, width)
            rh, rw = round(height * f), round(width * f)
        else:
            rh, rw = self.resize
        fh, fw = height / rh, width / rw
        top, left = (rh - th) // 2, (rw - tw) // 2
        return (top * fh, left * fw, th * fh, tw * fw)


def check_clip_length(spec: InputSpec, frames: int) -> None:
    """Raise when a clip of ``frames`` frames cannot be fed to a model with ``spec``."""
    lo = spec.min_frames if spec.min_frames is not None else spec.frames
    if frames < lo or (spec.min_frames is None and frames != spec.frames):
        want = f"at least {lo}" if spec.min_frames is not None else f"exactly {spec.frames}"
        raise InvalidInputError(f"this model needs {want} frames per clip, got {frames}")


def labels_from_lines(lines: Sequence[str]) -> tuple[str, ...]:
    """Label tuple from text lines, ignoring blank lines."""
    return tuple(line.strip() for line in lines if line.strip())
