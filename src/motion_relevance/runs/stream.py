"""The one window loop: ``stream`` turns chunks of a video's preprocessed windows into
per-chunk results (every method's explanation and selective split, and the motion reliance).

Every command feeds it and consumes what it yields: the report (``report.pipeline``) one window
per chunk, the batch unit (``batch.pipeline``) ``clip_batch`` windows per chunk, decoded in this
process, by decode workers or by Ray tasks. Nothing else in the package loops over windows to
explain them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from motion_relevance.attribution.numerics import numerics
from motion_relevance.errors import MotionRelevanceError
from motion_relevance.metrics.motion_reliance import MotionReliance, motion_reliance
from motion_relevance.models.spec import InputSpec
from motion_relevance.runs.context import split_context
from motion_relevance.runs.model import one_line
from motion_relevance.runs.recipe import Recipe
from motion_relevance.runs.steps import Step, explain_and_select
from motion_relevance.video import ClipWindow

log = logging.getLogger(__name__)

#: Seed of one explain call from (method, index of the chunk's first window); the reliance's
#: permutations use the method name "reliance".
Seeds = Callable[[str, int], int]


@dataclass(frozen=True)
class Chunk:
    """Up to ``clip_batch`` windows of one video, decoded and preprocessed: the model's input."""

    windows: tuple[ClipWindow, ...]
    frames: int
    """T of each clip (without context)."""
    inputs: torch.Tensor
    """float32 ``(N, 3, T + 2k, H, W)``: the clips with ``k`` context frames on each side."""


@dataclass(frozen=True)
class ChunkResult:
    """What the stream found on one chunk."""

    chunk: Chunk
    steps: Mapping[str, Step] = field(default_factory=dict)
    """Every method that explained the chunk."""
    errors: Mapping[str, str] = field(default_factory=dict)
    """One-line error of every method that failed on this chunk or an earlier one of the stream
    (``keep_going``: a failed method is not run again on the same video)."""
    reliance: MotionReliance | None = None
    """The motion reliance of the chunk's clips (``recipe.reliance`` > 0)."""


def stream(
    model: nn.Module,
    spec: InputSpec,
    chunks: Iterable[Chunk],
    recipe: Recipe,
    *,
    target: Any = None,
    seeds: Seeds | None = None,
    keep_going: bool = False,
) -> Iterator[ChunkResult]:
    """Explain every chunk with every method of ``recipe`` (explaining ``target``: None for the
    predicted class, an index, a label name or a tensor per clip) and measure its motion
    reliance. ``seeds`` gives each call its seed (default: ``recipe.seed``). ``keep_going``: a
    method that raises becomes an error of the result and is skipped on the following chunks
    (the batch unit's rule); otherwise the error propagates (the report's)."""
    device = next(
        (t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu")
    )  # the callers placed the model; its inputs go where it is
    k = recipe.explaining.context_frames
    failed: dict[str, str] = {}
    for chunk in chunks:
        first = chunk.windows[0].index
        clips, context = split_context(chunk.inputs.to(device), k, chunk.frames)
        steps: dict[str, Step] = {}
        for method in recipe.methods:
            if method in failed:
                continue
            try:
                steps[method] = explain_and_select(
                    model, clips, method, recipe.selective, target=target, spec=spec,
                    seed=recipe.seed if seeds is None else seeds(method, first), options=recipe.options[method],
                    context=context, **recipe.explaining.kwargs(),
                )  # fmt: skip
            except Exception as exc:
                if not keep_going:
                    raise
                log.debug("%s failed", method, exc_info=True)
                failed[method] = one_line(exc)
        reliance = None
        explained = next(iter(steps.values()), None)
        if recipe.reliance and (explained is not None or not keep_going):
            try:
                with numerics(device, recipe.explaining.precision, recipe.explaining.tf32):
                    reliance = motion_reliance(
                        model, clips, target=None if explained is None else explained.explanation.target,
                        permutations=recipe.reliance, seed=recipe.seed if seeds is None else seeds("reliance", first),
                    )  # fmt: skip
            except Exception as exc:  # the explanations stand without it: the reliance is left empty
                if not keep_going and not isinstance(exc, MotionRelevanceError):
                    raise
                log.warning("motion reliance not measured: %s", one_line(exc))
        yield ChunkResult(chunk, steps, dict(failed), reliance)


__all__ = ["Chunk", "ChunkResult", "Seeds", "stream"]
