"""Colormaps, alpha blending, crop-box mapping and the filmstrip."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec
from motion_relevance.report import (
    colorize,
    colormap_lut,
    overlay,
    robust_max,
    sample_columns,
    write_filmstrip,
)
from motion_relevance.report.overlay import DIVERGING, SEQUENTIAL, blend, label


def test_lut_is_matplotlibs_colormap() -> None:
    for name in (DIVERGING, SEQUENTIAL):
        lut = colormap_lut(name)
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
        expected = matplotlib.colormaps[name](np.linspace(0, 1, 256), bytes=True)[:, :3]
        np.testing.assert_array_equal(lut, expected)
    with pytest.raises(InvalidInputError, match="colormap"):
        colormap_lut("no-such-map")


def test_signed_colours_and_opacity() -> None:
    heat = np.array([[-2.0, -1.0, 0.0, 0.5, 1.0]], dtype=np.float32)
    rgba = colorize(heat, signed=True, vmax=1.0, alpha=0.8)
    r, _, b, a = (rgba[0, :, i] for i in range(4))
    assert a[2] == 0.0  # zero relevance is transparent
    assert a[0] == a[1] == a[4] == pytest.approx(0.8)  # clipped at vmax: full opacity
    assert 0 < a[3] < a[4]
    assert r[4] > b[4] and b[1] > r[1]  # positive red, negative blue
    mag = colorize(np.abs(heat), signed=False, vmax=1.0)
    np.testing.assert_array_equal(mag[0, 4, :3], colormap_lut(SEQUENTIAL)[255])


def test_robust_max_ignores_outliers_and_zero_maps() -> None:
    heat = np.ones(10000, dtype=np.float32)
    heat[0] = 1e6
    assert robust_max(heat) == pytest.approx(1.0)
    assert robust_max(np.zeros(5)) == 1.0
    sparse = np.zeros(1000)
    sparse[3] = -4.0
    assert robust_max(sparse) == 4.0  # percentile 0: falls back to the maximum


def test_blend_endpoints() -> None:
    frame = np.full((2, 2, 3), 100, np.uint8)
    rgba = np.zeros((2, 2, 4), np.float32)
    rgba[..., :3] = 200
    np.testing.assert_array_equal(blend(frame, rgba), frame)
    rgba[..., 3] = 1.0
    np.testing.assert_array_equal(blend(frame, rgba), np.full((2, 2, 3), 200, np.uint8))
    rgba[..., 3] = 0.5
    np.testing.assert_array_equal(blend(frame, rgba), np.full((2, 2, 3), 150, np.uint8))


def test_overlay_maps_to_the_crop_box_at_original_resolution() -> None:
    spec = InputSpec(frames=2, size=(8, 8), resize=8)
    frames = np.full((2, 30, 60, 3), 120, np.uint8)
    box = spec.crop_box(30, 60)  # the centre 30x30 square
    heat = np.zeros((2, 8, 8), np.float32)
    heat[1, :, :4] = 1.0  # left half of the model's view, second frame only
    out = overlay(frames, heat, box=box, vmax=1.0)
    assert out.shape == frames.shape and out.dtype == np.uint8
    top, left, h, w = (round(v) for v in box)
    assert (top, left, h, w) == (0, 15, 30, 30)
    # Outside the box: dimmed frame; inside with zero heat: the frame untouched.
    assert (out[:, :, :15] < 120).all() and (out[:, :, 45:] < 120).all()
    np.testing.assert_array_equal(out[0, :, 15:45], frames[0, :, 15:45])
    # The hot half is red where it was placed, nowhere else.
    hot = out[1, :, 16:26].astype(int)
    assert (hot[..., 0] > hot[..., 2] + 40).all()
    np.testing.assert_array_equal(out[1, :, 36:45], frames[1, :, 36:45])
    one = overlay(frames[1], heat[1], box=box, vmax=1.0)  # a single frame works too
    np.testing.assert_array_equal(one, out[1])


def test_overlay_checks_shapes() -> None:
    with pytest.raises(InvalidInputError, match="heat"):
        overlay(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((3, 2, 2)))
    with pytest.raises(InvalidInputError, match="NaN"):
        colorize(np.array([np.nan]))


def test_label_draws_on_a_copy() -> None:
    image = np.full((40, 120, 3), 200, np.uint8)
    out = label(image, "saliency")
    assert (image == 200).all() and not np.array_equal(out, image)


def test_filmstrip_grid(tmp_path: Path) -> None:
    assert sample_columns(100, 6) == [0, 20, 40, 59, 79, 99]
    assert sample_columns(3, 6) == [0, 1, 2]
    assert sample_columns(1, 6) == [0]
    cells = [np.full((20, 40, 3), v, np.uint8) for v in (0, 80, 160)]
    path = write_filmstrip(tmp_path / "f.png", [("frames", cells), ("base", cells)], ["a", "b", "c"], title="t")
    image = Image.open(path)
    w, h = image.size
    assert w > h  # 3 columns of 2:1 cells beside a label column, 2 rows
    with pytest.raises(InvalidInputError, match="one per column"):
        write_filmstrip(tmp_path / "g.png", [("frames", cells[:2])], ["a", "b", "c"])
