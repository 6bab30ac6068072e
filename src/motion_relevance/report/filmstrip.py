"""Filmstrip PNG: a grid of pictures, rows = what is shown (frames, base explanation, motion
part, static part, per method), columns = sampled time steps. Laid out with matplotlib."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from motion_relevance.errors import InvalidInputError, OutputError


def sample_columns(num_frames: int, columns: int = 6) -> list[int]:
    """Up to ``columns`` evenly spaced frame positions in ``range(num_frames)``, first and last included."""
    if num_frames < 1:
        raise InvalidInputError("a filmstrip needs at least one frame")
    k = min(columns, num_frames)
    return sorted({round(i * (num_frames - 1) / max(1, k - 1)) for i in range(k)})


def write_filmstrip(
    path: str | Path,
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    column_titles: Sequence[str],
    *,
    title: str | None = None,
    cell_height: float = 1.6,
    dpi: int = 110,
) -> Path:
    """Write a PNG grid: ``rows`` are ``(row label, images uint8 (H, W, 3) per column)``.

    ``cell_height``: inches per row; cells keep the images' aspect ratio.
    """
    if not rows:
        raise InvalidInputError("a filmstrip needs at least one row")
    ncols = len(column_titles)
    if any(len(images) != ncols for _, images in rows):
        raise InvalidInputError(f"every filmstrip row needs {ncols} images, one per column")
    h, w = rows[0][1][0].shape[:2]
    cell_w = cell_height * w / h
    label_w = 1.5
    top = 0.5 if title else 0.3
    fig = Figure(figsize=(label_w + ncols * cell_w, top + len(rows) * cell_height), dpi=dpi)
    FigureCanvasAgg(fig)
    fig_w, fig_h = fig.get_size_inches()
    for r, (row_label, images) in enumerate(rows):
        for c, image in enumerate(images):
            left = (label_w + c * cell_w) / fig_w
            bottom = 1 - (top + (r + 1) * cell_height) / fig_h
            ax = fig.add_axes((left, bottom, cell_w / fig_w * 0.985, cell_height / fig_h * 0.97))
            ax.imshow(image, interpolation="antialiased")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(column_titles[c], fontsize=8, pad=2)
            if c == 0:
                ax.set_ylabel(row_label, fontsize=8, rotation=0, ha="right", va="center", labelpad=6)
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, y=1 - 0.08 / fig_h, ha="left", va="top")
    fig.set_facecolor("white")
    canvas = fig.canvas
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    # A 256-colour palette keeps the PNG small enough for a README (dithered, barely visible).
    image = Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    path = Path(path)
    try:
        image.save(path, format="PNG", optimize=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}; check the folder is writable") from None
    return path


__all__ = ["sample_columns", "write_filmstrip"]
