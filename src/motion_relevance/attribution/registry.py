"""The method registry: every method's name, one-line description and typed options.

The method modules declare their methods as ``Method`` records (``gradient.METHODS``,
``cam.METHODS``, ``lrp.METHODS``); this module collects them in one place, in the order
``list_methods`` (and ``motion-relevance methods``) shows them. ``get_method`` is the one rule
for method names everywhere: case-insensitive, ``-`` and ``_`` alike.
"""

from __future__ import annotations

from motion_relevance.attribution import cam, gradient, lrp
from motion_relevance.attribution.method import Method, MethodInfo
from motion_relevance.errors import InvalidInputError, UnknownNameError

_METHODS: dict[str, Method] = {}


def method_key(name: str) -> str:
    """The canonical spelling of a method name: stripped, lower case, ``-`` read as ``_``."""
    return name.strip().lower().replace("-", "_")


def register(method: Method) -> Method:
    """Add a method to the registry (names are unique; ``get_method`` finds it by ``key``)."""
    key = method_key(method.name)
    if key in _METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    _METHODS[key] = method
    return method


for _method in (*gradient.METHODS, *cam.METHODS, *lrp.METHODS):
    register(_method)

#: The built-in method names, in the order ``list_methods`` reports them.
METHOD_NAMES: tuple[str, ...] = tuple(m.name for m in _METHODS.values())


def get_method(name: str) -> Method:
    """The registered method called ``name`` (case and ``-``/``_`` insensitive)."""
    if not isinstance(name, str):
        raise InvalidInputError(f"method must be a name (str), got {type(name).__name__}")
    key = method_key(name)
    if key not in _METHODS:
        known = ", ".join(m.name for m in _METHODS.values())
        raise UnknownNameError(f"unknown method {name!r}; known methods: {known}")
    return _METHODS[key]


def list_methods() -> list[MethodInfo]:
    """Every method with a one-line description and its options, in a fixed order."""
    return [method.info() for method in _METHODS.values()]


__all__ = ["METHOD_NAMES", "get_method", "list_methods", "method_key", "register"]
