"""Relevance heatmaps over video frames: matplotlib colormaps, alpha blending, crop-box mapping.

Signed relevance uses a diverging colormap (blue negative, red positive) and magnitudes a
sequential one. The colour encodes the value and the opacity its size, so zero relevance is
fully transparent and the frame shows through. Maps computed at the model's input resolution
are resized onto the part of the original frame the model saw (``InputSpec.crop_box``); the
rest of the frame is dimmed so the viewer sees what was cropped away.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import matplotlib
import numpy as np

from motion_relevance.errors import InvalidInputError

#: Colormap for signed relevance (negative blue, zero white, positive red).
DIVERGING = "RdBu_r"
#: Colormap for magnitudes (|relevance|, temporal derivative).
SEQUENTIAL = "inferno"
#: Opacity of the strongest relevance.
ALPHA = 0.75
#: Display curve: ``x = sign(v) * min(1, |v| / vmax) ** GAMMA`` sets both the colour and the
#: opacity ``alpha * |x|``; < 1 lifts weak relevance. At 0.5 about twice as many voxels of
#: heavy-tailed maps (saliency, integrated gradients) reach an opacity of 0.2 as at 0.8.
GAMMA = 0.5
#: Percentile of |relevance| that maps to the end of the colormap, clipping above: robust to a
#: few outliers, so maps with a heavy tail (saliency, integrated gradients) stay visible.
PERCENTILE = 99.5


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """uint8 ``(256, 3)`` RGB lookup table of a matplotlib colormap (read-only)."""
    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise InvalidInputError(f"unknown matplotlib colormap {name!r}; e.g. {DIVERGING!r} or {SEQUENTIAL!r}") from None
    lut = np.ascontiguousarray(cmap(np.linspace(0.0, 1.0, 256), bytes=True)[:, :3])
    lut.setflags(write=False)
    return lut


def robust_max(heat: np.ndarray, percentile: float = PERCENTILE) -> float:
    """The ``percentile`` of ``|heat|`` (falls back to the maximum, then to 1 for all-zero maps)."""
    a = np.abs(np.asarray(heat, dtype=np.float32))
    if a.size == 0:
        return 1.0
    v = float(np.percentile(a, percentile))
    if v <= 0:
        v = float(a.max())
    return v if v > 0 and np.isfinite(v) else 1.0


class DisplayScale:
    """The ``percentile`` of ``|x|`` over many maps, added one at a time (one method over a video).

    A histogram of ``log2|x|`` with ``BINS_PER_OCTAVE`` bins per octave keeps memory constant;
    the value returned is the upper edge of the bin holding the percentile (at most 1.1 % above
    the exact percentile, never above the largest value). Zeros count as voxels; when the
    percentile falls among them, the largest value is used (as in ``robust_max``).
    """

    BINS_PER_OCTAVE = 64
    _LOW, _HIGH = -160, 160  # octaves covered: float32 magnitudes and beyond

    def __init__(self, percentile: float = PERCENTILE) -> None:
        if not 0 <= percentile <= 100:
            raise InvalidInputError(f"percentile must be between 0 and 100, got {percentile!r}")
        self.percentile = float(percentile)
        self.counts = np.zeros((self._HIGH - self._LOW) * self.BINS_PER_OCTAVE, dtype=np.int64)
        self.zeros = 0
        self.peak = 0.0

    def add(self, heat: np.ndarray) -> None:
        """Count the magnitudes of one map (any shape)."""
        a = np.abs(np.asarray(heat, dtype=np.float64)).reshape(-1)
        nonzero = a[a > 0]
        self.zeros += a.size - nonzero.size
        if nonzero.size:
            self.peak = max(self.peak, float(nonzero.max()))
            index = np.floor((np.log2(nonzero) - self._LOW) * self.BINS_PER_OCTAVE).astype(np.int64)
            np.clip(index, 0, self.counts.size - 1, out=index)
            self.counts += np.bincount(index, minlength=self.counts.size)

    def value(self) -> float:
        """The percentile (1 when every value was zero)."""
        if self.peak <= 0 or not np.isfinite(self.peak):
            return 1.0
        rank = self.percentile / 100 * (self.zeros + int(self.counts.sum()))
        if rank <= self.zeros:
            return self.peak
        b = int(np.searchsorted(np.cumsum(self.counts), rank - self.zeros))
        return min(self.peak, float(2.0 ** ((b + 1) / self.BINS_PER_OCTAVE + self._LOW)))


def colorize(
    heat: np.ndarray,
    *,
    signed: bool = True,
    vmax: float | None = None,
    cmap: str | None = None,
    alpha: float = ALPHA,
) -> np.ndarray:
    """Relevance ``(..., H, W)`` -> float32 RGBA ``(..., H, W, 4)``: colour by value, alpha by size."""
    heat = np.asarray(heat, dtype=np.float32)
    if not np.isfinite(heat).all():
        raise InvalidInputError("relevance to draw contains NaN or Inf values")
    vmax = robust_max(heat) if vmax is None else float(vmax)
    if not vmax > 0:
        raise InvalidInputError(f"vmax must be > 0, got {vmax}")
    lut = colormap_lut(cmap or (DIVERGING if signed else SEQUENTIAL))
    x = heat / vmax
    x = np.clip(x, -1.0, 1.0) if signed else np.clip(x, 0.0, 1.0)
    x = np.sign(x) * np.abs(x) ** np.float32(GAMMA)
    index = np.rint((x + 1.0) * 127.5 if signed else x * 255.0).astype(np.uint8)
    rgba = np.empty((*heat.shape, 4), dtype=np.float32)
    rgba[..., :3] = lut[index]
    rgba[..., 3] = alpha * np.abs(x)
    return rgba


def blend(frames: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Alpha-blend float RGBA (colour 0..255, alpha 0..1) over uint8 RGB frames of the same size."""
    if frames.shape[:-1] != rgba.shape[:-1]:
        raise InvalidInputError(f"overlay size {rgba.shape[:-1]} differs from frames {frames.shape[:-1]}")
    a = rgba[..., 3:4]
    out = frames.astype(np.float32) * (1.0 - a) + rgba[..., :3] * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _box_pixels(box: tuple[float, float, float, float], height: int, width: int) -> tuple[int, int, int, int]:
    top, left, h, w = box
    y0, x0 = max(0, round(top)), max(0, round(left))
    y1, x1 = min(height, round(top + h)), min(width, round(left + w))
    if y1 <= y0 or x1 <= x0:
        raise InvalidInputError(f"crop box {box} lies outside a {height}x{width} frame")
    return y0, x0, y1, x1


def resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``(T, h, w)`` float maps to ``(T, height, width)`` (OpenCV)."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[1:] == (height, width):
        return maps
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps])


def overlay(
    frames: np.ndarray,
    heat: np.ndarray,
    *,
    box: tuple[float, float, float, float] | None = None,
    signed: bool = True,
    vmax: float | None = None,
    cmap: str | None = None,
    alpha: float = ALPHA,
    dim_outside: float = 0.45,
) -> np.ndarray:
    """Blend heatmaps ``(T, h, w)`` over uint8 frames ``(T, H, W, 3)`` at the frames' resolution
    (or one map ``(h, w)`` over one frame ``(H, W, 3)``).

    ``box``: ``(top, left, height, width)`` of the model's view in frame pixels (from
    ``InputSpec.crop_box``); the maps are resized to fill it and the frame outside it is darkened
    by ``dim_outside``. ``vmax``: value drawn at full colour (default: a robust maximum of
    ``heat``).
    """
    frames = np.asarray(frames)
    heat = np.asarray(heat, dtype=np.float32)
    single = frames.ndim == 3
    if single:
        frames, heat = frames[None], heat[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InvalidInputError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if heat.ndim != 3 or heat.shape[0] != frames.shape[0]:
        raise InvalidInputError(f"heat must be (T, h, w) with T={frames.shape[0]}, got {heat.shape}")
    _, height, width, _ = frames.shape
    vmax = robust_max(heat) if vmax is None else vmax
    y0, x0, y1, x1 = _box_pixels(box or (0, 0, height, width), height, width)
    out = frames.copy()
    if dim_outside and (y0, x0, y1, x1) != (0, 0, height, width):
        out = np.rint(out * (1.0 - dim_outside)).astype(np.uint8)
    rgba = colorize(resize_maps(heat, y1 - y0, x1 - x0), signed=signed, vmax=vmax, cmap=cmap, alpha=alpha)
    out[:, y0:y1, x0:x1] = blend(frames[:, y0:y1, x0:x1], rgba)
    return out[0] if single else out


def label(image: np.ndarray, text: str, *, scale: float | None = None) -> np.ndarray:
    """Write ``text`` on a dark band at the top-left of a uint8 RGB image (returns a copy)."""
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    scale = scale or max(0.35, min(1.0, w / 900))
    thickness = max(1, round(scale * 1.6))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(3, round(6 * scale))
    y1, x1 = min(h, th + base + 2 * pad), min(w, tw + 2 * pad)
    out[:y1, :x1] = (out[:y1, :x1] * 0.35).astype(np.uint8)
    cv2.putText(out, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


__all__ = [
    "ALPHA",
    "DIVERGING",
    "GAMMA",
    "PERCENTILE",
    "SEQUENTIAL",
    "DisplayScale",
    "blend",
    "colorize",
    "colormap_lut",
    "label",
    "overlay",
    "resize_maps",
    "robust_max",
]
