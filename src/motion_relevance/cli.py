"""The `motion-relevance` command: a thin shell over the library's API.

Every sub-command parses its arguments, calls one API function and prints the result. Errors
from the library (``MotionRelevanceError``) and from argument parsing become one line
``error: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from motion_relevance.errors import MotionRelevanceError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and raise instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise MotionRelevanceError(f"{message} (see `{self.prog} --help`)")


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
    f.set_defaults(func=_cmd_weights_fetch)
    v = wsub.add_parser("verify", help="check the cached weights' sha256")
    v.add_argument("name")
    v.set_defaults(func=_cmd_weights_verify)
    w = wsub.add_parser("path", help="print where the cached weights live")
    w.add_argument("name")
    w.set_defaults(func=_cmd_weights_path)


def _cmd_weights_fetch(args: argparse.Namespace) -> int:
    from motion_relevance.models import weights

    path = weights.fetch(args.name, force=args.force, progress=True)
    print(f"weights ready: {path}")
    return 0


def _cmd_weights_verify(args: argparse.Namespace) -> int:
    from motion_relevance.models import weights

    path = weights.verify(args.name)
    print(f"ok: {path}")
    return 0


def _cmd_weights_path(args: argparse.Namespace) -> int:
    from motion_relevance.models import weights

    print(weights.cache_path(args.name))
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

    result = run_demo(args.out, progress=True)
    print(f"report: {result}")
    return 0


# ---------------------------------------------------------------------------------------------

_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_demo,
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
