"""The evidence benchmark v2: the shipped models, the run's structure and invariants, the
choice of settings on validation, its files, and the `evaluate` command."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from motion_relevance.errors import InvalidInputError, OutputError, WeightsError
from motion_relevance.evidence.benchmark import (
    COLUMNS,
    SECTIONS,
    EvaluationConfig,
    example_videos,
    flicker,
    input_change_mask,
    random_mask_like,
    run_evaluation,
    share_on,
)
from motion_relevance.evidence.files import FILES, write_evaluation
from motion_relevance.models import synthetic_presets
from motion_relevance.models.synthetic_presets import (
    GRADED_SHA256,
    SYNTHETIC_PRESETS,
    build_synthetic,
    synthetic_weights_available,
)

PRESETS = tuple(SYNTHETIC_PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_trained_presets_load(name: str) -> None:
    from motion_relevance.models import load_model

    assert synthetic_weights_available(name)
    model, spec = load_model(name)
    assert not model.training
    assert spec.frames == 16 and len(spec.labels) == 4
    assert spec.size == ((32, 32) if name in GRADED_SHA256 else (64, 64))
    assert dict(model.named_modules())[spec.cam_layer] is not None
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 16, *spec.size)).shape == (2, 4)
    assert len(synthetic_presets.weights_resource(name).read_bytes()) < 1_000_000


def test_corrupt_weights_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(synthetic_presets.WEIGHTS_SHA256, "synthetic-motion", "0" * 64)
    with pytest.raises(WeightsError, match="sha256"):
        build_synthetic("synthetic-motion")
    graded = next(iter(GRADED_SHA256))
    monkeypatch.setitem(synthetic_presets.WEIGHTS_SHA256, graded, "0" * 64)
    with pytest.raises(WeightsError, match="sha256"):
        build_synthetic(graded)


def test_baseline_helpers_against_direct_computation() -> None:
    frames = np.zeros((1, 4, 2, 2, 3), np.uint8)
    frames[0, 2, 0, 0] = 9  # one pixel changes at t=2: neighbours t=1 and t=3 see it
    changed = input_change_mask(frames)
    assert changed[0, :, 0, 0].tolist() == [False, True, False, True]
    assert not changed[0, :, 1].any()
    rel = torch.zeros(1, 3, 4, 2, 2)
    rel[0, 0, 1, 0, 0], rel[0, 1, 0, 1, 1] = 3.0, -1.0
    assert float(share_on(rel, changed)[0]) == pytest.approx(0.75)
    mask = torch.zeros(3, 1, 5, 4, 4, dtype=torch.bool)
    mask[0, 0, :2] = True
    mask[2] = True
    rnd = random_mask_like(mask, seed=1)
    assert rnd.sum(dim=(1, 2, 3, 4)).tolist() == [32, 0, 80]
    # flicker: time mean exactly at eps = 0, and a(t) in [0, 2]
    r = torch.randn(2, 3, 6, 4, 4)
    torch.testing.assert_close(flicker(r, 0.0), r.mean(dim=2, keepdim=True).expand_as(r))


def test_config_is_checked() -> None:
    with pytest.raises(InvalidInputError, match="levels 0 and 100"):
        EvaluationConfig(levels=(50,)).check()
    with pytest.raises(InvalidInputError, match="positive integer"):
        EvaluationConfig(clips=0).check()
    with pytest.raises(InvalidInputError, match="outnumber"):
        EvaluationConfig(clips=2, frozen_clips=4).check()


TINY = EvaluationConfig.quick(methods=("saliency", "gradcam"), clips=6, frozen_clips=2,
                              reliance_clips=32, resamples=50)


@pytest.fixture(scope="module")
def evaluation():
    torch.manual_seed(0)
    return run_evaluation(TINY)


def test_structure_and_invariants(evaluation) -> None:
    assert {r.section for r in evaluation.rows} <= set(SECTIONS)
    assert (evaluation.ties, evaluation.context_frames) in TINY.candidates
    assert evaluation.sigma in TINY.sigmas
    models = [r.model for r in evaluation.rows if r.section == "reliance" and r.metric == "reliance"]
    assert "synthetic-graded-000-s0" in models and "synthetic-graded-100-s0" in models
    for method in TINY.methods:
        for metric in ("spearman_motion_score", "spearman_motion_share", "spearman_b0_input_change"):
            assert len(evaluation.select(section="correlation", method=method, metric=metric)) == 1
        auc = evaluation.select(section="separation", method=method, metric="auroc_motion_score")[0]
        assert auc.low <= auc.value <= auc.high and auc.n == 2 * TINY.clips
    for r in evaluation.rows:
        if r.metric.startswith(("motion_score", "frozen_motion", "motion_share", "auroc", "precision")):
            assert math.isnan(r.value) or 0.0 <= r.value <= 1.0, r
        if not math.isnan(r.low):
            assert r.low <= r.value + 1e-12 and r.value <= r.high + 1e-12, r
    # The ends of the family are what they were trained to be (measured, not assumed).
    hi = evaluation.value("reliance", "synthetic-graded-100-s0", "", "reliance")
    lo = evaluation.value("reliance", "synthetic-graded-000-s0", "", "reliance")
    assert hi > 0.8 and lo < 0.2
    assert any("no real videos" in n for n in evaluation.notes)
    # the behavioural reliance users see, beside the measured one, per model and as a correlation
    behavioural = {r.model: r.value for r in evaluation.select(section="reliance", metric="motion_reliance")}
    assert set(behavioural) == set(models) and all(0.0 <= v <= 1.0 for v in behavioural.values())
    assert behavioural["synthetic-graded-100-s0"] > behavioural["synthetic-graded-000-s0"]
    assert len(evaluation.select(section="correlation", metric="spearman_motion_reliance")) == 1


def test_every_model_explains_the_same_clips(evaluation) -> None:
    """Per-clip values exist for every model on the same number of test scenes."""
    sizes = {len(s.values["motion_score"]) for s in evaluation.scores}
    assert sizes == {TINY.clips}


def test_files(evaluation, tmp_path: Path) -> None:
    out = tmp_path / "results"
    paths = write_evaluation(evaluation, out, command="motion-relevance evaluate --quick")
    assert [p.name for p in paths] == list(FILES)
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == COLUMNS and len(rows) == len(evaluation.rows) + 1
    md = (out / "results.md").read_text()
    assert "motion-relevance evaluate --quick" in md and "Spearman" in md
    assert (out / "score_vs_reliance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        write_evaluation(evaluation, a_file)


def test_example_videos(tmp_path: Path) -> None:
    (tmp_path / "b.mp4").write_bytes(b"x")
    (tmp_path / "a.webm").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert example_videos(tmp_path) == (str(tmp_path / "a.webm"), str(tmp_path / "b.mp4"))
    assert example_videos(tmp_path / "missing") == ()


def test_evaluate_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from motion_relevance.cli import main

    bad = tmp_path / "bad"
    assert main(["evaluate", "--quick", "--no-real", "--sigmas", "one", "--out", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err and not bad.exists()
    assert main(["evaluate", "--quick", "--methods", "nope", "--no-real", "--out", str(bad)]) == 2
    assert not bad.exists()
    assert main(["evaluate", "--quick", "--clips", "0", "--no-real", "--out", str(bad)]) == 2
    assert not bad.exists()


def test_workers_give_the_same_rows(evaluation) -> None:
    """Two worker processes explain the models in parallel (one torch thread each); every row
    (values and CIs) is the single-process run's, in the same order, up to float32 rounding
    (reductions summed in another order with another thread count)."""
    parallel = run_evaluation(dataclasses.replace(TINY, workers=2))

    def same(x: object, y: object) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7)
        return x == y

    assert len(parallel.rows) == len(evaluation.rows)
    for a, b in zip(parallel.rows, evaluation.rows, strict=True):
        names = [f.name for f in dataclasses.fields(a)]
        assert all(same(getattr(a, n), getattr(b, n)) for n in names), (a, b)
    with pytest.raises(InvalidInputError, match="workers"):
        EvaluationConfig(workers=0).check()


def test_method_options_are_chosen_on_validation_and_used_on_test() -> None:
    """SmoothGrad's noise drawn for every voxel adds motion to a frozen scene; drawn once per
    copy it adds none. Validation must see that, pick ``static``, and the test run must use it
    (its frozen scenes then score 0)."""
    cfg = EvaluationConfig.quick(methods=("smoothgrad",), clips=3, frozen_clips=1, reliance_clips=16,
                                 val_clips=3, val_frozen_clips=1, resamples=20, candidates=(("shared", 16),),
                                 method_options={"smoothgrad": {"samples": 2}})
    ev = run_evaluation(cfg)
    assert ev.chosen_options == {"smoothgrad": {"noise_in_time": "static"}}
    assert ev.config.method_options["smoothgrad"] == {"samples": 2, "noise_in_time": "static"}
    assert ev.value("settings", "", "smoothgrad", "noise_in_time=static") == 1.0
    tried = {r.model: r.value for r in ev.select(section="validation", method="smoothgrad")
             if "noise_in_time" in r.model}
    assert len(tried) == 2 and tried["ties=shared context=16 noise_in_time=static"] > tried[
        "ties=shared context=16 noise_in_time=independent"]
    frozen = ev.select(section="frozen", model="all graded models", method="smoothgrad",
                       metric="frozen_motion_score")[0]
    assert frozen.value < 1e-6
