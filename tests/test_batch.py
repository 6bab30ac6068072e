"""Batch runs on the local engine: manifest, rows, summary, maps, resume and errors."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

import motion_relevance as mr
from motion_relevance import cli
from motion_relevance.attribution import explain
from motion_relevance.batch import (
    ROW_SCHEMA,
    ModelSource,
    ResultStore,
    drop_timing,
    read_manifest,
    read_maps,
    read_results,
    run_batch,
    summarize,
)
from motion_relevance.batch.pipeline import unit_seed
from motion_relevance.errors import InvalidInputError, OutputError, UnknownNameError
from motion_relevance.metrics.sparsity import sparsity_ratio
from motion_relevance.motion_score import motion_score
from motion_relevance.selective import selective_relevance
from motion_relevance.video import read_video, sample_clips
from tiny_models import FRAMES, LABELS, SIZE, build_tiny, write_clip

METHODS = ("saliency", "gradcam")


@pytest.fixture(scope="module")
def reference(dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("runs") / "store"
    return run_batch(dataset, out, model=build_tiny, methods=",".join(METHODS), threads=1, save_maps=True)


def _copy_dataset(dataset: Path, dest: Path) -> Path:
    shutil.copytree(dataset.parent, dest)
    return dest / dataset.name


# ---------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------


def test_manifest_csv_and_jsonl_resolve_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    csv = tmp_path / "sub" / "m.csv"
    csv.write_text("label,path,extra\nrun,a.mp4,x\n, /abs/b.mp4 ,y\n")
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"path": "sub/a.mp4", "label": 3}\n\n{"path": "c.mp4"}\n')
    a, b = read_manifest(csv)
    assert (a.row, a.video, a.path, a.label) == (0, "a.mp4", str(tmp_path / "sub" / "a.mp4"), "run")
    assert (b.path, b.label) == ("/abs/b.mp4", None)
    c, d = read_manifest(jsonl)
    assert (c.path, c.label, d.row, d.label) == (str(tmp_path / "sub" / "a.mp4"), "3", 1, None)
    assert a.key != c.key and a.key.startswith("0000000-")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.csv", "video,label\na.mp4,x\n", "no 'path' column"),
        ("m.csv", "path,label\n", "lists no videos"),
        ("m.csv", "path,label\na.mp4,x,extra\n", "more fields than the header"),
        ("m.csv", "path\n\"\"\n", "path column is empty"),
        ("m.jsonl", '{"path": "a.mp4"}\nnot json\n', "line 2 is not valid JSON"),
        ("m.jsonl", '["a.mp4"]\n', "must be a JSON object"),
        ("m.jsonl", '{"video": "a.mp4"}\n', "no 'path' key"),
        ("m.jsonl", '{"path": "a.mp4", "label": [1]}\n', "label must be a string or an integer"),
    ],
)
def test_bad_manifests_give_one_line_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=message) as info:
        read_manifest(path)
    assert "\n" not in str(info.value)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------------
# a run
# ---------------------------------------------------------------------------------------------


def test_run_rows_counts_and_errors(reference) -> None:
    rows = reference.rows
    assert rows.schema.equals(ROW_SCHEMA)
    assert (reference.total, reference.done, reference.failed, reference.skipped) == (5, 3, 2, 0)
    ok = rows.filter(pc.is_null(rows["error"]))
    # 3 good videos x 3 clips x 2 methods, in manifest order, methods in the order given
    assert ok.num_rows == 18 == reference.clips
    assert ok.column("row").to_pylist() == [0] * 6 + [1] * 6 + [4] * 6
    assert ok.column("method").to_pylist()[:6] == ["saliency"] * 3 + ["gradcam"] * 3
    v2 = ok.filter(pc.equal(ok["row"], 4))
    assert v2.column("start_frame").to_pylist()[:3] == [0, 4, 5]  # last window ends on frame 8
    assert v2.column("label").to_pylist() == [None] * 6
    for name in ("motion_share", "sparsity", "probability"):
        values = np.array(ok.column(name).to_pylist(), dtype=float)
        assert np.all((values >= 0) & (values <= 1)), name
    assert set(ok.column("target_label").to_pylist()) <= set(LABELS)
    failed = rows.filter(pc.is_valid(rows["error"]))
    assert failed.column("video").to_pylist() == ["bad.mp4", "bad.mp4", "short.mp4", "short.mp4"]
    assert failed.column("method").to_pylist() == ["saliency", "gradcam"] * 2
    messages = failed.column("error").to_pylist()
    assert all("\n" not in m for m in messages)
    assert "bad.mp4" in messages[0]
    assert "2 frame(s), fewer than one 4-frame clip" in messages[2] and "--pad-short" in messages[2]
    assert failed.column("clip").null_count == 4
    # the consolidated file and the summary are on disk
    assert drop_timing(read_results(reference.store)).equals(drop_timing(rows))
    assert pq.read_table(reference.store / "summary.parquet").equals(reference.summary)
    assert (reference.store / "summary.csv").read_text().startswith('"method","label"')
    assert not (reference.store / "tmp").exists()


def test_rows_match_a_direct_explanation(reference, dataset: Path) -> None:
    model, spec = build_tiny()
    clips = sample_clips(read_video(dataset.parent / "v1.mp4"), spec)
    x = spec.preprocess(clips.frames)
    rows = reference.rows.filter(pc.equal(reference.rows["row"], 1))
    for method in METHODS:
        expl = explain(model, x, method, spec=spec)
        if method == "saliency":  # the expected map from plain autograd, not from explain
            leaf = x.clone().requires_grad_()
            logits = model(leaf)
            top = logits.argmax(dim=1)
            (grad,) = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), leaf)
            torch.testing.assert_close(expl.relevance, grad.detach(), rtol=1e-5, atol=1e-7)
            assert torch.equal(expl.target, top)
        sel = selective_relevance(expl.relevance, 1.0)
        got = rows.filter(pc.equal(rows["method"], method))
        prob = torch.softmax(expl.logits, 1).gather(1, expl.target[:, None])[:, 0]
        np.testing.assert_allclose(got.column("motion_share").to_pylist(), sel.motion_share.double(), rtol=1e-5)
        np.testing.assert_allclose(got.column("motion_score").to_pylist(), motion_score(expl.relevance).double(), rtol=1e-5)
        np.testing.assert_allclose(got.column("probability").to_pylist(), prob.double(), rtol=1e-5)
        np.testing.assert_allclose(
            got.column("sparsity").to_pylist(), sparsity_ratio(expl.relevance, sel.motion), rtol=1e-6
        )
        assert got.column("target").to_pylist() == expl.target.tolist()
        assert got.column("start_frame").to_pylist() == [w.frame_indices[0] for w in clips.windows]
        # the stored maps hold the same relevance and motion (float16, scaled per clip)
        relevance, motion = read_maps(reference.store, read_manifest(dataset)[1].key, method)
        scale = expl.relevance.abs().amax(dim=(1, 2, 3, 4)).view(-1, 1, 1, 1, 1).numpy()
        np.testing.assert_allclose(relevance, expl.relevance.numpy(), atol=1e-3 * scale.max())
        np.testing.assert_allclose(motion, sel.motion.numpy(), atol=1e-3 * scale.max())


def test_reliance_rows_match_a_direct_measurement_and_feed_the_per_class_table(reference, dataset: Path) -> None:
    model, spec = build_tiny()
    entry = read_manifest(dataset)[1]
    clips = sample_clips(read_video(entry.path), spec)
    x = spec.preprocess(clips.frames)
    seed = unit_seed(0, entry.row, "reliance", clips.windows[0].index)  # the chunk's seed (one chunk here)
    want = mr.motion_reliance(model, x, permutations=8, seed=seed).score.double()
    rows = reference.rows.filter(pc.equal(reference.rows["row"], entry.row))
    for method in METHODS:  # one number per clip, whatever the method
        got = rows.filter(pc.equal(rows["method"], method)).column("motion_reliance").to_pylist()
        np.testing.assert_allclose(got, want, atol=1e-6)
    ok = reference.rows.filter(pc.is_null(reference.rows["error"]))
    for row in reference.summary.to_pylist():
        mask = pc.and_(pc.equal(ok["method"], row["method"]), pc.equal(ok["label"], row["label"]))
        if row["label"] is None or row["clips"] == 0:
            continue
        values = ok.filter(mask).column("motion_reliance").to_pylist()
        assert row["motion_reliance_mean"] == pytest.approx(float(np.mean(values)))


def test_reliance_zero_leaves_the_column_empty(dataset: Path, tmp_path: Path) -> None:
    result = run_batch(dataset, tmp_path / "store", model=build_tiny, methods="saliency", reliance=0)
    assert result.rows.column("motion_reliance").null_count == len(result.rows)
    assert json.loads((result.store / "run.json").read_text())["settings"]["reliance_permutations"] == 0


def test_summary_is_the_mean_of_the_rows(reference) -> None:
    rows = reference.rows.to_pylist()
    summary = {(r["method"], r["label"]): r for r in reference.summary.to_pylist()}
    assert len(summary) == 2 * 4  # labels left, right, still and none, per method
    for method in METHODS:
        left = [r["motion_share"] for r in rows if r["method"] == method and r["label"] == "left" and r["error"] is None]
        s = summary[(method, "left")]
        assert (s["videos"], s["clips"], s["failed_videos"]) == (1, 3, 1)
        assert math.isclose(s["motion_share_mean"], sum(left) / len(left), rel_tol=1e-12)
        assert math.isclose(s["motion_share_std"], float(np.std(left, ddof=1)), rel_tol=1e-9)
        scores = [r["motion_score"] for r in rows if r["method"] == method and r["label"] == "left" and r["error"] is None]
        assert math.isclose(s["motion_score_mean"], sum(scores) / len(scores), rel_tol=1e-12)
        assert math.isclose(s["motion_score_std"], float(np.std(scores, ddof=1)), rel_tol=1e-9)
        assert math.isclose(s["motion_score_video_mean"], s["motion_score_mean"], rel_tol=1e-12)  # one video
        still = summary[(method, "still")]
        assert (still["videos"], still["clips"], still["failed_videos"]) == (0, 0, 1)
        assert still["motion_share_mean"] is None
    by_target = summarize(reference.rows, by="target_label")
    assert set(by_target.column_names) >= {"method", "target_label", "motion_share_mean"}
    assert sum(by_target.column("clips").to_pylist()) == reference.clips


def test_video_means_weigh_each_video_once() -> None:
    def row(video: int, share: float) -> dict:
        return {"row": video, "video": f"{video}.mp4", "label": "a", "method": "m", "clip": 0, "sigma": 1.0,
                "motion_share": share, "seconds": 0.0}

    table = pa.Table.from_pylist([row(0, 0.0), row(0, 0.0), row(0, 0.0), row(1, 1.0)], schema=ROW_SCHEMA)
    (s,) = summarize(table).to_pylist()
    assert s["motion_share_mean"] == 0.25 and s["motion_share_video_mean"] == 0.5
    with pytest.raises(InvalidInputError, match="group by"):
        summarize(table, by="video")


# ---------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------


def test_resume_skips_finished_units_and_keeps_rows(reference, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference.store, out)
    # leftovers of a killed run: a half-written part and an uncommitted maps group
    (out / "parts" / ".0000001-x.ok.parquet.123.abcd.tmp").write_bytes(b"partial")
    (out / "tmp").mkdir()
    (out / "tmp" / "junk.zarr").mkdir()
    seen = []
    again = run_batch(dataset, out, model=build_tiny, methods=list(METHODS), threads=1, save_maps=True,
                      resume=True, callback=seen.append)
    assert (again.done, again.failed, again.skipped) == (0, 0, 5)
    assert [p.pending for p in seen] == [0]
    assert drop_timing(again.rows).equals(drop_timing(reference.rows))
    assert again.rows.column("seconds").equals(reference.rows.column("seconds"))  # not recomputed
    assert not list((out / "parts").glob(".*")) and not (out / "tmp").exists()


def test_resume_redoes_only_missing_units(reference, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference.store, out)
    (out / "clips.parquet").unlink()
    removed = read_manifest(dataset)[1]
    (out / "parts" / f"{removed.key}.ok.parquet").unlink()
    again = run_batch(dataset, out, model=build_tiny, methods=list(METHODS), threads=1, save_maps=True, resume=True)
    assert (again.done, again.failed, again.skipped) == (1, 0, 4)
    assert drop_timing(again.rows).equals(drop_timing(reference.rows))


def test_retry_failed_redoes_fixed_videos(dataset: Path, tmp_path: Path) -> None:
    manifest = _copy_dataset(dataset, tmp_path / "data")
    out = tmp_path / "store"
    first = run_batch(manifest, out, model=build_tiny, methods="saliency", threads=1)
    assert first.failed == 2
    write_clip(manifest.parent / "bad.mp4", 8, seed=5)  # the corrupt file is replaced
    plain = run_batch(manifest, out, model=build_tiny, methods="saliency", threads=1, resume=True)
    assert (plain.done, plain.failed, plain.skipped) == (0, 0, 5)
    retried = run_batch(manifest, out, model=build_tiny, methods="saliency", threads=1, resume=True, retry_failed=True)
    assert (retried.done, retried.failed, retried.skipped) == (1, 1, 3)
    bad = retried.rows.filter(pc.equal(retried.rows["video"], "bad.mp4"))
    assert bad.column("clip").to_pylist() == [0, 1] and bad.column("error").null_count == 2
    assert len(list((out / "parts").glob("0000002-*"))) == 1  # the failed part was replaced


def test_edited_manifest_rows_are_recomputed(dataset: Path, tmp_path: Path) -> None:
    manifest = _copy_dataset(dataset, tmp_path / "data")
    out = tmp_path / "store"
    run_batch(manifest, out, model=build_tiny, methods="saliency", threads=1)
    manifest.write_text(manifest.read_text().replace("bad.mp4,left", "v2.mp4,left"))
    again = run_batch(manifest, out, model=build_tiny, methods="saliency", threads=1, resume=True)
    assert (again.done, again.failed, again.skipped) == (1, 0, 4)
    assert again.rows.filter(pc.equal(again.rows["row"], 2)).column("video").to_pylist() == ["v2.mp4"] * 3
    assert again.rows.num_rows == 3 * 4 + 1


def test_existing_store_needs_resume_and_same_settings(reference, dataset: Path) -> None:
    with pytest.raises(OutputError, match="pass --resume"):
        run_batch(dataset, reference.store, model=build_tiny, methods=list(METHODS))
    with pytest.raises(OutputError, match=r"sigma=1\.0, not 2\.0"):
        run_batch(dataset, reference.store, model=build_tiny, methods=list(METHODS), sigma=2.0,
                  save_maps=True, resume=True)
    assert json.loads((reference.store / "run.json").read_text())["settings"]["sigma"] == 1.0
    with pytest.raises(OutputError, match='ties="first", not "shared"'):
        run_batch(dataset, reference.store, model=build_tiny, methods=list(METHODS), ties="shared",
                  save_maps=True, resume=True)


@pytest.mark.parametrize("version", [1, 2])
def test_a_store_of_an_earlier_format_is_refused(reference, tmp_path: Path, dataset: Path, version: int) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference.store, out)
    described = json.loads((out / "run.json").read_text())
    described["format"] = version
    del described["settings"]["reliance_permutations"]  # what an earlier version wrote
    if version == 1:
        for key in ("ties", "context_frames"):
            del described["settings"][key]
    (out / "run.json").write_text(json.dumps(described))
    with pytest.raises(OutputError, match=rf"earlier version \(store format {version}.*motion_reliance") as info:
        run_batch(dataset, out, model=build_tiny, methods=list(METHODS), save_maps=True, resume=True)
    assert "\n" not in str(info.value) and "choose a new --out" in str(info.value)


def test_context_frames_come_from_the_video(dataset: Path, tmp_path: Path) -> None:
    model, spec = build_tiny()
    longer = dataclasses.replace(spec, min_frames=2)
    result = run_batch(dataset, tmp_path / "s", model=(model, longer), methods="saliency", threads=1,
                       context_frames=2, ties="shared")
    assert json.loads((tmp_path / "s" / "run.json").read_text())["settings"]["context_frames"] == 2
    video = read_video(dataset.parent / "v1.mp4").frames
    clips = sample_clips(read_video(dataset.parent / "v1.mp4"), spec)
    rows = result.rows.filter(pc.equal(result.rows["row"], 1))
    for k, window in enumerate(clips.windows):
        first, last = window.frame_indices[0], window.frame_indices[-1]
        context = tuple(
            longer.preprocess(side) if len(side) else None for side in (video[max(0, first - 2) : first], video[last + 1 : last + 3])
        )
        expl = explain(model, longer.preprocess(clips.frames[k]), "saliency", spec=longer, context_frames=2,
                       context=context, ties="shared")
        assert rows["motion_share"][k].as_py() == pytest.approx(float(selective_relevance(expl.relevance).motion_share[0]), rel=1e-5)
        assert rows["motion_score"][k].as_py() == pytest.approx(float(motion_score(expl.relevance)[0]), rel=1e-5)


def test_a_second_run_on_the_same_store_is_refused(reference) -> None:
    first, second = ResultStore(reference.store), ResultStore(reference.store)
    settings = json.loads((reference.store / "run.json").read_text())["settings"]
    first.open(settings, resume=True)
    try:
        with pytest.raises(OutputError, match="another batch run"):
            second.open(settings, resume=True)
    finally:
        first.close()


# ---------------------------------------------------------------------------------------------
# options and errors
# ---------------------------------------------------------------------------------------------


def test_label_targets_and_short_padding(dataset: Path, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    result = run_batch(dataset, tmp_path / "store", model=build_tiny, methods="saliency", target="label",
                       pad_short=True, threads=threads + 1)
    assert torch.get_num_threads() == threads  # ``threads`` applied to the run only
    by_video = {}
    for r in result.rows.to_pylist():
        by_video.setdefault(r["video"], []).append(r)
    assert {r["target"] for r in by_video["v1.mp4"]} == {LABELS.index("right")}
    assert [r["clip"] for r in by_video["short.mp4"]] == [0]  # loop-padded into one clip
    assert by_video["short.mp4"][0]["target_label"] == "still"
    assert "no label to explain" in by_video["v2.mp4"][0]["error"]


def test_a_failing_method_leaves_the_others(dataset: Path, tmp_path: Path) -> None:
    result = run_batch(dataset, tmp_path / "store", model=build_tiny, methods="saliency,gradcam",
                       method_options={"gradcam": {"layer": "no.such.layer"}}, threads=1)
    ok = result.rows.filter(pc.equal(result.rows["row"], 0))
    assert ok.filter(pc.equal(ok["method"], "saliency")).num_rows == 3
    (gradcam,) = ok.filter(pc.equal(ok["method"], "gradcam")).to_pylist()
    assert gradcam["clip"] is None and "no.such.layer" in gradcam["error"]


def test_bad_requests_fail_before_writing(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    with pytest.raises(UnknownNameError, match="unknown method"):
        run_batch(dataset, out, model=build_tiny, methods="saliency,telepathy")
    with pytest.raises(UnknownNameError, match="unknown model"):
        run_batch(dataset, out, model="no-such-model", methods="saliency")
    with pytest.raises(UnknownNameError, match="cannot import"):
        run_batch(dataset, out, model="no_such_module:build", methods="saliency")
    with pytest.raises(InvalidInputError, match="failed: ValueError: the tiny test model has no weights file"):
        run_batch(dataset, out, model=build_tiny, weights="random", methods="saliency")
    with pytest.raises(InvalidInputError, match="engine must be one of"):
        run_batch(dataset, out, model=build_tiny, methods="saliency", engine="spark")
    with pytest.raises(InvalidInputError, match="not a built model"):
        run_batch(dataset, out, model=build_tiny(), methods="saliency", engine="ray")
    with pytest.raises(InvalidInputError, match="has no option"):
        run_batch(dataset, out, model=build_tiny, methods="saliency", method_options={"saliency": {"n_steps": 3}})
    with pytest.raises(InvalidInputError, match="does not exist"):
        run_batch(tmp_path / "missing.csv", out, model=build_tiny, methods="saliency")
    assert not out.exists()


def test_a_full_disk_stops_the_run_without_committing(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from motion_relevance.batch.maps import MapWriter

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MapWriter, "_append", full)
    out = tmp_path / "store"
    with pytest.raises(OutputError, match="No space left on device"):
        run_batch(dataset, out, model=build_tiny, methods="saliency", save_maps=True)
    assert not list((out / "parts").iterdir()) and not (out / "tmp").exists()


def test_model_source_builds_presets_builders_and_built_models() -> None:
    built = build_tiny()
    assert ModelSource.of(built).load() is built
    assert not ModelSource.of(built).picklable
    source = ModelSource.of("tiny_models:build_tiny")
    model, spec = source.load()
    assert spec.labels == LABELS and not model.training
    assert source.describe() == {"name": "tiny_models:build_tiny", "weights": None, "num_classes": None}
    with pytest.raises(InvalidInputError, match="must give"):
        ModelSource.of(lambda: "not a model").load()


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_batch(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "store"
    argv = ["batch", str(dataset), "--model", "tiny_models:build_tiny", "--method", "saliency,smoothgrad",
            "--option", "smoothgrad.samples=2", "--sigma", "0.5", "--out", str(out), "--threads", "1"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "done 3, failed 2, skipped 0 of 5 videos (18 clip rows)" in captured.out
    assert "smoothgrad" in captured.out and "motion share (paper)" in captured.out and "motion score" in captured.out
    rows = read_results(out)
    assert set(rows.column("sigma").to_pylist()) == {0.5}
    assert json.loads((out / "run.json").read_text())["settings"]["method_options"] == {"smoothgrad": {"samples": 2}}
    assert cli.main([*argv, "--resume"]) == 0
    assert "done 0, failed 0, skipped 5 of 5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "nope"], "unknown method 'nope'"),
        (["--method", "saliency", "--model", "missing-preset"], "unknown model 'missing-preset'"),
        (["--method", "saliency", "--option", "saliency"], "--option must read METHOD.KEY=VALUE"),
        (["--method", "saliency", "--clip-batch", "0"], "clip_batch must be a positive integer"),
        (["--method", "saliency", "--context-frames", "1"], "context_frames needs a model that accepts longer clips"),
        (["--method", "saliency", "--ties", "middle"], "argument --ties: invalid choice"),
    ],
)
def test_cli_batch_bad_input(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    argv = ["batch", str(dataset), "--model", "tiny_models:build_tiny", "--out", str(tmp_path / "s"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_cli_batch_missing_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["batch", str(tmp_path / "none.csv"), "--model", "tiny_models:build_tiny", "--method", "saliency",
            "--out", str(tmp_path / "s")]
    assert cli.main(argv) == 2
    assert "manifest" in capsys.readouterr().err


def test_tiny_builder_is_deterministic() -> None:
    (a, spec), (b, _) = build_tiny(), build_tiny()
    x = torch.randn(2, 3, FRAMES, SIZE, SIZE)
    assert spec.labels == LABELS
    assert a(x).shape == (2, len(LABELS))
    assert torch.equal(a(x), b(x))


def test_saliency_rows_match_an_independent_pipeline(reference, dataset: Path) -> None:
    """Expected values from outside the library: frames decoded with PyAV, preprocessed by the
    PIL/NumPy restatement of the preprocessing oracle, the gradient by plain autograd, the
    selective mask and motion score by NumPy restatements (replicate padding, sigma = 1)."""
    import av

    from test_motion_score import _reference as reference_score
    from test_preprocess_oracle import oracle
    from test_selective import SOBEL_T0

    model, spec = build_tiny()
    with av.open(str(dataset.parent / "v1.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    clips = frames.reshape(-1, spec.frames, *frames.shape[1:])  # 12 frames: 3 clips back to back
    x = torch.from_numpy(oracle(spec, clips)).float().requires_grad_(True)
    logits = model(x)
    target = logits.argmax(1)
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
    rel = grad.double().numpy()
    e = np.pad(rel.sum(axis=1), ((0, 0), (1, 1), (1, 1), (1, 1)), mode="edge")
    _, t, h, w = rel.sum(axis=1).shape
    d = sum(s * SOBEL_T0[dh, dw] * (e[:, dt : dt + t, dh : dh + h, dw : dw + w])
            for dt, s in ((0, 1.0), (2, -1.0)) for dh in range(3) for dw in range(3))  # fmt: skip
    d = np.abs(d)
    mask = d > d.reshape(len(d), -1).std(axis=1, ddof=1)[:, None, None, None]
    share = (np.abs(rel) * mask[:, None]).sum(axis=(1, 2, 3, 4)) / np.abs(rel).sum(axis=(1, 2, 3, 4))
    prob = torch.softmax(logits.detach().double(), 1).gather(1, target[:, None])[:, 0].numpy()

    got = reference.rows.filter(pc.and_(pc.equal(reference.rows["row"], 1), pc.equal(reference.rows["method"], "saliency")))
    assert got.column("target").to_pylist() == target.tolist()
    np.testing.assert_allclose(got.column("probability").to_pylist(), prob, rtol=1e-4)
    np.testing.assert_allclose(got.column("motion_share").to_pylist(), share, rtol=2e-3)
    np.testing.assert_allclose(got.column("motion_score").to_pylist(), reference_score(rel), rtol=2e-3)
    assert got.column("start_frame").to_pylist() == [0, 4, 8]
