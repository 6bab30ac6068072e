"""Every preset's ``spec.preprocess`` against an independent implementation written with PIL.

The oracle resizes each channel of each frame as a float image with PIL's bilinear filter (which
widens its kernel when shrinking, as an antialiased resize must), following the preset's rule
(short side to ``resize``, an exact ``(H, W)``, or straight to ``size``), takes the centre crop,
orders the channels, scales and normalises with NumPy. The tolerance (1e-4 of the input's value
range) is far below what a one-pixel shift of the crop, a top-left crop or swapped channels
change (each checked to exceed it on the same frames).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import motion_relevance as mr
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec, labels_from_lines


def _by_preprocessing() -> dict[str, InputSpec]:
    """One spec per distinct set of preprocessing parameters, named after all presets that
    share it (``preprocess`` reads only these fields)."""
    groups: dict[tuple, list[str]] = {}
    specs: dict[tuple, InputSpec] = {}
    for info in mr.list_models():
        s = info.spec
        key = (s.size, s.resize, s.mean, s.std, s.scale, s.channel_order)
        groups.setdefault(key, []).append(info.name)
        specs.setdefault(key, s)
    return {"+".join(names) if len(names) <= 3 else f"{names[0]}+{len(names) - 1}-more": specs[key]
            for key, names in groups.items()}


PRESETS = _by_preprocessing()
#: frame sizes (H, W): shrinking, enlarging, both orientations, square
SIZES = [(300, 400), (120, 160), (90, 50), (64, 64)]
TOL = 1e-4


def resize_rule(spec: InputSpec, h: int, w: int) -> tuple[int, int]:
    """The preset's resize target, from its documented rule (half-up rounding)."""
    if spec.resize is None:
        return spec.size
    if isinstance(spec.resize, int):
        short = min(h, w)
        return (int(h * spec.resize / short + 0.5), int(w * spec.resize / short + 0.5))
    return tuple(spec.resize)


