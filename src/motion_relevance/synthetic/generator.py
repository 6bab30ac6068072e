"""Procedural clips with per-voxel ground truth of what moves and of each static object.

Every clip is a textured static background, static objects and one moving object, drawn from a
seed (``numpy.random.default_rng([seed, split, variant, index])``), so any clip can be
regenerated on its own and nothing large is stored. Three variants:

- ``motion``: the label is the direction the moving object translates in (right, left, down,
  up). It moves on a torus (wrapping at the borders), its shape, colour, texture, speed and
  start are random, so every single frame has the same distribution whatever the label: a
  frozen clip carries no label information.
- ``appearance``: the label is the shape and colour of a static object (red disc, green
  square, blue triangle, yellow cross); a moving ring and a static ring, both in muted colours,
  are distractors that carry no label information.
- ``shortcut``: as ``motion``, plus a static colour patch whose colour agrees with the label in
  ``cue_agreement`` of the clips (0.9 for ``train``/``val``) and is uniformly random for
  ``test``.

Labels are balanced: clip ``i`` has label ``i % 4``.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from motion_relevance.errors import InvalidInputError, UnknownNameError
from motion_relevance.synthetic.masks import LABEL_SHAPES, shape_mask, temporal_dilation

VARIANTS: tuple[str, ...] = ("motion", "appearance", "shortcut")
SPLITS: tuple[str, ...] = ("train", "val", "test")
FRAMES = 16
SIZE = 64

MOTION_LABELS: tuple[str, ...] = ("right", "left", "down", "up")
_DIRECTIONS: tuple[tuple[int, int], ...] = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx)
#: Four distinct colours (red, green, blue, yellow): the ``appearance`` key object's colour
#: per label, and the ``shortcut`` cue colour per label.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 40, 40),
    (40, 200, 60),
    (50, 80, 230),
    (235, 220, 40),
)
CUE_COLOURS = PALETTE
APPEARANCE_LABELS: tuple[str, ...] = tuple(
    f"{colour} {shape}" for colour, shape in zip(("red", "green", "blue", "yellow"), LABEL_SHAPES, strict=True)
)
TRAIN_CUE_AGREEMENT = 0.9

#: Segmentation values: 0 background, 1 the moving object, 2 + k the k-th static object.
BACKGROUND, MOVING = 0, 1


def labels(variant: str) -> tuple[str, ...]:
    """Class names of a variant, in label order."""
    _check_variant(variant)
    return APPEARANCE_LABELS if variant == "appearance" else MOTION_LABELS


@dataclass(frozen=True)
class SyntheticBatch:
    """A batch of generated clips and their ground truth (numpy arrays, N clips)."""

    frames: np.ndarray
    """uint8 ``(N, T, H, W, 3)`` RGB."""
    labels: np.ndarray
    """int64 ``(N,)`` class index (see :func:`labels`)."""
    motion_mask: np.ndarray
    """bool ``(N, T, H, W)``: where the moving object is, was (t-1) or will be (t+1)."""
    segmentation: np.ndarray
    """uint8 ``(N, T, H, W)``: 0 background, 1 moving object (on top), 2+k static object k."""
    key_mask: np.ndarray
    """bool ``(N, T, H, W)``: the static object that carries label information (the
    ``appearance`` key shape, the ``shortcut`` colour cue); all False for ``motion``."""
    cues: np.ndarray
    """int64 ``(N,)``: the cue colour's class for ``shortcut``, -1 otherwise."""
    directions: np.ndarray
    """int64 ``(N,)``: the moving object's direction class (``motion``/``shortcut``; equal to
    the label unless ``motion_agreement`` was given), -1 for ``appearance``."""
    variant: str
    split: str
    seed: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def generate(
    variant: str,
    n: int,
    *,
    split: str = "test",
    seed: int = 0,
    start: int = 0,
    frames: int = FRAMES,
    size: int = SIZE,
    cue_agreement: float | np.ndarray | None = None,
    motion_agreement: float | np.ndarray | None = None,
) -> SyntheticBatch:
    """Clips ``start .. start + n - 1`` of ``variant``/``split``, deterministic from ``seed``.

    ``cue_agreement`` (``shortcut`` only): probability that the cue colour matches the label;
    None means 0.9 for ``train``/``val`` and chance (uniformly random cue) for ``test``.

    ``motion_agreement`` (``shortcut`` only): probability that the moving object's direction
    matches the label (otherwise one of the other directions). None keeps the classic variant
    (direction = label). When it is given, both agreements may also be per-clip arrays of
    shape ``(n,)``, and the direction and cue are drawn from a side stream
    (``default_rng([seed, split, variant, index, 1])``), so the same clip index renders the
    same scene whatever the agreements: only the direction and the cue colour change. That is
    what the graded-reliance models train on and what their interventions use.
    """
    _check_variant(variant)
    if split not in SPLITS:
        raise UnknownNameError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"n must be a positive integer, got {n!r}")
    if start < 0 or seed < 0:
        raise InvalidInputError(f"start and seed must be >= 0, got start={start}, seed={seed}")
    if frames < 2:
        raise InvalidInputError(f"frames must be >= 2, got {frames}")
    if size < 32:
        raise InvalidInputError(f"size must be >= 32 pixels, got {size}")
    k = len(labels(variant))
    if cue_agreement is None:
        cue_agreement = 1.0 / k if split == "test" else TRAIN_CUE_AGREEMENT
    graded = motion_agreement is not None
    if graded and variant != "shortcut":
        raise InvalidInputError("motion_agreement applies to the shortcut variant only")
    cue_p = _agreement(cue_agreement, n, "cue_agreement", per_clip=graded)
    motion_p = _agreement(motion_agreement, n, "motion_agreement", per_clip=True) if graded else None

    out_frames = np.empty((n, frames, size, size, 3), dtype=np.uint8)
    seg = np.empty((n, frames, size, size), dtype=np.uint8)
    key = np.zeros((n, frames, size, size), dtype=bool)
    label_arr = np.empty(n, dtype=np.int64)
    cues = np.full(n, -1, dtype=np.int64)
    directions = np.full(n, -1, dtype=np.int64)
    vid, sid = VARIANTS.index(variant), SPLITS.index(split)
    for j in range(n):
        index = start + j
        rng = np.random.default_rng([seed, sid, vid, index])
        label = index % k
        label_arr[j] = label
        direction = None
        if motion_p is not None:
            side = np.random.default_rng([seed, sid, vid, index, 1])
            cue = _cue(side, label, k, float(cue_p[j]))
            direction = _cue(side, label, k, float(motion_p[j]))
        else:
            cue = _cue(rng, label, k, float(cue_p[0])) if variant == "shortcut" else -1
        cues[j] = cue
        directions[j] = label if direction is None and variant != "appearance" else (
            -1 if direction is None else direction)
        out_frames[j], seg[j], key_index = _render(variant, rng, label, cue, frames, size, direction)
        if key_index is not None:
            key[j] = seg[j] == key_index
    motion = temporal_dilation(seg == MOVING)
    return SyntheticBatch(
        frames=out_frames,
        labels=label_arr,
        motion_mask=motion,
        segmentation=seg,
        key_mask=key,
        cues=cues,
        directions=directions,
        variant=variant,
        split=split,
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise UnknownNameError(
            f"unknown synthetic variant {variant!r}; choose one of {', '.join(VARIANTS)}"
        )


def _agreement(value: float | np.ndarray, n: int, name: str, *, per_clip: bool) -> np.ndarray:
    """A probability (or ``n`` per-clip probabilities) checked to lie in [0, 1]."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1 and not per_clip:
        raise InvalidInputError(f"{name} must be a number unless motion_agreement is given")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise InvalidInputError(f"{name} must be a number or an array of shape ({n},), got shape {arr.shape}")
    if not np.all((arr >= 0.0) & (arr <= 1.0)):
        raise InvalidInputError(f"{name} must be in [0, 1], got {value}")
    return np.broadcast_to(arr, (n,))


def _cue(rng: np.random.Generator, label: int, k: int, agreement: float) -> int:
    """The label with probability ``agreement``, else one of the other classes uniformly."""
    if rng.random() < agreement:
        return label
    return int((label + rng.integers(1, k)) % k)


def _vivid_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255.0


def _texture(rng: np.random.Generator, size: int, coarse: float, fine: float) -> np.ndarray:
    """Zero-mean colour texture ``(size, size, 3)``: smooth blobs plus pixel noise."""
    grid = rng.normal(0.0, coarse, (4, 4, 3)).astype(np.float32)
    smooth = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return smooth + rng.normal(0.0, fine, (size, size, 3)).astype(np.float32)


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.5, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255.0


def _sprite(
    rng: np.random.Generator, shape: str, size: int, colour: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mask (s, s), rgb (s, s, 3)) of a textured object (random vivid colour by default)."""
    mask = shape_mask(shape, size)
    base = _vivid_colour(rng) if colour is None else np.asarray(colour, dtype=np.float32)
    rgb = base[None, None, :] + _texture(rng, size, 25.0, 20.0)
    return mask, rgb


def _object_size(rng: np.random.Generator, size: int) -> int:
    return max(6, round(size * rng.uniform(0.19, 0.28)))


def _place(
    rng: np.random.Generator, s: int, size: int, taken: list[tuple[int, int, int]]
) -> tuple[int, int]:
    """Top-left corner for an ``s``-sized static object, avoiding earlier ones if possible."""
    for _ in range(50):
        y, x = (int(v) for v in rng.integers(0, size - s + 1, size=2))
        if all(y + s + 2 <= ty or ty + ts + 2 <= y or x + s + 2 <= tx or tx + ts + 2 <= x
               for ty, tx, ts in taken):
            break
    taken.append((y, x, s))
    return y, x


def _render(
    variant: str,
    rng: np.random.Generator,
    label: int,
    cue: int,
    frames: int,
    size: int,
    direction: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Draw one clip; returns frames (T, H, W, 3) uint8, segmentation (T, H, W), key value.

    ``direction`` overrides the moving object's direction (default: the label)."""
    base = rng.uniform(60.0, 190.0, 3).astype(np.float32)
    canvas = base[None, None, :] + _texture(rng, size, 30.0, 12.0)
    seg_static = np.zeros((size, size), dtype=np.uint8)

    # Static objects: (shape, is_key); the cue patch is drawn separately.
    moving_colour: np.ndarray | None = None
    if variant == "appearance":
        statics = [(LABEL_SHAPES[label], True), ("ring", False)]
        moving_shape = "ring"
        moving_colour = _muted_colour(rng)
        direction = int(rng.integers(0, 4))
    else:
        statics = [(str(rng.choice(LABEL_SHAPES)), False) for _ in range(2)]
        moving_shape = str(rng.choice(LABEL_SHAPES))
        direction = label if direction is None else direction
    taken: list[tuple[int, int, int]] = []
    key_value: int | None = None
    value = 2
    for shape, is_key in statics:
        s = _object_size(rng, size)
        if variant == "appearance":
            colour = np.array(PALETTE[label], np.float32) if is_key else _muted_colour(rng)
        else:
            colour = None
        mask, rgb = _sprite(rng, shape, s, colour)
        y, x = _place(rng, s, size, taken)
        region = canvas[y : y + s, x : x + s]
        region[mask] = rgb[mask]
        seg_static[y : y + s, x : x + s][mask] = value
        if is_key:
            key_value = value
        value += 1
    if variant == "shortcut":
        s = max(4, size // 8)
        y, x = _place(rng, s, size, taken)
        patch = np.array(CUE_COLOURS[cue], dtype=np.float32)[None, None, :]
        canvas[y : y + s, x : x + s] = patch + rng.normal(0.0, 6.0, (s, s, 3))
        seg_static[y : y + s, x : x + s] = value
        key_value = value

    # The moving object wraps around the borders (a torus), so its position in any one frame
    # is uniform whatever the direction.
    s = _object_size(rng, size)
    mask, rgb = _sprite(rng, moving_shape, s, moving_colour)
    layer_mask = np.zeros((size, size), dtype=bool)
    layer_rgb = np.zeros((size, size, 3), dtype=np.float32)
    layer_mask[:s, :s] = mask
    layer_rgb[:s, :s] = rgb
    speed = int(rng.integers(1, 4))
    dy, dx = (speed * d for d in _DIRECTIONS[direction])
    y0, x0 = (int(v) for v in rng.integers(0, size, size=2))
    t = np.arange(frames)
    rows = (np.arange(size)[None, :] - (y0 + dy * t)[:, None]) % size  # (T, H)
    cols = (np.arange(size)[None, :] - (x0 + dx * t)[:, None]) % size  # (T, W)
    moving = layer_mask[rows[:, :, None], cols[:, None, :]]  # (T, H, W)
    moving_rgb = layer_rgb[rows[:, :, None], cols[:, None, :]]  # (T, H, W, 3)

    video = np.where(moving[..., None], moving_rgb, canvas[None])
    seg = np.where(moving, np.uint8(MOVING), seg_static[None])
    return np.clip(video, 0.0, 255.0).round().astype(np.uint8), seg, key_value


__all__ = [
    "APPEARANCE_LABELS",
    "CUE_COLOURS",
    "FRAMES",
    "MOTION_LABELS",
    "PALETTE",
    "SIZE",
    "SPLITS",
    "TRAIN_CUE_AGREEMENT",
    "VARIANTS",
    "InterventionClips",
    "SyntheticBatch",
    "generate",
    "intervention_clips",
    "labels",
]


@dataclass(frozen=True)
class InterventionClips:
    """Three renderings of the same ``shortcut`` scenes for measuring a model's reliance.

    ``agree``: the direction and the cue colour both carry the label; ``motion_wrong``: the
    same scenes with the moving object going in another direction (cue still right);
    ``cue_wrong``: the same scenes with another cue colour (direction still right).
    """

    agree: SyntheticBatch
    motion_wrong: SyntheticBatch
    cue_wrong: SyntheticBatch


def intervention_clips(
    n: int, *, split: str = "test", seed: int = 0, start: int = 0, frames: int = FRAMES,
    size: int = SIZE,
) -> InterventionClips:
    """``n`` ``shortcut`` scenes rendered three ways (see :class:`InterventionClips`)."""
    def render(motion: float, cue: float) -> SyntheticBatch:
        return generate("shortcut", n, split=split, seed=seed, start=start, frames=frames,
                        size=size, motion_agreement=motion, cue_agreement=cue)

    return InterventionClips(agree=render(1.0, 1.0), motion_wrong=render(0.0, 1.0),
                             cue_wrong=render(1.0, 0.0))
