"""One step of every run: explain a batch of clips with one method, then split the explanation
with the selective step, timing the two apart."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from motion_relevance.attribution import Explanation, explain
from motion_relevance.attribution.explain import Context
from motion_relevance.models.spec import InputSpec
from motion_relevance.runs.settings import SelectiveSettings
from motion_relevance.selective import SelectiveRelevance, selective_relevance


@dataclass(frozen=True)
class Step:
    """A method's explanation of a batch of clips, its selective split and what each cost."""

    explanation: Explanation
    selective: SelectiveRelevance
    seconds_explain: float
    """Wall-clock seconds of the base explanation (the model's forward and backward passes)."""
    seconds_selective: float
    """Wall-clock seconds of the selective step alone."""

    @property
    def seconds(self) -> float:
        return self.seconds_explain + self.seconds_selective


def _sync(device: torch.device) -> None:
    if device.type == "cuda":  # GPU work is asynchronous: wait for it before reading the clock
        torch.cuda.synchronize(device)


def explain_and_select(
    model: nn.Module,
    clips: torch.Tensor,
    method: str,
    settings: SelectiveSettings,
    *,
    target: Any = None,
    spec: InputSpec | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    ties: str = "first",
    context_frames: int = 0,
    context: Context = None,
    precision: str = "float32",
    tf32: bool = False,
) -> Step:
    """``explain`` then ``selective_relevance`` on ``clips``, each timed on its own.

    ``ties``, ``context_frames``, ``context``, ``precision`` and ``tf32`` are ``explain``'s
    (``runs.ExplainSettings``)."""
    t0 = time.perf_counter()
    expl = explain(
        model, clips, method, target=target, spec=spec, seed=seed, ties=ties, context_frames=context_frames,
        context=context, precision=precision, tf32=tf32, **dict(options or {}),
    )  # fmt: skip
    _sync(expl.relevance.device)
    t1 = time.perf_counter()
    sel = selective_relevance(
        expl.relevance, settings.sigma, padding=settings.padding, derivative=settings.derivative  # type: ignore[arg-type]
    )
    _sync(expl.relevance.device)
    return Step(expl, sel, t1 - t0, time.perf_counter() - t1)


__all__ = ["Step", "explain_and_select"]
