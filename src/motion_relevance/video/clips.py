"""Clip sampling: cut a video into the fixed-length windows a model takes, and remember where
every window's frames came from.

Windows have ``length`` frames and start every ``stride`` frames (default: ``length``, i.e.
back to back). When the last window would stop short of the video's end, one more window is
added that ends exactly on the last frame (so it overlaps its predecessor). Every frame is
*owned* by the first window that contains it; overlays and reports show each frame from its
owner, so a frame is never drawn twice.

Videos shorter than one window are loop-padded (frames ``0, 1, ..., n-1, 0, 1, ...``) with a
logged warning, unless the model accepts shorter clips (``min_length``), in which case the one
window is just the ``n`` frames. The padded copies are not owned by anyone.

``plan_windows`` (needs the frame count) and ``iter_windows`` (streams, bounded memory) cut the
same windows; ``sample_clips`` does it for a ``Video`` in memory and ``iter_clips`` for a file.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from motion_relevance.errors import InvalidInputError, VideoError
from motion_relevance.video.decode import Video, iter_frames

log = logging.getLogger(__name__)


class ClipLength(Protocol):
    """What clip sampling needs from a model's ``InputSpec``: its clip length and, for models
    that take shorter clips, the shortest one (``None``: exactly ``frames``)."""

    @property
    def frames(self) -> int: ...

    @property
    def min_frames(self) -> int | None: ...


@dataclass(frozen=True)
class ClipWindow:
    """One model input: which original frames it holds and which of them it owns."""

    index: int
    """Position of this window in the video's sequence of windows (0, 1, ...)."""
    frame_indices: tuple[int, ...]
    """Index in the file of each of the window's frames (repeats when loop-padded)."""
    first_owned: int
    """Position in the window of the first frame this window owns."""
    num_owned: int
    """How many consecutive frames from ``first_owned`` this window owns."""
    padded: bool = False
    """True when the video was shorter than a window and its frames were repeated."""

    @property
    def length(self) -> int:
        return len(self.frame_indices)

    @property
    def owned(self) -> slice:
        """Slice of window positions that this window owns (use on its time axis)."""
        return slice(self.first_owned, self.first_owned + self.num_owned)

    @property
    def owned_indices(self) -> tuple[int, ...]:
        """File indices of the owned frames, in order."""
        return self.frame_indices[self.owned]


@dataclass(frozen=True)
class Clips:
    """Windows cut from an in-memory video, ready for ``spec.preprocess``."""

    frames: np.ndarray
    """uint8 ``(N, T, H, W, 3)``."""
    windows: tuple[ClipWindow, ...]
    fps: float


def _check_length(length: int, stride: int | None, min_length: int | None) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise InvalidInputError(f"clip length must be an integer >= 1, got {length!r}")
    stride = int(length) if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise InvalidInputError(f"stride must be an integer >= 1 frame, got {stride!r}")
    if min_length is not None and not (1 <= min_length <= length):
        raise InvalidInputError(f"min_length must be between 1 and {length}, got {min_length}")
    return int(stride)


def _short_window(indices: list[int], length: int, min_length: int | None, quiet: bool = False) -> ClipWindow:
    n = len(indices)
    if min_length is not None and n >= min_length:
        return ClipWindow(0, tuple(indices), 0, n)
    (log.debug if quiet else log.warning)(
        "the video has %d frame(s), fewer than one %d-frame clip: loop-padding it "
        "(frames repeat from the start; only the first %d are shown)",
        n,
        length,
        n,
    )
    return ClipWindow(0, tuple(indices[i % n] for i in range(length)), 0, n, padded=True)


def plan_windows(
    num_frames: int,
    length: int,
    *,
    stride: int | None = None,
    min_length: int | None = None,
    first_index: int = 0,
) -> tuple[ClipWindow, ...]:
    """The windows for ``num_frames`` consecutive frames starting at file index ``first_index``."""
    stride = _check_length(length, stride, min_length)
    if num_frames < 1:
        raise VideoError("the video contains no frames to cut into clips")
    indices = list(range(first_index, first_index + num_frames))
    if num_frames < length:
        return (_short_window(indices, length, min_length),)
    starts = list(range(0, num_frames - length + 1, stride))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    windows = []
    covered = 0
    for k, s in enumerate(starts):
        owned_from = max(s, covered)
        windows.append(
            ClipWindow(k, tuple(indices[s : s + length]), owned_from - s, s + length - owned_from)
        )
        covered = s + length
    return tuple(windows)


