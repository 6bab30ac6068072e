"""Video decode/encode round trips, streaming, ranges, clip windows and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motion_relevance.errors import InvalidInputError, VideoError
from motion_relevance.video import (
    VideoWriter,
    iter_clips,
    iter_frames,
    iter_windows,
    plan_windows,
    probe,
    read_video,
    sample_clips,
    scaled_size,
    write_video,
)
from videos import (
    make_audio_only,
    make_corrupt,
    make_raw_video,
    make_video,
    make_zero_frame_video,
    moving_square_frames,
)

# --------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(("suffix", "tolerance"), [(".mp4", 6.0), (".mkv", 6.0), (".webm", 8.0), (".gif", 12.0)])
def test_round_trip_keeps_frames_fps_and_count(tmp_path: Path, suffix: str, tolerance: float) -> None:
    frames = moving_square_frames(10)
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=12.5 if suffix != ".gif" else 10.0)
    video = read_video(path)
    assert video.frames.dtype == np.uint8
    assert video.frames.shape == frames.shape
    assert video.fps == pytest.approx(12.5 if suffix != ".gif" else 10.0, rel=1e-3)
    assert video.num_frames == probe(path).num_frames == 10
    assert video.duration == pytest.approx(10 / video.fps)
    err = np.abs(video.frames.astype(np.float64) - frames).mean()
    assert err < tolerance, err
    # The moving square is where it was: lossy coding keeps content, not just shape.
    assert np.argmax(video.frames[5, 20].sum(-1)) == np.argmax(frames[5, 20].sum(-1).astype(int))


def test_odd_sizes_are_padded_for_h264(tmp_path: Path) -> None:
    frames = moving_square_frames(4, 47, 63)
    video = read_video(write_video(tmp_path / "odd.mp4", frames, fps=10))
    assert video.frames.shape == (4, 48, 64, 3)
    assert np.abs(video.frames[:, :47, :63].astype(int) - frames).mean() < 6


def test_writer_streams_and_checks_frames(tmp_path: Path) -> None:
    frames = moving_square_frames(3)
    with VideoWriter(tmp_path / "w.mp4", fps=5) as writer:
        for frame in frames:
            writer.write(frame)
        with pytest.raises(InvalidInputError, match="one size"):
            writer.write(frames[0, :10])
    assert writer.frames_written == 3 and probe(tmp_path / "w.mp4").num_frames == 3
    with pytest.raises(InvalidInputError, match="uint8"):
        write_video(tmp_path / "f.mp4", frames.astype(np.float32), fps=5)
    assert not (tmp_path / "f.mp4").exists()  # failing inside the writer leaves no file
    with pytest.raises(InvalidInputError, match="use one of"):
        VideoWriter(tmp_path / "x.bmp", fps=5)


def test_streaming_equals_whole_read(tmp_path: Path) -> None:
    path = make_video(tmp_path / "a.mp4", moving_square_frames(9))
    video = read_video(path)
    streamed = list(iter_frames(path))
    assert [i for i, _ in streamed] == list(range(9))
    np.testing.assert_array_equal(np.stack([f for _, f in streamed]), video.frames)


def test_time_range_keeps_original_indices(tmp_path: Path) -> None:
    path = make_video(tmp_path / "a.mp4", moving_square_frames(20), fps=10)
    whole = read_video(path)
    part = read_video(path, start=0.5, end=1.2)
    assert part.first_index == 5
    assert list(part.frame_indices) == [5, 6, 7, 8, 9, 10, 11]
    np.testing.assert_array_equal(part.frames, whole.frames[5:12])
    with pytest.raises(VideoError, match="no frames between"):
        read_video(path, start=5.0)
    with pytest.raises(InvalidInputError, match="after start"):
        read_video(path, start=1.0, end=0.5)


# ------------------------------------------------------------------------ odd pixel formats, size


def test_grayscale_becomes_rgb(tmp_path: Path) -> None:
    frames = moving_square_frames(4)
    path = make_raw_video(tmp_path / "g.mov", frames[..., 1], "gray")
    video = read_video(path)
    assert video.frames.shape == (4, 48, 64, 3)
    for c in range(3):  # grey replicated into R, G and B, losslessly
        np.testing.assert_array_equal(video.frames[..., c], frames[..., 1])


def test_alpha_is_dropped(tmp_path: Path) -> None:
    frames = moving_square_frames(4)
    rgba = np.concatenate([frames, np.full((*frames.shape[:3], 1), 77, np.uint8)], axis=-1)
    path = make_raw_video(tmp_path / "a.mov", rgba, "rgba")
    assert probe(path).pix_fmt == "rgba"
    np.testing.assert_array_equal(read_video(path).frames, frames)


def test_large_frames_are_downscaled_while_decoding(tmp_path: Path) -> None:
    frames = moving_square_frames(2, 600, 1000)
    path = make_video(tmp_path / "big.mp4", frames)
    video = read_video(path, max_side=250)
    assert video.frames.shape == (2, 150, 250, 3)
    assert video.original_size == (600, 1000)
    assert scaled_size(600, 1000, None) == (600, 1000)
    assert scaled_size(100, 80, 250) == (100, 80)
    assert scaled_size(1081, 1921, 960) == (540, 960)


# ---------------------------------------------------------------------------------- bad input


def test_bad_files_raise_one_line_video_errors(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = {
        tmp_path / "missing.mp4": "not found",
        tmp_path: "directory",
        empty: "empty",
        text: "cannot open it as a video",
        make_corrupt(tmp_path / "cut.mp4", good): "cannot open it as a video",
        make_audio_only(tmp_path / "sound.wav"): "no video stream",
        make_zero_frame_video(tmp_path / "none.avi"): "no video frames",
    }
    for path, words in cases.items():
        with pytest.raises(VideoError, match=words) as info:
            read_video(path)
        assert "\n" not in str(info.value)
    with pytest.raises(VideoError):
        probe(text)


def test_garbage_in_the_first_keyframe_is_a_one_line_error(tmp_path: Path) -> None:
    """FFmpeg probes the first frame to open the file; garbage there means it cannot."""
    data = bytearray(make_video(tmp_path / "good.mp4", moving_square_frames(20)).read_bytes())
    start = len(data) // 4  # inside the first (key) frame's packet, which starts the mdat
    data[start : start + 2000] = bytes((i * 37) % 256 for i in range(2000))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(VideoError, match="cannot open it as a video") as info:
        read_video(bad)
    assert "\n" not in str(info.value)


def _intra_only_h264(path: Path, frames: np.ndarray) -> Path:
    """H.264 where every frame is a key frame, encoded on one thread in one slice: the bytes and
    the packet of each frame do not depend on the machine's cores."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "x264-params": "keyint=1:threads=1:sliced-threads=0:bframes=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_damage_inside_one_frame_is_concealed_locally(tmp_path: Path) -> None:
    """Zeroed bytes inside one packet of the middle: the H.264 decoder conceals them, every
    frame still comes out, and only the frame decoded from that packet differs (every frame is
    a key frame, so no other frame is predicted from the damaged one)."""
    import av

    good = _intra_only_h264(tmp_path / "good.mp4", moving_square_frames(20))
    with av.open(str(good)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    assert len(packets) == 20
    pos, size = packets[10]
    data = bytearray(good.read_bytes())
    data[pos + size // 2 : pos + size // 2 + 16] = bytes(16)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    clean, damaged = read_video(good).frames, read_video(bad).frames
    assert damaged.dtype == np.uint8 and damaged.shape == clean.shape == (20, 48, 64, 3)
    differs = [t for t in range(20) if not np.array_equal(damaged[t], clean[t])]
    assert differs == [10]


# ------------------------------------------------------------------------------------ windows


def test_windows_back_to_back_with_a_final_overlapping_one() -> None:
    windows = plan_windows(10, 4)
    assert [w.frame_indices for w in windows] == [(0, 1, 2, 3), (4, 5, 6, 7), (6, 7, 8, 9)]
    assert [(w.first_owned, w.num_owned) for w in windows] == [(0, 4), (0, 4), (2, 2)]
    assert windows[2].owned_indices == (8, 9)


def test_short_video_is_loop_padded_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="motion_relevance.video.clips"):
        (window,) = plan_windows(3, 8, first_index=10)
    assert window.padded and window.frame_indices == (10, 11, 12, 10, 11, 12, 10, 11)
    assert window.owned_indices == (10, 11, 12)
    assert "loop-padding" in caplog.text
    (window,) = plan_windows(3, 8, min_length=2)  # a model that takes short clips: no padding
    assert not window.padded and window.frame_indices == (0, 1, 2)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 40),
    length=st.integers(1, 12),
    stride=st.integers(1, 15),
    use_min=st.booleans(),
)
def test_streaming_windows_equal_planned_windows(n: int, length: int, stride: int, use_min: bool) -> None:
    min_length = max(1, length // 2) if use_min else None
    planned = plan_windows(n, length, stride=stride, min_length=min_length, first_index=3)
    frames = [(3 + i, np.full((1, 1, 3), i, np.uint8)) for i in range(n)]
    streamed = list(iter_windows(iter(frames), length, stride=stride, min_length=min_length))
    assert tuple(w for w, _ in streamed) == planned
    for window, clip in streamed:
        assert clip.shape[0] == window.length
        np.testing.assert_array_equal(clip[:, 0, 0, 0], np.array(window.frame_indices) - 3)
    owned = [i for w in planned for i in w.owned_indices]
    assert len(owned) == len(set(owned))  # no frame is owned twice
    if stride <= length:  # and without gaps every frame is owned once, in order
        assert owned == list(range(3, 3 + n))


def test_sample_clips_and_iter_clips_agree(tmp_path: Path) -> None:
    path = make_video(tmp_path / "a.mp4", moving_square_frames(11), fps=10)
    video = read_video(path)
    clips = sample_clips(video, 4, stride=3, start=0.2)
    assert clips.frames.shape == (3, 4, 48, 64, 3)
    streamed = list(iter_clips(path, 4, stride=3, start=0.2))
    assert tuple(w for w, _ in streamed) == clips.windows
    np.testing.assert_array_equal(np.stack([f for _, f in streamed]), clips.frames)
    assert clips.windows[0].frame_indices == (2, 3, 4, 5)
    np.testing.assert_array_equal(clips.frames[1], video.frames[5:9])


def test_clip_arguments_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="clip length"):
        plan_windows(5, 0)
    with pytest.raises(InvalidInputError, match="stride"):
        plan_windows(5, 2, stride=0)
    with pytest.raises(VideoError, match="no frames"):
        list(iter_windows(iter([]), 4))


def test_helpers_make_what_they_say(tmp_path: Path) -> None:
    frames = moving_square_frames(6)
    assert frames.shape == (6, 48, 64, 3) and frames.dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])  # the square moves
    info = probe(make_video(tmp_path / "a.mp4", frames))
    assert (info.num_frames, info.height, info.width, info.codec) == (6, 48, 64, "h264")
    gray = make_raw_video(tmp_path / "g.mov", frames[..., 0], "gray")
    assert probe(gray).pix_fmt == "gray"
