"""Users see the motion score (issue 12 item 5): explain's summary, report and printout carry the
calibrated score beside the paper's share; ties and context frames reach the explanation; the
report's overlays use one high-percentile scale per method, robust to outliers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from motion_relevance.attribution import explain
from motion_relevance.cli import main
from motion_relevance.motion_score import motion_score
from motion_relevance.report import explain_video, read_report
from motion_relevance.report.overlay import ALPHA, GAMMA, DisplayScale, colorize
from motion_relevance.report.pipeline import MEANINGS
from motion_relevance.report.viewer import quantise_window
from motion_relevance.runs import ExplainSettings, with_context
from motion_relevance.video import ClipWindow, iter_clips
from motion_relevance.video.clips import iter_windows
from tiny_models import SPEC, TinyNet
from videos import make_video, moving_square_frames

MODEL = ["--model", "synthetic-motion", "--weights", "random"]


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "square.mp4", moving_square_frames(20, 36, 48), fps=10)


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One frame of the moving-square video repeated: nothing moves."""
    frame = moving_square_frames(1, 48, 64)
    return make_video(tmp_path_factory.mktemp("frozen") / "frozen.mp4", np.repeat(frame, 16, axis=0), fps=10)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------ motion score


def test_summary_motion_score_is_motion_score_of_each_window(tmp_path: Path, tiny: nn.Module, clip: Path) -> None:
    result = explain_video(clip, tmp_path / "out", model=tiny, spec=SPEC, methods="saliency", target=1)
    summary = json.loads(result.summary.read_text())
    # Reference: motion_score of each window's saliency, weighted by the frames it owns; the
    # saliency by plain autograd here (preprocessing has its own oracle, test_preprocess_oracle)
    weighted = owned = 0.0
    for window, frames in iter_clips(clip, SPEC):
        x = SPEC.preprocess(frames).requires_grad_(True)
        tiny(x)[:, 1].sum().backward()
        rel = x.grad
        weighted += float(motion_score(rel)[0]) * window.num_owned
        owned += window.num_owned
    got = summary["methods"]["saliency"]["motion_score"]
    assert got == pytest.approx(weighted / owned, rel=1e-6)
    assert 0.0 < got < 1.0 and got != pytest.approx(summary["methods"]["saliency"]["motion_share"], abs=1e-3)
    assert summary["definitions"]["motion_score"].startswith(MEANINGS["motion_score"])
    assert summary["ties"] == "first" and summary["context_frames"] == 0
    assert {"ties", "context_frames"} <= set(summary["definitions"])
    # The report shows the score beside the paper's share, with a one-line meaning each.
    data = read_report(result.report)
    assert data.meta["methods"][0]["motion_score"] == got
    html = result.report.read_text()
    assert f'id="mr-0-score">{100 * got:.1f}%</output>' in html
    assert "motion share (paper)" in html
    assert MEANINGS["motion_score"] in html
    assert "relative threshold: also high for tiny flicker" in html


