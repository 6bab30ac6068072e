"""explain_video end to end with a tiny random model: files, numbers, windows, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from motion_relevance.errors import InvalidInputError, OutputError, UnknownNameError
from motion_relevance.report import explain_video, read_report, viewer_stats
from motion_relevance.runs import steps as steps_module
from motion_relevance.video import probe, read_video
from tiny_models import SPEC, TinyNet, float_path_share
from videos import make_video, moving_square_frames


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "square.mp4", moving_square_frames(20, 36, 48), fps=10)


def test_outputs_and_numbers(tmp_path: Path, tiny: nn.Module, clip: Path) -> None:
    out = tmp_path / "out"
    result = explain_video(clip, out, model=tiny, spec=SPEC, methods="saliency,gradcam", sigma=0.8)
    assert sorted(p.name for p in out.iterdir()) == ["filmstrip.png", "gradcam.mp4", "report.html", "saliency.mp4", "summary.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left beside it
    summary = json.loads((out / "summary.json").read_text())
    assert summary["video"]["frames"] == 20 and summary["video"]["windows"] == 3
    assert len(summary["predictions"]) == 5
    assert [p["label"] for p in summary["predictions"]] == [SPEC.labels[p["index"]] for p in summary["predictions"]]
    probs = [p["probability"] for p in summary["predictions"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0)
    assert summary["target"]["index"] == summary["predictions"][0]["index"] == result.target
    for name in ("saliency", "gradcam"):
        m = summary["methods"][name]
        assert set(m) >= {"motion_share", "sparsity", "sigma", "seconds"}
        assert 0.0 <= m["motion_share"] <= 1.0 and 0.0 <= m["sparsity"] <= 1.0 and m["sigma"] == 0.8
        assert m["seconds"] > 0
    # The summary's motion share is the float32 pipeline's, over each frame once.
    assert summary["methods"]["saliency"]["motion_share"] == pytest.approx(
        float_path_share(tiny, clip, result.target, 0.8), rel=1e-6
    )
    # Side-by-side video: every frame once, frame | base | motion.
    info = probe(out / "saliency.mp4")
    assert info.num_frames == 20 and (info.height, info.width) == (36, 3 * 48)
    video = read_video(out / "saliency.mp4")
    original = read_video(clip).frames
    # First panel: the frame itself (below the label band).
    assert np.abs(video.frames[:, 20:, :48].astype(int) - original[:, 20:]).mean() < 6
    # The report holds every frame once and its numbers at the CLI sigma are close to the summary's.
    data = read_report(out / "report.html")
    assert data.meta["frames"] == 20 and data.meta["sigma"] == 0.8
    assert [len(w) for w in data.windows.values()] == [3, 3]
    share = viewer_stats(data.windows["saliency"], 0.8).motion_share
    assert share == pytest.approx(summary["methods"]["saliency"]["motion_share"], abs=2e-3)


def test_target_by_label_index_and_range(tmp_path: Path, tiny: nn.Module, clip: Path) -> None:
    by_label = explain_video(clip, tmp_path / "l", model=tiny, spec=SPEC, target="C", start=0.5, end=1.5)
    assert by_label.target == 2 and by_label.target_label == "c"
    assert by_label.frames == 10 and by_label.windows == 2
    summary = json.loads(by_label.summary.read_text())
    assert summary["video"]["first_index"] == 5 and summary["target"]["chosen"] == "given"
    assert explain_video(clip, tmp_path / "i", model=tiny, spec=SPEC, target="4").target == 4
    for bad, error in (("zebra", UnknownNameError), (7, InvalidInputError)):
        with pytest.raises(error):
            explain_video(clip, tmp_path / "bad", model=tiny, spec=SPEC, target=bad)
        assert not (tmp_path / "bad").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i", "l"]


def test_failure_midway_leaves_nothing(tmp_path: Path, tiny: nn.Module, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = steps_module.selective_relevance  # the selective step of every run

    def failing(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise InvalidInputError("boom")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(steps_module, "selective_relevance", failing)
    with pytest.raises(InvalidInputError, match="boom"):
        explain_video(clip, tmp_path / "deep" / "out", model=tiny, spec=SPEC)
    assert list(tmp_path.iterdir()) == []  # not even the parent folder it created


def test_earlier_output_is_replaced_but_other_folders_are_not(tmp_path: Path, tiny: nn.Module, clip: Path) -> None:
    out = tmp_path / "out"
    explain_video(clip, out, model=tiny, spec=SPEC, methods=["saliency"])
    explain_video(clip, out, model=tiny, spec=SPEC, methods=["gradcam"])
    assert sorted(p.name for p in out.iterdir()) == ["filmstrip.png", "gradcam.mp4", "report.html", "summary.json"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    with pytest.raises(OutputError, match="not an earlier output"):
        explain_video(clip, precious, model=tiny, spec=SPEC)
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]
    with pytest.raises(OutputError, match="writable"):
        explain_video(clip, precious / "thesis.tex" / "out", model=tiny, spec=SPEC)


def test_argument_checks(tmp_path: Path, tiny: nn.Module, clip: Path) -> None:
    with pytest.raises(UnknownNameError, match="unknown method"):
        explain_video(clip, tmp_path / "o", model=tiny, spec=SPEC, methods="saliency,nope")
    with pytest.raises(InvalidInputError, match="stride"):
        explain_video(clip, tmp_path / "o", model=tiny, spec=SPEC, stride=9)
    with pytest.raises(InvalidInputError, match="not run"):
        explain_video(clip, tmp_path / "o", model=tiny, spec=SPEC, method_options={"gradcam": {}})
    with pytest.raises(InvalidInputError, match="sigma"):
        explain_video(clip, tmp_path / "o", model=tiny, spec=SPEC, sigma=-1)
    assert list(tmp_path.iterdir()) == []


def test_overlapping_windows_show_every_frame_once(tmp_path: Path, tiny: nn.Module, clip: Path) -> None:
    result = explain_video(clip, tmp_path / "o", model=tiny, spec=SPEC, stride=3, methods="saliency")
    assert result.windows == 5  # starts 0, 3, 6, 9, 12 (the last ends on frame 19)
    data = read_report(result.report)
    windows = data.windows["saliency"]
    assert [w.window.first_owned for w in windows] == [0, 5, 5, 5, 5]
    assert sum(w.window.num_owned for w in windows) == data.meta["frames"] == 20
    assert probe(result.videos["saliency"]).num_frames == 20
