"""Users see the motion reliance (``mr.motion_reliance``) wherever explain shows motion numbers:
stdout, ``summary.json`` and the report, with its one-line meaning; it is the windows' numbers
averaged by the frames each owns; ``--reliance 0`` leaves it out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import motion_relevance as mr
from motion_relevance.cli import main
from motion_relevance.evidence.controls import BagOfFrames
from motion_relevance.report import explain_video
from motion_relevance.report.pipeline import MEANINGS
from tiny_models import SPEC, TinyNet
from videos import make_video, moving_square_frames

MODEL = ["--model", "synthetic-motion", "--weights", "random"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "square.mp4", moving_square_frames(20, 36, 48), fps=10)


def test_the_summary_holds_the_windows_reliance_weighted_by_owned_frames(tmp_path: Path, clip: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet().eval()
    result = explain_video(clip, tmp_path / "out", model=model, spec=SPEC, methods="saliency", target=1, reliance=4)
    summary = json.loads(result.summary.read_text())
    reliance = summary["motion_reliance"]
    assert reliance["permutations"] == 4 and result.reliance is not None
    assert 0 <= reliance["low"] <= reliance["score"] <= reliance["high"] <= 1
    # by hand: every window's reliance, with the seed the stream gives it, weighted by the frames it owns
    weighted = owned = 0.0
    for window, frames in mr.video.iter_clips(clip, SPEC):
        r = mr.motion_reliance(model, SPEC.preprocess(frames), target=1, permutations=4, seed=0)
        weighted += float(r.score[0]) * window.num_owned
        owned += window.num_owned
    assert reliance["score"] == pytest.approx(weighted / owned, abs=1e-6)
    assert set(reliance["effects"]) == {"permutation", "block-2", "block-4", "block-8", "reversal", "freeze"}
    assert summary["definitions"]["motion_reliance"].startswith(MEANINGS["motion_reliance"])
    html = result.report.read_text()
    assert 'id="mr-reliance"' in html and MEANINGS["motion_reliance"] in html


def test_an_order_invariant_model_reads_zero_reliance_end_to_end(tmp_path: Path, clip: Path) -> None:
    result = explain_video(clip, tmp_path / "out", model=BagOfFrames(classes=5).eval(), spec=SPEC, methods="saliency")
    assert result.reliance is not None and result.reliance.score == 0 and result.reliance.high == 0


def test_cli_explain_prints_the_reliance_with_its_meaning(tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["explain", str(clip), *MODEL, "--method", "saliency", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    reliance = json.loads((out / "summary.json").read_text())["motion_reliance"]
    assert f"motion reliance {100 * reliance['score']:5.1f}%" in stdout and "8 frame orders per window" in stdout
    assert f"motion reliance: {MEANINGS['motion_reliance']}" in stdout


def test_reliance_zero_leaves_it_out(tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["explain", str(clip), *MODEL, "--method", "saliency", "--reliance", "0", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["motion_reliance"] is None
    assert "motion reliance" not in stdout and 'id="mr-reliance"' not in (out / "report.html").read_text()


@pytest.mark.parametrize("bad", ["1", "-2"])
def test_a_bad_reliance_count_is_a_one_line_error(tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    out = tmp_path / "out"
    assert main(["explain", str(clip), *MODEL, "--method", "saliency", "--reliance", bad, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: reliance permutations") and len(err.strip().splitlines()) == 1
    assert not out.exists()


class OneLogit(nn.Module):
    """A model with a single output: explainable, but its evidence has no log-odds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, kernel_size=3, padding=1)
        self.fc = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


def test_a_model_whose_reliance_cannot_be_measured_still_gets_its_explanation(
    tmp_path: Path, clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import dataclasses

    torch.manual_seed(0)
    spec = dataclasses.replace(SPEC, labels=None)
    with caplog.at_level("WARNING"):
        result = explain_video(clip, tmp_path / "out", model=OneLogit().eval(), spec=spec, methods="saliency", target=0)
    assert result.reliance is None and json.loads(result.summary.read_text())["motion_reliance"] is None
    assert "motion reliance not measured" in caplog.text and "2 or more classes" in caplog.text