def iter_windows(
    frames: Iterable[tuple[int, np.ndarray]],
    length: int,
    *,
    stride: int | None = None,
    min_length: int | None = None,
    quiet: bool = False,
) -> Iterator[tuple[ClipWindow, np.ndarray]]:
    """Cut ``(index, frame)`` pairs into ``(window, frames (T, H, W, 3))`` as they stream in.

    Holds at most ``length`` frames; yields exactly the windows ``plan_windows`` would plan.
    ``quiet``: log the loop-padding warning at debug level (e.g. on a second pass).
    """
    stride = _check_length(length, stride, min_length)
    buffer: deque[tuple[int, np.ndarray]] = deque(maxlen=length)
    seen = 0  # frames read so far
    next_start = 0  # position of the next window's first frame
    covered = 0  # positions [0, covered) are owned by windows already yielded
    k = 0
    for item in frames:
        buffer.append(item)
        seen += 1
        if seen == next_start + length:
            owned_from = max(next_start, covered)
            yield _window(k, buffer, owned_from - next_start, next_start + length - owned_from)
            k += 1
            covered = next_start + length
            next_start += stride
    if seen == 0:
        raise VideoError("the video contains no frames to cut into clips")
    if seen < length:
        window = _short_window([i for i, _ in buffer], length, min_length, quiet)
        by_index = {i: f for i, f in buffer}
        yield window, np.stack([by_index[i] for i in window.frame_indices])
    elif covered < seen:
        start = seen - length
        owned_from = max(start, covered)
        yield _window(k, buffer, owned_from - start, seen - owned_from)


def _window(k: int, buffer: deque[tuple[int, np.ndarray]], first_owned: int, num_owned: int) -> tuple[ClipWindow, np.ndarray]:
    indices = tuple(i for i, _ in buffer)
    return ClipWindow(k, indices, first_owned, num_owned), np.stack([f for _, f in buffer])


def _length_of(spec_or_length: ClipLength | int) -> tuple[int, int | None]:
    if isinstance(spec_or_length, (int, np.integer)) and not isinstance(spec_or_length, bool):
        return int(spec_or_length), None
    frames = getattr(spec_or_length, "frames", None)
    if frames is None:
        raise InvalidInputError(
            f"give a clip length (int) or an InputSpec, got {type(spec_or_length).__name__}"
        )
    return int(frames), getattr(spec_or_length, "min_frames", None)


def sample_clips(
    video: Video,
    spec_or_length: ClipLength | int,
    *,
    stride: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Clips:
    """Cut an in-memory ``Video`` (optionally only ``[start, end)`` seconds) into clips.

    ``spec_or_length``: an ``InputSpec`` (its ``frames``, and ``min_frames`` for models that
    take shorter clips) or a plain clip length.
    """
    length, min_length = _length_of(spec_or_length)
    frames, first = video.frames, video.first_index
    if start is not None or end is not None:
        idx = video.frame_indices
        keep = np.ones(len(idx), dtype=bool)
        if start is not None:
            keep &= idx >= np.ceil(start * video.fps - 1e-6)
        if end is not None:
            keep &= idx < np.ceil(end * video.fps - 1e-6)
        if not keep.any():
            raise VideoError(
                f"no frames between {start or 0:g} s and {end if end is not None else 'the end'} s "
                f"in a {video.duration:g} s video; choose a range inside the video"
            )
        pos = np.flatnonzero(keep)
        frames, first = frames[pos[0] : pos[-1] + 1], int(idx[pos[0]])
    windows = plan_windows(len(frames), length, stride=stride, min_length=min_length, first_index=first)
    if len({w.length for w in windows}) != 1:  # pragma: no cover - plan_windows guarantees it
        raise InvalidInputError("windows of different lengths cannot be stacked")
    stacked = np.stack([frames[np.asarray(w.frame_indices) - first] for w in windows])
    return Clips(frames=stacked, windows=windows, fps=video.fps)


def iter_clips(
    path: str | os.PathLike[str],
    spec_or_length: ClipLength | int,
    *,
    stride: int | None = None,
    start: float | None = None,
    end: float | None = None,
    max_side: int | None = None,
    quiet: bool = False,
) -> Iterator[tuple[ClipWindow, np.ndarray]]:
    """Stream ``(window, frames uint8 (T, H, W, 3))`` from a video file in bounded memory.

    Same windows as ``sample_clips``; ``quiet`` as in ``iter_windows``.
    """
    length, min_length = _length_of(spec_or_length)
    _check_length(length, stride, min_length)
    frames = iter_frames(path, max_side=max_side, start=start, end=end)
    yield from iter_windows(frames, length, stride=stride, min_length=min_length, quiet=quiet)


__all__ = ["ClipWindow", "Clips", "iter_clips", "iter_windows", "plan_windows", "sample_clips"]
