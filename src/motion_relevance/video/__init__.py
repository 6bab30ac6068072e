"""Video in: decode (PyAV), stream, cut into model-sized clips; video out: MP4/WebM/GIF writers.

    video = read_video("clip.mp4", max_side=1280)          # whole clip in memory
    for index, frame in iter_frames("long.mp4"):           # streaming, bounded memory
        ...
    for window, frames in iter_clips("long.mp4", spec):    # model-sized windows, streaming
        clips = spec.preprocess(frames)
    write_video("out.mp4", frames, fps=video.fps)           # H.264
"""

from __future__ import annotations

from motion_relevance.video.clips import (
    Clips,
    ClipWindow,
    iter_clips,
    iter_windows,
    plan_windows,
    sample_clips,
)
from motion_relevance.video.decode import (
    Video,
    VideoInfo,
    iter_frames,
    probe,
    read_video,
    scaled_size,
)
from motion_relevance.video.encode import VideoWriter, write_video

__all__ = [
    "ClipWindow",
    "Clips",
    "Video",
    "VideoInfo",
    "VideoWriter",
    "iter_clips",
    "iter_frames",
    "iter_windows",
    "plan_windows",
    "probe",
    "read_video",
    "sample_clips",
    "scaled_size",
    "write_video",
]
