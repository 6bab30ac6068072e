"""The orchestration layer (``runs``): one rule for methods, settings, devices, targets, timing
and progress, shared by `explain`, `batch` and the library."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from motion_relevance import checks, cli
from motion_relevance.errors import InvalidInputError, UnknownNameError, WeightsError
from motion_relevance.runs import (
    ModelSource,
    SelectiveSettings,
    check_stride,
    explain_and_select,
    parse_methods,
    resolve_device,
    resolve_methods,
    resolve_target,
)
from motion_relevance.runs import steps as steps_module
from motion_relevance.selective import DERIVATIVES, PADDINGS
from tiny_models import SPEC, TinyNet
from videos import make_video, moving_square_frames

MODEL = ["--model", "synthetic-motion", "--weights", "random"]


# ------------------------------------------------------------------------------------- methods


def test_method_names_are_case_and_hyphen_insensitive() -> None:
    assert parse_methods("Saliency, Integrated-Gradients,GRADCAM") == ["saliency", "integrated_gradients", "gradcam"]
    names, options = resolve_methods(["SmoothGrad"], {"SMOOTHGRAD": {"samples": 2, "batch_size": 2}})
    assert names == ("smoothgrad",) and options == {"smoothgrad": {"samples": 2, "batch_size": 2}}


@pytest.mark.parametrize(
    ("methods", "options", "words"),
    [
        ("", None, "at least one"),
        ("saliency,Saliency", None, "listed twice"),
        ("saliency,nope", None, "unknown method 'nope'"),
        ("saliency", {"gradcam": {}}, "not run"),
        ("integrated_gradients", {"integrated_gradients": {"n_steps": 0}}, "positive integer"),
        ("saliency", {"saliency": {"batch_size": 0}}, "batch_size of 'saliency' must be a positive integer"),
        ("saliency", {"saliency": {"n_steps": 3}}, "has no option"),
    ],
)
def test_bad_methods_and_options_are_one_line_errors(methods: str, options: dict | None, words: str) -> None:
    with pytest.raises((InvalidInputError, UnknownNameError)) as info:
        resolve_methods(methods, options)
    assert words in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("value", [0, -1, True, 1.0, "3", None])
def test_one_positive_integer_rule(value: object) -> None:
    with pytest.raises(InvalidInputError, match="clips must be a positive integer"):
        checks.positive_int("clips", value)
    assert checks.positive_int("clips", np.int64(3)) == 3
    assert checks.optional_positive_int("clips", None) is None


def test_selective_settings_check_every_field() -> None:
    assert SelectiveSettings(2, "zeros", "signed").sigma == 2.0
    with pytest.raises(InvalidInputError, match="sigma must be a finite number >= 0"):
        SelectiveSettings(float("nan"))
    with pytest.raises(InvalidInputError, match="padding must be one of replicate, zeros"):
        SelectiveSettings(padding="reflect")
    with pytest.raises(InvalidInputError, match="derivative must be one of abs, signed"):
        SelectiveSettings(derivative="square")
    with pytest.raises(InvalidInputError, match="between 1 and the clip length 8"):
        check_stride(9, 8)


def test_explain_and_batch_share_their_run_options() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    shared = ("--method", "--sigma", "--padding", "--derivative", "--weights", "--num-classes", "--target", "--device")
    by_command = {}
    for command in ("explain", "batch"):
        actions = {s: a for a in sub.choices[command]._actions for s in a.option_strings}
        assert set(shared) <= set(actions), command
        by_command[command] = actions
    for flag in ("--padding", "--derivative"):
        assert tuple(by_command["explain"][flag].choices) == tuple(by_command["batch"][flag].choices)
    assert tuple(by_command["explain"]["--padding"].choices) == PADDINGS
    assert tuple(by_command["batch"]["--derivative"].choices) == DERIVATIVES


# ------------------------------------------------------------------------------ models, devices


def test_model_sources_are_checked_before_anything_is_built(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="unknown model 'nope'"):
        ModelSource.of("nope")
    with pytest.raises(WeightsError, match="does not exist"):
        ModelSource.of("c3d", weights=tmp_path / "missing.pt")
    with pytest.raises(InvalidInputError, match="num_classes must be a positive integer"):
        ModelSource.of("c3d", weights="random", num_classes=0)
    module = TinyNet()
    source = ModelSource.of(module, spec=SPEC)
    assert source.load() == (module, SPEC) and not source.picklable
    with pytest.raises(InvalidInputError, match="InputSpec"):
        ModelSource.of(TinyNet())


def test_cuda_without_a_gpu_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(InvalidInputError, match="no CUDA GPU") as info:
        resolve_device("cuda")
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidInputError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_targets_resolve_by_index_label_or_top_class() -> None:
    probs = np.array([0.1, 0.6, 0.1, 0.1, 0.1])
    assert resolve_target(None, SPEC, 5, probs) == resolve_target("auto", SPEC, 5, probs) == 1
    assert resolve_target("predicted", SPEC, 5, probs) == 1
    assert resolve_target("3", SPEC, 5, probs) == 3 and resolve_target("C", SPEC, 5, probs) == 2
    with pytest.raises(InvalidInputError, match="out of range"):
        resolve_target(5, SPEC, 5, probs)


# ------------------------------------------------------------------------------------- timing


def test_selective_seconds_do_not_include_the_explanation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock: the explanation "takes" 10 s and the selective step 1 s."""
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(steps_module, "time", SimpleNamespace(perf_counter=lambda: clock.now))

    def advancing(fn: Callable[..., object], seconds: float) -> Callable[..., object]:
        def run(*args: object, **kwargs: object) -> object:
            clock.now += seconds
            return fn(*args, **kwargs)

        return run

    monkeypatch.setattr(steps_module, "explain", advancing(steps_module.explain, 10.0))
    monkeypatch.setattr(steps_module, "selective_relevance", advancing(steps_module.selective_relevance, 1.0))
    torch.manual_seed(0)
    step = explain_and_select(TinyNet().eval(), torch.randn(1, 3, 8, 24, 24), "saliency", SelectiveSettings(), spec=SPEC)
    assert (step.seconds_explain, step.seconds_selective, step.seconds) == (10.0, 1.0, 11.0)


