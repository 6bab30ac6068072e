"""Write frames to video files: MP4/MKV/MOV as H.264 and WebM as VP9 via PyAV, GIF via Pillow.

``VideoWriter`` takes frames one at a time (uint8 ``(H, W, 3)`` RGB, all the same size), so
long videos are written in bounded memory. H.264 with yuv420p needs even sizes: odd frames are
padded by one edge row/column. GIF frames get their own adaptive 256-colour palette; a GIF is
assembled in memory, so keep GIFs short.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from motion_relevance.errors import InvalidInputError, OutputError, VideoError
from motion_relevance.video.decode import frame_rate_fraction

log = logging.getLogger(__name__)

#: Container suffix -> (PyAV codec, pixel format).
CODECS: dict[str, tuple[str, str]] = {
    ".mp4": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
}
SUFFIXES: tuple[str, ...] = (*CODECS, ".gif")


def _check_frame(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise InvalidInputError(
            f"frames to write must be uint8 (H, W, 3) RGB, got {frame.dtype} {tuple(frame.shape)}"
        )
    if size is not None and frame.shape[:2] != size:
        raise InvalidInputError(
            f"all frames of a video must have one size: expected {size}, got {frame.shape[:2]}"
        )
    return frame


class VideoWriter:
    """Stream frames into a video file; the format follows the path's suffix.

    Use as a context manager; ``crf`` is H.264's quality (lower is better, 18-28 typical).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, *, crf: int = 20) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in SUFFIXES:
            raise InvalidInputError(
                f"cannot write video {self.path.name!r}: use one of {', '.join(SUFFIXES)}"
            )
        if not (fps > 0):
            raise InvalidInputError(f"fps must be > 0, got {fps}")
        if not self.path.parent.is_dir():
            raise OutputError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        self.fps = float(fps)
        self.crf = int(crf)
        self.frames_written = 0
        self._suffix = suffix
        self._size: tuple[int, int] | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.VideoStream | None = None
        self._gif: list[object] = []
        self._closed = False

    def _open(self, height: int, width: int) -> None:
        codec, pix_fmt = CODECS[self._suffix]
        try:
            self._container = av.open(str(self.path), mode="w")
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {self.path}: {exc}; check the folder is writable") from None
        stream = self._container.add_stream(codec, rate=frame_rate_fraction(self.fps))
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": "medium"}
        else:
            stream.options = {"crf": str(self.crf + 12), "b": "0"}
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 ``(H, W, 3)`` RGB frame."""
        if self._closed:
            raise VideoError(f"cannot write to {self.path}: the writer is closed")
        frame = _check_frame(frame, self._size)
        if self._size is None:
            self._size = (int(frame.shape[0]), int(frame.shape[1]))
            if self._suffix != ".gif":
                self._open(*self._size)
        self.frames_written += 1
        if self._suffix == ".gif":
            from PIL import Image

            image = Image.fromarray(frame, mode="RGB")
            self._gif.append(image.quantize(colors=256, method=Image.Quantize.MEDIANCUT))
            return
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        assert self._container is not None and self._stream is not None
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        try:
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot encode {self.path}: {exc}") from None

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._suffix == ".gif":
            self._write_gif()
            return
        if self._container is None:
            raise VideoError(f"no frames were written to {self.path}; a video needs at least one")
        assert self._stream is not None
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()

    def _write_gif(self) -> None:
        if not self._gif:
            raise VideoError(f"no frames were written to {self.path}; a video needs at least one")
        first, *rest = self._gif
        try:
            first.save(  # type: ignore[attr-defined]
                self.path,
                save_all=True,
                append_images=rest,
                duration=max(20, round(1000 / self.fps)),
                loop=0,
                disposal=1,
            )
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc}") from None
        finally:
            self._gif = []

    def abort(self) -> None:
        """Stop writing and delete the partial file (idempotent)."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                log.debug("closing %s after an error failed", self.path, exc_info=True)
            self._container = None
        self._gif = []
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # failing inside the block: do not leave a half-written video
            self.abort()


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float, *, crf: int = 20) -> Path:
    """Write uint8 ``(H, W, 3)`` RGB frames (an array ``(T, H, W, 3)`` or any iterable) to ``path``."""
    with VideoWriter(path, fps, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path


__all__ = ["CODECS", "SUFFIXES", "VideoWriter", "write_video"]