def pil_resize(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(channel.astype(np.float32), mode="F")
    return np.asarray(image.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float64)


def oracle(spec: InputSpec, frames: np.ndarray, shift: tuple[int, int] = (0, 0), corner: bool = False,
           swap: bool = False) -> np.ndarray:
    """(N, 3, T, h, w) float64; ``shift``/``corner``/``swap`` make the wrong answers the test
    must tell apart (a crop moved by pixels, a top-left crop, reversed channels)."""
    n, t, h, w, _ = frames.shape
    th, tw = spec.size
    target = resize_rule(spec, h, w)
    order = [2, 1, 0] if (spec.channel_order == "BGR") != swap else [0, 1, 2]
    out = np.empty((n, 3, t, th, tw))
    for i in range(n):
        for f in range(t):
            for c_out, c_in in enumerate(order):
                plane = frames[i, f, :, :, c_in].astype(np.float64)
                if target != (h, w):
                    plane = pil_resize(plane, target)
                top, left = (0, 0) if corner else ((plane.shape[0] - th) // 2, (plane.shape[1] - tw) // 2)
                top, left = top + shift[0], left + shift[1]
                crop = plane[top : top + th, left : left + tw]
                out[i, c_out, f] = (crop * spec.scale - spec.mean[c_out]) / spec.std[c_out]
    return out


def unit(spec: InputSpec) -> float:
    """Width of the widest channel's value range after preprocessing."""
    lo, hi = spec.value_range
    return hi - lo


def frames_of(size: tuple[int, int], n: int = 1, t: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, t, *size, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preprocess_matches_pil_for_every_preset(name: str, size: tuple[int, int]) -> None:
    spec = PRESETS[name]
    frames = frames_of(size)
    out = spec.preprocess(frames)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (1, 3, 2, *spec.size)
    expected = oracle(spec, frames)
    err = float(np.abs(out.double().numpy() - expected).max())
    assert err <= TOL * unit(spec), f"{name} {size}: max error {err:.3g}"
    # the wrong answers exceed the tolerance by orders of magnitude
    (rh, rw), (th, tw) = resize_rule(spec, *size), spec.size
    wrong = [oracle(spec, frames, swap=True)]
    if rh > th:
        wrong.append(oracle(spec, frames, shift=(1, 0)))
    if rw > tw:
        wrong.append(oracle(spec, frames, shift=(0, 1)))
    if rh - th >= 2 or rw - tw >= 2:
        wrong.append(oracle(spec, frames, corner=True))
    for bad in wrong:
        assert float(np.abs(out.double().numpy() - bad).max()) > 100 * TOL * unit(spec)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_single_clip_frames_and_batches_agree(name: str) -> None:
    spec = PRESETS[name]
    frames = frames_of((120, 160), n=2, seed=1)
    both = spec.preprocess(frames)
    one = spec.preprocess(frames[1])  # (T, H, W, 3)
    assert torch.equal(one[0], both[1])


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_crop_box_is_the_centre_crop_in_frame_pixels(name: str) -> None:
    spec = PRESETS[name]
    h, w = 300, 400
    rh, rw = resize_rule(spec, h, w)
    th, tw = spec.size
    top, left, height, width = spec.crop_box(h, w)
    if spec.resize is None:
        assert (top, left, height, width) == (0.0, 0.0, h, w)
        return
    fy, fx = h / rh, w / rw
    assert (top, left, height, width) == pytest.approx((((rh - th) // 2) * fy, ((rw - tw) // 2) * fx, th * fy, tw * fx))


def test_bgr_models_get_reversed_channels() -> None:
    spec = InputSpec(frames=2, size=(8, 8), resize=10, mean=(10.0, 20.0, 30.0), std=(2.0, 3.0, 4.0), scale=1.0,
                     channel_order="BGR")
    frames = frames_of((12, 16), n=1, seed=2)
    out = spec.preprocess(frames).double().numpy()
    assert float(np.abs(out - oracle(spec, frames)).max()) <= TOL * unit(spec)
    assert float(np.abs(out - oracle(spec, frames, swap=True)).max()) > 100 * TOL * unit(spec)


def test_a_constant_frame_gives_the_normalised_constant() -> None:
    """Resizing a flat image changes nothing: every voxel is (v * scale - mean) / std."""
    for name, spec in PRESETS.items():
        frames = np.full((1, 2, 90, 120, 3), (10, 128, 250), dtype=np.uint8)
        out = spec.preprocess(frames)
        for c, v in enumerate((10, 128, 250)):
            want = (v * spec.scale - spec.mean[c]) / spec.std[c]
            assert torch.allclose(out[0, c], torch.full_like(out[0, c], want), atol=1e-5 * unit(spec)), name


# ---------------------------------------------------------------------------------------------
# what the presets never reach: resizes smaller than the crop, odd margins, bad frames
# (found by the mutation run, docs/testing.md)
# ---------------------------------------------------------------------------------------------


def test_a_resize_smaller_than_the_crop_is_enlarged_before_cropping() -> None:
    """resize (6, 10) for a (8, 8) input: the resized frame is enlarged with plain bilinear
    (no antialiasing needed when enlarging) to (8, 10), then centre-cropped."""
    spec = InputSpec(frames=2, size=(8, 8), resize=(6, 10), mean=(0.2, 0.4, 0.6), std=(0.3, 0.2, 0.1))
    frames = frames_of((30, 40), seed=3)
    out = spec.preprocess(frames).double().numpy()
    expected = np.empty_like(out)
    for f in range(2):
        for c in range(3):
            plane = pil_resize(pil_resize(frames[0, f, :, :, c].astype(np.float64), (6, 10)), (8, 10))
            expected[0, c, f] = (plane[:, 1:9] * spec.scale - spec.mean[c]) / spec.std[c]
    assert float(np.abs(out - expected).max()) <= TOL * unit(spec)


def test_crop_box_with_odd_margins() -> None:
    spec = InputSpec(frames=2, size=(7, 7), resize=(10, 12))
    top, left, height, width = spec.crop_box(20, 36)
    assert (top, left, height, width) == pytest.approx((1 * 2.0, 2 * 3.0, 7 * 2.0, 7 * 3.0))
    short = InputSpec(frames=2, size=(5, 5), resize=8)
    # short side 10 -> 8, long side 15 -> 12: margins 1 (top, 3 // 2) and 3 (left, 7 // 2)
    assert short.crop_box(10, 15) == pytest.approx((1 * 1.25, 3 * 1.25, 5 * 1.25, 5 * 1.25))


@pytest.mark.parametrize("shape", [(2, 1, 9, 3), (1, 9, 1, 3), (1, 1, 1, 3)])
def test_one_frame_one_row_and_one_column_are_valid(shape: tuple[int, ...]) -> None:
    spec = InputSpec(frames=1, size=(4, 4))
    frames = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    out = spec.preprocess(frames)
    assert tuple(out.shape) == (1, 3, shape[0], 4, 4)
    assert float(np.abs(out.double().numpy() - oracle(spec, frames[None])).max()) <= TOL * unit(spec)


@pytest.mark.parametrize(
    ("frames", "words"),
    [
        (np.zeros((2, 8, 8, 4), np.uint8), r"frames must be uint8 \(T, H, W, 3\) or \(N, T, H, W, 3\) RGB, got shape \(1, 2, 8, 8, 4\)"),
        (np.zeros((8, 8, 3), np.uint8), r"got shape \(8, 8, 3\)"),
        (np.zeros((2, 8, 8, 3), np.float32), r"frames must be uint8, got torch.float32"),
        (np.zeros((0, 8, 8, 3), np.uint8), r"frames are empty: shape \(1, 0, 8, 8, 3\)"),
        (np.zeros((2, 0, 8, 3), np.uint8), r"frames are empty: shape \(1, 2, 0, 8, 3\)"),
        (np.zeros((2, 8, 0, 3), np.uint8), r"frames are empty: shape \(1, 2, 8, 0, 3\)"),
    ],
)
def test_bad_frames_are_one_line_errors(frames: np.ndarray, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        InputSpec(frames=2, size=(4, 4)).preprocess(frames)


def test_labels_from_lines_skips_blank_lines() -> None:
    assert labels_from_lines(["walk\n", "  \n", " run ", ""]) == ("walk", "run")


def test_label_index_exact_then_case_insensitive() -> None:
    from motion_relevance.errors import UnknownNameError

    spec = InputSpec(frames=2, size=(4, 4), labels=("Run", "run", "Walk", "jump"))
    assert spec.label_index("run") == 1  # the exact match wins over the earlier "Run"
    assert spec.label_index("Run") == 0
    assert spec.label_index("WALK") == 2 and spec.label_index("Jump") == 3
    with pytest.raises(UnknownNameError, match=r"unknown label 'swim'; see the model's labels \(e.g. 'Run'\)"):
        spec.label_index("swim")
    with pytest.raises(UnknownNameError, match=r"this model has no label names; give the target as an integer, not 'run'"):
        InputSpec(frames=2, size=(4, 4)).label_index("run")


def test_check_clip_length_exact_and_at_least() -> None:
    from motion_relevance.models.spec import check_clip_length

    exact = InputSpec(frames=8, size=(4, 4))
    check_clip_length(exact, 8)
    for n in (7, 9):
        with pytest.raises(InvalidInputError, match=rf"this model needs exactly 8 frames per clip, got {n}"):
            check_clip_length(exact, n)
    open_ended = InputSpec(frames=8, size=(4, 4), min_frames=3)
    for n in (3, 8, 20):
        check_clip_length(open_ended, n)
    with pytest.raises(InvalidInputError, match=r"this model needs at least 3 frames per clip, got 2"):
        check_clip_length(open_ended, 2)