# ------------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "square.mp4", moving_square_frames(20, 48, 64), fps=10)


def test_explain_accepts_any_spelling_and_the_shared_options(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = cli.main(["explain", str(clip), *MODEL, "--method", "Saliency,GradCAM",
                     "--derivative", "abs", "--padding", "zeros", "--device", "cpu", "--out", str(out)])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"saliency", "gradcam"}
    assert (summary["padding"], summary["derivative"], summary["model"]["device"]) == ("zeros", "abs", "cpu")
    # The report's slider recomputes |D|; the one-sided derivative is refused up front, in one line.
    code = cli.main(["explain", str(clip), *MODEL, "--method", "saliency", "--derivative", "signed", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "derivative='abs'" in err
    for numbers in summary["methods"].values():
        assert 0 < numbers["seconds_selective"] < numbers["seconds"]


def test_progress_without_a_terminal_draws_no_cursor_codes(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["explain", str(clip), *MODEL, "--method", "saliency,gradcam", "--out", str(tmp_path / "o")])
    _, err = capsys.readouterr()
    assert code == 0
    assert "\r" not in err and "\x1b[" not in err, repr(err[:200])


def test_explain_takes_num_classes_and_refuses_cuda_without_a_gpu(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code = cli.main(["explain", str(clip), "--model", "c3d", "--weights", "random", "--num-classes", "0",
                     "--method", "saliency", "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 2 and "num_classes must be a positive integer" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = cli.main(["explain", str(clip), *MODEL, "--method", "saliency", "--device", "cuda", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no CUDA GPU" in err
    assert not (tmp_path / "o").exists()


def test_progress_on_a_terminal_draws_one_bar_per_task(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    code = cli.main(["explain", str(clip), *MODEL, "--method", "saliency,gradcam", "--out", str(tmp_path / "o")])
    text = stderr.getvalue()
    assert code == 0, text
    for task in ("predict", "saliency", "gradcam"):
        assert task in text
    assert "2/2" in text  # the method bars end at the video's number of windows (20 frames: 2 of 16)


def test_a_progress_flag_is_not_a_callback(clip: Path, tmp_path: Path) -> None:
    from motion_relevance.report import explain_video

    with pytest.raises(InvalidInputError, match="progress must be None or a function"):
        explain_video(clip, tmp_path / "o", model="synthetic-motion", weights="random", progress=True)  # type: ignore[arg-type]
    assert not (tmp_path / "o").exists()
