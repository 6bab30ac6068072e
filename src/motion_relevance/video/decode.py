"""Decode videos with PyAV: probe, stream frames, or read a whole clip into memory.

Every frame comes out as ``uint8 (H, W, 3)`` RGB whatever the source pixel format (grayscale,
alpha or high-bit-depth sources are converted by FFmpeg's swscale; alpha is dropped). Frames
larger than ``max_side`` are downscaled while decoding, so a huge video never sits in memory at
full size. Frame indices always count from the first frame of the file, so a ``[start, end]``
range keeps the mapping back to the original video.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from motion_relevance.errors import InvalidInputError, VideoError

log = logging.getLogger(__name__)

#: fps assumed when a container does not say (e.g. some GIFs and raw streams).
FALLBACK_FPS = 25.0

#: FFmpeg threads per decoded stream: 0 lets FFmpeg choose (all cores); decode worker processes
#: set 1 (``set_decode_threads``), so N workers use N cores and leave the rest to the model.
_DECODE_THREADS = 0


def set_decode_threads(count: int) -> None:
    """FFmpeg threads per decoded stream in this process (0: FFmpeg's choice)."""
    global _DECODE_THREADS
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InvalidInputError(f"decode threads must be an integer >= 0, got {count!r}")
    _DECODE_THREADS = count


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, read from its headers (no frame is decoded)."""

    path: Path
    fps: float
    num_frames: int
    """Frame count from the container, or counted from the packets when it does not say."""
    width: int
    height: int
    codec: str
    pix_fmt: str

    @property
    def duration(self) -> float:
        """Seconds, from the frame count and fps."""
        return self.num_frames / self.fps if self.fps > 0 else 0.0


@dataclass(frozen=True)
class Video:
    """Decoded frames with what is needed to map them back to the file."""

    frames: np.ndarray
    """uint8 ``(T, H, W, 3)`` RGB, possibly downscaled (see ``original_size``)."""
    fps: float
    first_index: int = 0
    """Index in the file of ``frames[0]`` (non-zero when a ``start`` time was given)."""
    original_size: tuple[int, int] | None = None
    """(H, W) of the frames in the file; None means the same as ``frames``."""
    path: Path | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Seconds covered by ``frames``."""
        return self.num_frames / self.fps if self.fps > 0 else 0.0

    @property
    def frame_indices(self) -> np.ndarray:
        """int64 ``(T,)``: index in the file of every frame held."""
        return np.arange(self.first_index, self.first_index + self.num_frames, dtype=np.int64)


def _check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise VideoError(f"video file not found: {p}; check the path")
    if p.is_dir():
        raise VideoError(f"{p} is a directory, not a video file; give the path of a video")
    if p.stat().st_size == 0:
        raise VideoError(f"{p} is empty (0 bytes); give a video file")
    return p


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise VideoError(
            f"cannot read {path}: FFmpeg cannot open it as a video ({reason}); the file is "
            "corrupt, truncated or not a video: give an mp4, avi, mkv, webm or gif file"
        ) from None


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.VideoStream:
    if not container.streams.video:
        raise VideoError(f"{path} has no video stream; give a file that contains video")
    return container.streams.video[0]


def _fps(stream: av.video.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            value = float(rate)
            if math.isfinite(value) and value < 1000:
                return value
    log.warning("the video does not state its frame rate; assuming %s fps", FALLBACK_FPS)
    return FALLBACK_FPS


def _count_packets(container: av.container.InputContainer, stream: av.video.VideoStream) -> int:
    count = 0
    for packet in container.demux(stream):
        if packet.size:
            count += 1
    return count


def probe(path: str | os.PathLike[str], *, count_frames: bool = True) -> VideoInfo:
    """Read a video's headers: fps, frame count, size and codec (raises ``VideoError``).

    When the container does not state its frame count, the packets are counted (no decoding)
    unless ``count_frames`` is False, in which case ``num_frames`` is 0.
    """
    p = _check_path(path)
    with _open(p) as container:
        stream = _video_stream(container, p)
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise VideoError(f"{p} has a video stream without a frame size; the file is corrupt")
        fps = _fps(stream)
        count = int(stream.frames or 0)
        if count <= 0 and count_frames:
            try:
                count = _count_packets(container, stream)
            except av.error.FFmpegError:
                raise VideoError(f"{p} is corrupt: its packets cannot be read") from None
        return VideoInfo(
            path=p,
            fps=fps,
            num_frames=count,
            width=width,
            height=height,
            codec=str(ctx.name),
            pix_fmt=str(ctx.pix_fmt or ""),
        )


def scaled_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(H, W) after fitting the longer side into ``max_side`` (aspect kept, even sizes)."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    f = max_side / max(height, width)
    h = max(2, round(height * f / 2) * 2)
    w = max(2, round(width * f / 2) * 2)
    return h, w


def _check_range(start: float | None, end: float | None) -> None:
    for name, value in (("start", start), ("end", end)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise InvalidInputError(f"{name} must be a time in seconds >= 0, got {value}")
    if start is not None and end is not None and end <= start:
        raise InvalidInputError(f"end ({end} s) must be after start ({start} s)")


def _check_max_side(max_side: int | None) -> None:
    if max_side is not None and (isinstance(max_side, bool) or int(max_side) != max_side or max_side < 2):
        raise InvalidInputError(f"max_side must be an integer >= 2 or None, got {max_side!r}")


def iter_frames(
    path: str | os.PathLike[str],
    *,
    max_side: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``(index, frame)`` pairs, frame uint8 ``(H, W, 3)`` RGB, without holding the video.

    ``index`` counts from the file's first frame. ``start``/``end`` select frames whose time
    ``index / fps`` lies in ``[start, end)`` seconds. Raises ``VideoError`` for unreadable
    files and when no frame is decoded.
    """
    _check_range(start, end)
    _check_max_side(max_side)
    p = _check_path(path)
    with _open(p) as container:
        stream = _video_stream(container, p)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = _DECODE_THREADS
        fps = _fps(stream)
        first = 0 if start is None else math.ceil(start * fps - 1e-6)
        stop = None if end is None else math.ceil(end * fps - 1e-6)
        yielded = 0
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if index < first:
                    continue
                if stop is not None and index >= stop:
                    break
                h, w = scaled_size(frame.height, frame.width, max_side)
                if (h, w) != (frame.height, frame.width):
                    rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
                else:
                    rgb = frame.to_ndarray(format="rgb24")
                yielded += 1
                yield index, np.ascontiguousarray(rgb)
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"{p} is corrupt: decoding failed after {index + 1} frame(s) ({exc.strerror or exc}); "
                "re-encode or replace the file"
            ) from None
        if yielded == 0:
            if index < 0:
                raise VideoError(f"{p} contains no video frames; give a video with at least one frame")
            raise VideoError(
                f"{p} has no frames between {start or 0:g} s and {'the end' if end is None else f'{end:g} s'} "
                f"(it has {index + 1} frames at {fps:g} fps); choose a range inside the video"
            )


def read_video(
    path: str | os.PathLike[str],
    *,
    max_side: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Video:
    """Decode a whole video (or ``[start, end)`` seconds of it) into memory as a ``Video``.

    For long videos prefer ``iter_frames`` or ``motion_relevance.video.iter_clips``, which stream.
    """
    _check_range(start, end)
    _check_max_side(max_side)
    p = _check_path(path)
    info = probe(p, count_frames=False)
    frames: list[np.ndarray] = []
    first = -1
    for index, frame in iter_frames(p, max_side=max_side, start=start, end=end):
        if first < 0:
            first = index
        frames.append(frame)
    stacked = np.stack(frames)
    size = (info.height, info.width)
    return Video(
        frames=stacked,
        fps=info.fps,
        first_index=first,
        original_size=None if size == stacked.shape[1:3] else size,
        path=p,
    )


def frame_rate_fraction(fps: float) -> Fraction:
    """A small exact fraction for ``fps`` (encoders want rationals; 29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


__all__ = [
    "FALLBACK_FPS",
    "Video",
    "VideoInfo",
    "frame_rate_fraction",
    "iter_frames",
    "probe",
    "read_video",
    "scaled_size",
]
