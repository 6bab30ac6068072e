"""`motion-relevance explain`: outputs, odd-but-valid videos, and every bad input -> one line,
exit status 2, no output folder left behind."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from motion_relevance.cli import main
from videos import (
    make_audio_only,
    make_corrupt,
    make_raw_video,
    make_video,
    make_zero_frame_video,
    moving_square_frames,
)

MODEL = ["--model", "synthetic-motion", "--weights", "random"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    good = make_video(d / "good.mp4", moving_square_frames(20, 48, 64), fps=10)
    frames = moving_square_frames(18, 40, 56)
    text = d / "notes.mp4"
    text.write_text("definitely not a video\n" * 50)
    return {
        "good": good,
        "short": make_video(d / "short.mp4", moving_square_frames(5, 48, 64), fps=10),
        "gray": make_raw_video(d / "gray.mov", frames[..., 0], "gray"),
        "alpha": make_raw_video(d / "alpha.mov", np.concatenate([frames, np.full((*frames.shape[:3], 1), 200, np.uint8)], -1), "rgba"),
        "large": make_video(d / "large.mp4", moving_square_frames(3, 1600, 2400), fps=10),
        "text": text,
        "corrupt": make_corrupt(d / "cut.mp4", good),
        "audio": make_audio_only(d / "sound.wav"),
        "empty": make_zero_frame_video(d / "none.avi"),
    }


def test_explain_writes_the_report(tmp_path: Path, videos: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run(["explain", str(videos["good"]), *MODEL, "--method", "saliency,gradcam", "--sigma", "1.5",
                           "--target", "left", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0
    assert f"report: {out / 'report.html'}" in stdout
    assert {p.name for p in out.iterdir()} == {"report.html", "saliency.mp4", "gradcam.mp4", "filmstrip.png", "summary.json"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == {"index": 1, "label": "left", "chosen": "given"}
    assert summary["sigma"] == 1.5 and set(summary["methods"]) == {"saliency", "gradcam"}
    assert [p["label"] for p in summary["predictions"]] == [["right", "left", "down", "up"][p["index"]] for p in summary["predictions"]]


def test_method_options_reach_the_method(tmp_path: Path, videos: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["explain", str(videos["good"]), *MODEL, "--method", "integrated_gradients",
                      "--option", "integrated_gradients.n_steps=3", "--out", str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["methods"]["integrated_gradients"]["options"] == {"n_steps": 3}


@pytest.mark.parametrize("kind", ["gray", "alpha", "large", "short"])
def test_unusual_videos_still_work(
    kind: str, tmp_path: Path, videos: dict[str, Path], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code, _, err = run(["explain", str(videos[kind]), *MODEL, "--method", "saliency", "--out", str(out)], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())["video"]
    if kind == "large":  # 2400 px wide: downscaled to 1280 before the model
        assert (summary["width"], summary["height"]) == (1280, 854)
    if kind in ("short", "large"):  # 5 or 3 frames for a 16-frame model: loop-padded, warned once
        assert summary["loop_padded"] and summary["frames"] == {"short": 5, "large": 3}[kind]
        assert caplog.text.count("loop-padding") == 1
    else:
        assert not summary["loop_padded"] and summary["frames"] == 18


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing", "not found"),
        ("text", "cannot open it as a video"),
        ("corrupt", "cannot open it as a video"),
        ("audio", "no video stream"),
        ("empty", "no video frames"),
        ("unwritable", "cannot write"),
        ("method", "unknown method 'nope'"),
        ("model", "unknown model 'nope'"),
        ("label", "unknown label 'zebra'"),
        ("index", "out of range"),
        ("range", "no frames between"),
        ("sigma", "sigma"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(
    case: str, words: str, tmp_path: Path, videos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    video = {"missing": tmp_path / "nope.mp4"}.get(case, videos.get(case, videos["good"]))
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    out = blocker / "out" if case == "unwritable" else tmp_path / "out"
    argv = ["explain", str(video), *MODEL, "--method", "saliency", "--out", str(out)]
    extra = {
        "method": ["--method", "saliency,nope"],
        "model": ["--model", "nope"],
        "label": ["--target", "zebra"],
        "index": ["--target", "99"],
        "range": ["--start", "30"],
        "sigma": ["--sigma", "-2"],
    }
    code, _, err = run(argv + extra.get(case, []), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # no output, no temp folder


def test_console_script_exit_status(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("motion-relevance")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "motion_relevance.cli"]
    proc = subprocess.run([*command, "explain", str(tmp_path / "missing.mp4"), *MODEL, "--method", "saliency",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: video file not found: {tmp_path / 'missing.mp4'}; check the path"]
    assert not (tmp_path / "o").exists()
