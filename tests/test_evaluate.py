"""The evidence benchmark: trained presets, the evaluation table's structure and invariants,
its files, and the `evaluate` command. Checks structure and invariants, not particular values."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from motion_relevance.errors import OutputError, WeightsError
from motion_relevance.metrics.evaluate import (
    COLUMNS,
    SECTIONS,
    EvaluationConfig,
    example_videos,
    run_evaluation,
)
from motion_relevance.models import synthetic_presets
from motion_relevance.models.synthetic_presets import (
    SYNTHETIC_PRESETS,
    build_synthetic,
    synthetic_weights_available,
)
from motion_relevance.report.evaluation import FILES, write_evaluation

PRESETS = tuple(SYNTHETIC_PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_trained_presets_load(name: str) -> None:
    from motion_relevance.models import load_model

    assert synthetic_weights_available(name)
    model, spec = load_model(name)
    assert not model.training
    assert spec.frames == 16 and spec.size == (64, 64) and len(spec.labels) == 4
    assert spec.cam_layer == "features.conv4"
    assert dict(model.named_modules())[spec.cam_layer] is not None
    x = torch.zeros(2, 3, 16, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 4)
    assert weights_size(name) < 1_000_000


def weights_size(name: str) -> int:
    return len(synthetic_presets.weights_resource(name).read_bytes())


def test_corrupt_weights_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(synthetic_presets.WEIGHTS_SHA256, "synthetic-motion", "0" * 64)
    with pytest.raises(WeightsError, match="sha256"):
        build_synthetic("synthetic-motion")


TINY = EvaluationConfig(
    methods=("saliency", "gradcam"),
    sigmas=(0.5, 1.0),
    clips=8,
    frozen_clips=4,
    accuracy_clips=96,
    decomposition_methods=("saliency",),
    decomposition_clips=2,
)


@pytest.fixture(scope="module")
def evaluation():
    torch.manual_seed(0)
    return run_evaluation(TINY)


def test_table_structure(evaluation) -> None:
    sections = {r.section for r in evaluation.rows}
    assert sections <= set(SECTIONS)
    assert {"accuracy", "precision", "frozen", "deletion", "separation", "decomposition",
            "summary"} <= sections
    for model in PRESETS:
        for method in TINY.methods:
            for sigma in TINY.sigmas:
                for metric in ("precision_base", "precision_selective", "motion_share",
                               "sparsity_ratio", "recall_selective"):
                    rows = evaluation.select(section="precision", model=model, method=method,
                                             sigma=sigma, metric=metric)
                    assert len(rows) == 1, (model, method, sigma, metric)
                    assert rows[0].n <= TINY.clips
    assert any("no real videos" in n for n in evaluation.notes)


def test_invariants(evaluation) -> None:
    for r in evaluation.rows:
        if r.metric.startswith(("precision", "recall", "f1", "motion_share", "auroc")):
            assert math.isnan(r.value) or 0.0 <= r.value <= 1.0, r
        if r.metric == "sparsity_ratio":
            assert r.value <= 1.0, r
        if r.metric == "removed_fraction":
            assert 0.0 <= r.value <= 1.0
    # Per clip, too: selective sparsity never exceeds the base.
    for d in evaluation.distributions:
        if d.metric.startswith("precision"):
            v = d.values[~np.isnan(d.values)]
            assert ((v >= 0) & (v <= 1)).all()


def test_motion_model_is_at_chance_on_frozen_clips(evaluation) -> None:
    n = TINY.accuracy_clips
    acc = evaluation.value("accuracy", "synthetic-motion", "", None, "test_accuracy")
    frozen = evaluation.value("accuracy", "synthetic-motion", "", None, "frozen_accuracy")
    chance = evaluation.value("accuracy", "synthetic-motion", "", None, "chance")
    assert chance == 0.25
    # Binomial 99.9 % band around chance for n clips.
    band = 3.3 * math.sqrt(chance * (1 - chance) / n)
    assert abs(frozen - chance) <= band, frozen
    assert acc > chance + band  # the model did learn the motion
    # The appearance model keeps its accuracy on frozen clips (its label is in every frame).
    app = evaluation.value("accuracy", "synthetic-appearance", "", None, "frozen_accuracy")
    assert app > chance + band


def test_files(evaluation, tmp_path: Path) -> None:
    out = tmp_path / "results"
    paths = write_evaluation(evaluation, out, command="motion-relevance evaluate --quick")
    assert [p.name for p in paths] == list(FILES)
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == COLUMNS and len(rows) == len(evaluation.rows) + 1
    md = (out / "results.md").read_text()
    assert "motion-relevance evaluate --quick" in md and "| method |" in md
    for name in FILES:
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        write_evaluation(evaluation, a_file)


def test_real_video_part_on_a_written_clip(tmp_path: Path) -> None:
    """The optical-flow path, run offline with a synthetic preset standing in for I3D."""
    from motion_relevance.synthetic import generate
    from motion_relevance.video import write_video

    frames = generate("motion", 1, frames=20).frames[0]
    video = write_video(tmp_path / "clip.mp4", frames, fps=10)
    cfg = EvaluationConfig(models=("synthetic-motion",), methods=("saliency",), sigmas=(1.0,),
                           clips=2, frozen_clips=1, accuracy_clips=4, decomposition_methods=(),
                           real_videos=(str(video),), real_model="synthetic-motion",
                           real_methods=("saliency",), real_frames=16, real_max_side=None)
    ev = run_evaluation(cfg)
    base = ev.value("flow", "synthetic-motion", "saliency", 1.0, "flow_precision_base")
    sel = ev.value("flow", "synthetic-motion", "saliency", 1.0, "flow_precision_selective")
    assert 0.0 <= base <= 1.0 and (math.isnan(sel) or 0.0 <= sel <= 1.0)
    assert 0.0 < ev.value("flow", "synthetic-motion", "saliency", None, "flow_mask_fraction") < 1.0
    assert example_videos(tmp_path) == (str(video),)


def test_evaluate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from motion_relevance.cli import main

    out = tmp_path / "ev"
    code = main(["evaluate", "--quick", "--no-real", "--methods", "input_x_gradient",
                 "--sigmas", "1", "--clips", "4", "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert "--quick" in (out / "results.md").read_text()

    bad = tmp_path / "bad"
    assert main(["evaluate", "--quick", "--no-real", "--sigmas", "one", "--out", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err and not bad.exists()
    assert main(["evaluate", "--quick", "--methods", "nope", "--no-real", "--out", str(bad)]) == 2
    assert not bad.exists()
