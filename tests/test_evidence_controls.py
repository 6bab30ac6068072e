"""The control run (``evaluate --controls``): models of known motion reliance explained on the
same clips, every explanation-based motion number beside the behavioural reliance."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from motion_relevance.cli import main
from motion_relevance.evidence.controls import ControlConfig, run_controls

QUICK = ControlConfig(methods=("saliency",), clips=4, seeds=(0,), resamples=50, permutations=4)


@pytest.fixture(scope="module")
def rows():
    return run_controls(QUICK)


def _reliance(rows, kind: str) -> list[float]:
    return [r.value for r in rows if r.kind == kind and r.number == "motion_reliance"]


def test_the_order_invariant_control_reads_exactly_zero_reliance(rows) -> None:
    (row,) = [r for r in rows if r.kind == "order-invariant" and r.number == "motion_reliance"]
    assert (row.value, row.low, row.high) == (0.0, 0.0, 0.0)


def test_the_frame_difference_control_reads_far_above_the_appearance_controls(rows) -> None:
    # (the >= 0.9 property of a frame-difference model is pinned in test_motion_reliance; here, on
    # the graded scenes with 4 orders and 4 clips, it read 0.89)
    assert min(_reliance(rows, "frame-difference")) >= 0.8
    assert min(_reliance(rows, "frame-difference")) > max(_reliance(rows, "appearance")) + 0.5


def test_every_control_has_its_reliance_and_each_methods_numbers(rows) -> None:
    names = {r.control for r in rows}
    assert len(names) >= 5
    for name in names:
        numbers = {(r.method, r.number) for r in rows if r.control == name}
        assert ("", "motion_reliance") in numbers
        assert {("saliency", n) for n in ("motion_score", "motion_share", "b0_input_change")} <= numbers


def test_cli_writes_the_table_and_refuses_too_few_clips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "controls"
    assert main(["evaluate", "--controls", "--methods", "saliency", "--clips", "3", "--out", str(out)]) == 0
    table = (out / "controls.md").read_text()
    assert "motion reliance" in table and "bag-of-frames-s0" in table
    with (out / "controls.csv").open() as f:
        assert {"control", "kind", "method", "number", "value", "low", "high"} <= set(next(csv.reader(f)))
    capsys.readouterr()
    assert main(["evaluate", "--controls", "--clips", "1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "2 clips" in err and not (tmp_path / "bad").exists()


def test_a_models_order_invariant_control_ignores_order_and_averages_frozen_clips() -> None:
    import torch

    import motion_relevance as mr
    from motion_relevance.evidence.real import OrderInvariant, video_split
    from tiny_models import TinyNet

    torch.manual_seed(0)
    backbone = TinyNet().eval()
    control = OrderInvariant(backbone).eval()
    x = torch.randn(2, 3, 6, 16, 16)
    with torch.no_grad():
        want = torch.stack([
            torch.stack([backbone(x[i : i + 1, :, t : t + 1].expand(1, 3, 6, 16, 16)) [0] for t in range(6)]).mean(0)
            for i in range(2)
        ])  # fmt: skip
        assert torch.allclose(control(x), want, atol=1e-6)
        assert torch.allclose(control(x[:, :, torch.randperm(6)]), control(x), atol=1e-6)
    assert torch.all(mr.motion_reliance(control, x, permutations=4).score == 0)
    assert mr.motion_reliance(backbone, x, permutations=4).score.shape == (2,)
    assert {video_split(f"v{i}.mp4") for i in range(20)} == {"val", "test"}
    assert video_split("a.mp4") == video_split("a.mp4")
