"""How each clip is explained beyond the selective step: max-pool ties and context frames.

``ExplainSettings`` holds ``explain``'s ``ties`` ("first" or "shared") and ``context_frames``
(k >= 0), checked once for every command. ``with_context`` gives each window of a video the k
real frames before and after it where the video has them, so a clip's first and last frames
are not explained as the edge of time; beyond the decoded range (the video's ends, or
``start``/``end``) the window's edge frame is repeated, as ``explain`` does without context.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from motion_relevance.attribution.numerics import check_precision
from motion_relevance.attribution.pooling import TIES, check_ties
from motion_relevance.checks import non_negative_int
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec
from motion_relevance.video import ClipWindow


@dataclass(frozen=True)
class ExplainSettings:
    """``explain``'s ``ties``, ``context_frames``, ``precision`` and ``tf32`` for every clip of
    a run."""

    ties: str = "first"
    context_frames: int = 0
    precision: str = "float32"
    tf32: bool = False

    def __post_init__(self) -> None:
        check_ties(self.ties)
        object.__setattr__(self, "precision", check_precision(self.precision))
        if not isinstance(self.tf32, bool):
            raise InvalidInputError(f"tf32 must be True or False, got {self.tf32!r}")
        object.__setattr__(self, "context_frames", non_negative_int("context_frames", self.context_frames))

    def check_model(self, spec: InputSpec) -> None:
        """Refuse context frames for a model that takes clips of one fixed length only."""
        if self.context_frames and spec.min_frames is None:
            raise InvalidInputError(
                f"context_frames needs a model that accepts longer clips, but this model takes exactly "
                f"{spec.frames} frames (its InputSpec has no min_frames); use context frames 0"
            )

    def describe(self) -> dict[str, Any]:
        """The settings as plain values (records and fingerprints); precision and TF32 only
        when they differ from the defaults, so records written before they existed still match."""
        out: dict[str, Any] = {"ties": self.ties, "context_frames": self.context_frames}
        if self.precision != "float32" or self.tf32:
            out.update(precision=self.precision, tf32=self.tf32)
        return out

    def kwargs(self) -> dict[str, Any]:
        """The settings as ``explain`` keyword arguments."""
        return {"ties": self.ties, "context_frames": self.context_frames, "precision": self.precision, "tf32": self.tf32}


def with_context(
    windows: Iterable[tuple[ClipWindow, np.ndarray]], k: int
) -> Iterator[tuple[ClipWindow, np.ndarray, np.ndarray]]:
    """``(window, frames, extended)`` for each window: ``extended`` is uint8 ``(T + 2k, H, W, 3)``,
    the window's frames with ``k`` neighbouring frames of the video on each side (read one
    window ahead), the nearest available frame repeated where the decoded video ends.
    Loop-padded windows get their edge frames repeated."""
    if k == 0:
        for window, frames in windows:
            yield window, frames, frames
        return
    cache: dict[int, np.ndarray] = {}
    pending: deque[tuple[ClipWindow, np.ndarray]] = deque()
    newest = -1

    def extend(window: ClipWindow, frames: np.ndarray) -> np.ndarray:
        if window.padded:
            before = [frames[0]] * k
            after = [frames[-1]] * k
        else:
            first, last = window.frame_indices[0], window.frame_indices[-1]
            before = [cache.get(i) for i in range(first - k, first)]
            after = [cache.get(i) for i in range(last + 1, last + 1 + k)]
            fill = next((f for f in before if f is not None), frames[0])
            before = [fill if f is None else f for f in before]
            for j, f in enumerate(after):  # missing frames follow the last one found
                after[j] = f if f is not None else (after[j - 1] if j else frames[-1])
        return np.concatenate([np.stack(before), frames, np.stack(after)])

    def ready(done: bool) -> Iterator[tuple[ClipWindow, np.ndarray, np.ndarray]]:
        while pending and (done or pending[0][0].padded or newest >= pending[0][0].frame_indices[-1] + k):
            window, frames = pending.popleft()
            yield window, frames, extend(window, frames)
            keep = pending[0][0].frame_indices[0] - k if pending else window.frame_indices[-1] + 1 - k
            for i in [i for i in cache if i < keep]:
                del cache[i]

    for window, frames in windows:
        if not window.padded:
            for i, frame in zip(window.frame_indices, frames, strict=True):
                cache[i] = frame
            newest = max(newest, window.frame_indices[-1])
        pending.append((window, frames))
        yield from ready(False)
    yield from ready(True)


def split_context(x: torch.Tensor, k: int, frames: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Preprocessed extended clips ``(N, C, frames + 2k, h, w)`` -> the clips and ``explain``'s
    ``context=(before, after)`` (None when ``k`` is 0)."""
    if k == 0:
        return x, None
    return x[:, :, k : k + frames], (x[:, :, :k], x[:, :, k + frames :])


__all__ = ["TIES", "ExplainSettings", "split_context", "with_context"]
