"""Test helpers (not a test module): small video files made on the fly for the video, report
and CLI tests, no data downloads. Test modules import them (pytest puts ``tests/`` on
``sys.path``)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from motion_relevance.video import write_video


def moving_square_frames(t: int = 12, h: int = 48, w: int = 64, *, seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): a blocky static background with a bright square moving right.

    The texture is 8-pixel blocks so that lossy 4:2:0 coding keeps it (pixel noise would not).
    """
    rng = np.random.default_rng(seed)
    blocks = rng.integers(40, 120, size=(-(-h // 8), -(-w // 8), 3), dtype=np.uint8)
    background = np.ascontiguousarray(blocks.repeat(8, 0).repeat(8, 1)[:h, :w])
    frames = np.repeat(background[None], t, axis=0)
    side = max(4, h // 4)
    for i in range(t):
        x = (2 + 3 * i) % max(1, w - side)
        frames[i, h // 3 : h // 3 + side, x : x + side] = (230, 200, 40)
    return frames


def make_video(path: Path, frames: np.ndarray | None = None, fps: float = 10.0) -> Path:
    """Write an H.264 (or by suffix) video of ``frames`` (default: a moving square)."""
    write_video(path, moving_square_frames() if frames is None else frames, fps)
    return path


def make_raw_video(path: Path, frames: np.ndarray, pix_fmt: str, fps: int = 10) -> Path:
    """Write lossless PNG-coded frames with a chosen pixel format (gray, rgba, ...) to MOV."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("png", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        source_fmt = {1: "gray", 3: "rgb24", 4: "rgba"}[frames.shape[3] if frames.ndim == 4 else 1]
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(frame if frame.ndim == 3 and frame.shape[2] > 1 else frame.reshape(frame.shape[:2]), format=source_fmt)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def make_audio_only(path: Path) -> Path:
    """A WAV file: a valid media file with no video stream."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = (np.sin(np.linspace(0, 200, 8000)) * 3000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def make_zero_frame_video(path: Path) -> Path:
    """An AVI with a video stream header and no frames (give a ``.avi`` path)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
    return path


def make_corrupt(path: Path, source: Path) -> Path:
    """The first third of a real MP4: its index (moov) is missing, FFmpeg cannot open it."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path
