"""Method resolution, the one rule of every command: names are case- and hyphen-insensitive
(``Saliency``, ``integrated-gradients``), given as a comma-separated string or a sequence, and
options are checked against the method before any model runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from motion_relevance.attribution.registry import get_method
from motion_relevance.checks import optional_positive_int
from motion_relevance.errors import InvalidInputError

#: ``explain`` keywords that options may carry besides a method's own options.
EXPLAIN_KEYWORDS: tuple[str, ...] = ("batch_size",)


def parse_methods(methods: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> canonical method names, in order; unknown names, an
    empty list and a method given twice are one-line errors."""
    given = methods.split(",") if isinstance(methods, str) else list(methods)
    names: list[str] = []
    for raw in given:
        if not isinstance(raw, str):
            raise InvalidInputError(f"method names must be strings, got {type(raw).__name__}")
        if not raw.strip():
            continue
        name = get_method(raw).name
        if name in names:
            raise InvalidInputError(f"method {name!r} is listed twice; give each method once")
        names.append(name)
    if not names:
        raise InvalidInputError("give at least one explanation method (see `motion-relevance methods`)")
    return names


def resolve_methods(
    methods: str | Sequence[str], options: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """Canonical method names and the checked options of those given some (keyed by canonical
    name). ``options`` may name methods as loosely as ``methods`` does, and may
    carry ``batch_size`` (``explain``'s own keyword)."""
    names = parse_methods(methods)
    resolved: dict[str, dict[str, Any]] = {}
    for given, opts in (options or {}).items():
        method = get_method(given)
        if method.name not in names:
            raise InvalidInputError(f"options given for {given!r}, a method that is not run; add it to the methods")
        opts = dict(opts)
        keywords = {k: opts.pop(k) for k in EXPLAIN_KEYWORDS if k in opts}
        optional_positive_int(f"batch_size of {method.name!r}", keywords.get("batch_size"))
        method.resolve_options(opts)  # raises on unknown or bad options
        resolved.setdefault(method.name, {}).update(opts, **keywords)
    return tuple(names), resolved


__all__ = ["EXPLAIN_KEYWORDS", "parse_methods", "resolve_methods"]