def test_cli_explain_prints_score_share_and_meanings(tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, err = run(["explain", str(clip), *MODEL, "--method", "saliency", "--out", str(out)], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())["methods"]["saliency"]
    line = next(s for s in stdout.splitlines() if s.startswith("saliency"))
    assert f"motion score {100 * summary['motion_score']:5.1f}%" in line
    assert f"motion share (paper) {100 * summary['motion_share']:5.1f}%" in line
    assert f"motion score: {MEANINGS['motion_score']}" in stdout
    assert f"motion share (paper): {MEANINGS['motion_share']}" in stdout


# -------------------------------------------------------------------- ties and context frames


def test_ties_shared_changes_the_maps_of_a_max_pool_model_on_a_frozen_clip(
    tmp_path: Path, frozen: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maps = {}
    for ties in ("first", "shared", "first"):
        out = tmp_path / f"{ties}-{len(maps)}"
        torch.manual_seed(0)  # the same random weights every time
        code, _, err = run(["explain", str(frozen), *MODEL, "--method", "saliency", "--target", "0",
                            "--ties", ties, "--out", str(out)], capsys)  # fmt: skip
        assert code == 0, err
        assert json.loads((out / "summary.json").read_text())["ties"] == ties
        maps[ties if ties not in maps else "again"] = read_report(out / "report.html").windows["saliency"][0]
    first, shared = maps["first"], maps["shared"]
    assert np.array_equal(first.magnitude, maps.pop("again").magnitude)  # deterministic: only ties differ
    assert not np.array_equal(first.magnitude, shared.magnitude)
    # Shared ties remove the frame-to-frame comb that first-index ties stamp on a static clip.
    per_frame = {k: v.magnitude.astype(np.float64).sum(axis=(1, 2)) * v.magnitude_scale for k, v in maps.items()}
    spread = {k: float(np.std(np.diff(v[2:-2]))) / float(np.mean(v)) for k, v in per_frame.items()}
    assert spread["shared"] < spread["first"]


def test_context_frames_on_a_fixed_length_preset_is_one_line(tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, err = run(["explain", str(clip), *MODEL, "--method", "saliency", "--context-frames", "2",
                             "--out", str(tmp_path / "out")], capsys)  # fmt: skip
    assert code == 2 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "context_frames" in lines[0], err
    assert list(tmp_path.iterdir()) == []  # no output, no temporary folder
    code, _, err = run(["explain", str(clip), *MODEL, "--method", "saliency", "--context-frames", "-1",
                        "--out", str(tmp_path / "out")], capsys)  # fmt: skip
    assert code == 2 and err.startswith("error: context_frames must be an integer >= 0")
    with pytest.raises(Exception, match="ties must be one of"):
        ExplainSettings("middle")


def test_context_comes_from_the_real_neighbouring_frames() -> None:
    frames = ((i, np.full((2, 2, 3), i, np.uint8)) for i in range(11))
    got = [(w.frame_indices, x[:, 0, 0, 0].tolist()) for w, _, x in with_context(iter_windows(frames, 4), 2)]
    assert got == [
        ((0, 1, 2, 3), [0, 0, 0, 1, 2, 3, 4, 5]),  # the video's start: the edge frame repeats
        ((4, 5, 6, 7), [2, 3, 4, 5, 6, 7, 8, 9]),  # real frames on both sides
        ((7, 8, 9, 10), [5, 6, 7, 8, 9, 10, 10, 10]),  # the overlapping last window, the video's end
    ]
    frames = ((i, np.full((1, 1, 3), i, np.uint8)) for i in range(11))
    got = [x[:, 0, 0, 0].tolist() for _, _, x in with_context(iter_windows(frames, 4, stride=3), 5)]
    assert got[2] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10, 10]  # reads ahead over several windows
    assert got[3] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10, 10, 10]


def test_explain_video_with_context_equals_explaining_with_the_neighbours(tmp_path: Path, tiny: nn.Module, clip: Path) -> None:
    spec = dataclasses.replace(SPEC, min_frames=4)
    result = explain_video(clip, tmp_path / "out", model=tiny, spec=spec, methods="saliency", target=1, context_frames=3)
    summary = json.loads(result.summary.read_text())
    assert summary["context_frames"] == 3
    video = np.stack([f for _, f in iter_clips(clip, 1)])[:, 0]  # every frame, in order
    weighted = owned = 0.0
    for window, frames in iter_clips(clip, spec):
        first, last = window.frame_indices[0], window.frame_indices[-1]
        before = video[max(0, first - 3) : first]
        after = video[last + 1 : last + 4]
        context = tuple(spec.preprocess(side) if len(side) else None for side in (before, after))
        rel = explain(tiny, spec.preprocess(frames), "saliency", target=1, spec=spec, context_frames=3, context=context).relevance
        plain = explain(tiny, spec.preprocess(frames), "saliency", target=1, spec=spec, context_frames=3).relevance
        if first > 0 and last < len(video) - 1:
            assert not torch.allclose(rel, plain)  # the real neighbours are not the repeated edge frame
        weighted += float(motion_score(rel)[0]) * window.num_owned
        owned += window.num_owned
    assert summary["methods"]["saliency"]["motion_score"] == pytest.approx(weighted / owned, rel=1e-5)


# ------------------------------------------------------------------------ visible overlays


def test_display_scale_is_the_high_percentile_over_all_maps() -> None:
    rng = np.random.default_rng(0)
    maps = [rng.standard_cauchy((3, 20, 20)) * 10.0**k for k in (-6, -5, -4)]
    scale = DisplayScale(99.5)
    for m in maps:
        scale.add(m)
    exact = float(np.percentile(np.abs(np.concatenate([m.ravel() for m in maps])), 99.5))
    assert exact <= scale.value() <= exact * 1.02
    assert DisplayScale().value() == 1.0
    sparse = DisplayScale()
    sparse.add(np.array([0.0] * 999 + [-4.0]))
    assert sparse.value() == 4.0  # the percentile falls among zeros: the largest value


def test_one_huge_voxel_does_not_hide_the_rest_of_the_map() -> None:
    rng = np.random.default_rng(1)
    rel = rng.uniform(0.2, 1.0, size=(3, 4, 16, 16)).astype(np.float32)
    rel[:, 1, 5, 5] = 1e6  # one outlier voxel
    window = ClipWindow(0, (0, 1, 2, 3), 0, 4)
    d = np.abs(rel.sum(0))[None]
    vw = quantise_window(rel, d, window)
    scale = DisplayScale()
    scale.add(rel.sum(0))
    vmax = scale.value()
    # What the report's viewer draws: int8 value * e_scale / the method's scale, clipped, alpha.
    x = np.clip(vw.relevance.astype(np.float64) * vw.relevance_scale / vmax, -1, 1)
    alpha = ALPHA * np.abs(x) ** GAMMA
    visible = ALPHA * 0.2**GAMMA  # a fifth of full colour
    assert (alpha >= visible).mean() > 0.9
    # The videos and filmstrip draw the same maps with the same scale.
    drawn = colorize(vw.relevance.astype(np.float32) * vw.relevance_scale, vmax=vmax)[..., 3]
    assert (drawn >= visible - 1e-6).mean() > 0.9
    # A scale set by the peak (one voxel) would have hidden almost everything.
    assert (ALPHA * np.clip(np.abs(rel.sum(0)) / np.abs(rel.sum(0)).max(), 0, 1) ** GAMMA >= visible).mean() < 0.01
