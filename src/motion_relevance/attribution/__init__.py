"""Base explanation methods for video models behind one verb, ``explain``.

Gradient, path, perturbation and CAM methods come from Captum; LRP and Deep Taylor from Zennit,
with the canonizers video models need (``canonizers``). ``list_methods()`` lists the methods
and their options.
"""

from __future__ import annotations

from motion_relevance.attribution.explain import Explanation, explain
from motion_relevance.attribution.method import MethodInfo
from motion_relevance.attribution.registry import METHOD_NAMES, list_methods
from motion_relevance.attribution.wrappers import SlowFastInput

__all__ = ["METHOD_NAMES", "Explanation", "MethodInfo", "SlowFastInput", "explain", "list_methods"]
