"""``explain``: one verb for every base explanation method, on (N, C, T, H, W) clips."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from motion_relevance.attribution.method import describe
from motion_relevance.attribution.numerics import check_precision, numerics
from motion_relevance.attribution.pooling import check_ties, tie_sharing_pools
from motion_relevance.attribution.registry import get_method
from motion_relevance.attribution.run import Run, model_guard
from motion_relevance.checks import non_negative_int
from motion_relevance.errors import InvalidInputError, UnknownNameError
from motion_relevance.models.spec import InputSpec

Target = int | str | Sequence[int | str] | torch.Tensor | np.ndarray | None
Context = tuple[torch.Tensor | None, torch.Tensor | None] | None


@dataclass(frozen=True)
class Explanation:
    """A base explanation of a batch of clips."""

    relevance: torch.Tensor
    """(N, C, T, H, W) float32, raw and signed, at the clips' resolution."""
    target: torch.Tensor
    """(N,) int64: the explained class of each clip."""
    logits: torch.Tensor
    """(N, K) float32: the model's logits for the unmodified clips."""
    method: str
    options: dict[str, Any]
    """The method's options as used (defaults filled in, layers by name, tensors by shape),
    plus ``batch_size``, ``seed``, ``ties`` and ``context_frames`` (and ``context`` when given)."""


def explain(
    model: nn.Module,
    clips: torch.Tensor,
    method: str,
    *,
    target: Target = None,
    spec: InputSpec | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    ties: str = "first",
    context_frames: int = 0,
    context: Context = None,
    precision: str = "float32",
    tf32: bool = False,
    **options: Any,
) -> Explanation:
    """Explain ``model``'s logit for ``target`` on ``clips`` (N, C, T, H, W) with ``method``.

    ``target``: None (each clip's top class), a class index, a label name (needs labels in the
    spec), or one of those per clip. ``spec`` defaults to ``model.input_spec``. ``batch_size``
    caps the clip passes per forward: single-pass methods take the clips in chunks of that many
    (default: all at once); multi-pass methods (IG, SmoothGrad, occlusion) run clip by clip with
    that many passes per forward (default 1). ``seed`` fixes SmoothGrad's noise. The model is
    run in eval mode with frozen parameters and left exactly as it was. See ``list_methods()``
    for the methods and their options.

    ``ties``: how max pools pass gradient back through exactly tied maxima (static content gives
    them): ``"first"`` to the first tied element (PyTorch's backward; reproduces Captum and
    Zennit exactly), ``"shared"`` evenly to all of them, which removes the even/odd comb and
    early-frame bias max pools stamp onto static content (``attribution.pooling``).

    ``context_frames``: explain each clip extended by this many frames at each end and crop the
    relevance back to the clip's own frames, so the clip's first and last frames are not seen
    as the edge of time (the network's zero temporal padding). The extra frames repeat the
    clip's edge frames, or come from ``context=(before, after)``: the real neighbouring frames,
    preprocessed like the clips, shaped (N or 1, C, j, H, W) with j <= context_frames (the
    nearest are used; missing ones repeat the outermost given frame; either may be None).
    ``logits`` and ``target`` are then those of the extended clips. Needs a model that accepts
    longer clips (``spec.min_frames``).

    ``precision``: ``"float32"`` (default) or ``"bfloat16"`` (``"bf16"``): the model runs under
    ``torch.autocast`` in bfloat16 (faster on recent GPUs; the maps move by a few per cent, see
    ``docs/batch.md``); relevance, logits and the selective step stay float32. ``tf32``: False
    (default) runs float32 convolutions and matrix products in full IEEE precision while the
    method runs, so a clip gives the same map on a CPU and on an Ampere-or-later GPU (TF32
    moves saliency by about 7 %); True leaves PyTorch's global TF32 settings as they are.

    Input checks cost at most one host synchronisation per call on a GPU.
    """
    info = get_method(method)
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = _check_clips(clips)
    n = x.shape[0]
    if spec is None:
        spec = getattr(model, "input_spec", None)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidInputError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InvalidInputError(f"seed must be an integer, got {seed!r}")
    requested = _requested_target(target, spec, n)
    check_ties(ties)
    precision = check_precision(precision)
    if not isinstance(tf32, bool):
        raise InvalidInputError(f"tf32 must be True or False, got {tf32!r}")
    opts = info.resolve_options(options)
    frames = x.shape[2]
    own = x
    x, before, given = _extend(x, context_frames, context, spec)
    _check_finite(own if given is None else [own, *given])  # the clips, then the given context

    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    dtype = param.dtype if param is not None and param.is_floating_point() else x.dtype

    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        model_guard(model),
        tie_sharing_pools(ties),
        numerics(device, precision, tf32),
    ):
        x = x.detach().to(device=device, dtype=dtype).clone()
        if info.finalize is not None:
            opts = info.finalize(model, spec, x, opts)
        if info.multi_pass:
            chunks = [slice(i, i + 1) for i in range(n)]
            passes = batch_size or 1
        else:
            step = batch_size or n
            chunks = [slice(i, min(i + step, n)) for i in range(0, n, step)]
            passes = step
        parts = []
        for chunk in chunks:
            run = Run(
                model=model,
                spec=spec,
                requested=None if requested is None else requested[chunk],
                seed=int(seed) + chunk.start,
                batch_size=passes,
                index=chunk,
                total=n,
            )
            parts.append(info.fn(run, x[chunk], opts))

    out_device = clips.device if isinstance(clips, torch.Tensor) else torch.device("cpu")
    relevance = torch.cat([p.relevance.detach() for p in parts]).to(device=out_device, dtype=torch.float32)
    relevance = relevance[:, :, before : before + frames]
    logits = torch.cat([p.logits.detach() for p in parts]).to(device=out_device, dtype=torch.float32)
    resolved = torch.cat([p.target.detach() for p in parts]).to(device=out_device, dtype=torch.int64)
    described = {k: describe(v) for k, v in opts.items()}
    described.update(batch_size=batch_size, seed=int(seed), ties=ties, context_frames=int(context_frames))
    if precision != "float32" or tf32:
        described.update(precision=precision, tf32=tf32)
    if context is not None:
        described["context"] = "given"
    return Explanation(relevance.contiguous(), resolved, logits, info.name, described)


def _extend(
    x: torch.Tensor, k: Any, context: Context, spec: InputSpec | None
) -> tuple[torch.Tensor, int, list[torch.Tensor] | None]:
    """Clips ``x`` extended by ``k`` context frames at each end, the number of frames put
    before them (0 when ``k`` is 0), and the context frames that were given (still to be
    checked for finiteness, with the clips, in one synchronisation)."""
    k = non_negative_int("context_frames", k)
    if k == 0:
        if context is not None:
            raise InvalidInputError("context frames were given but context_frames is 0; pass context_frames=k")
        return x, 0, None
    if spec is not None and spec.min_frames is None:
        raise InvalidInputError(
            f"context_frames needs a model that accepts longer clips, but this model takes exactly {spec.frames} "
            "frames (its InputSpec has no min_frames); use context_frames=0"
        )
    if context is None:
        context = (None, None)
    if not isinstance(context, tuple | list) or len(context) != 2:
        raise InvalidInputError("context must be a pair (before, after) of frame tensors (N, C, j, H, W) or None")
    edges = (x[:, :, :1], x[:, :, -1:])
    sides = []
    given_frames: list[torch.Tensor] = []
    for name, given, edge in zip(("before", "after"), context, edges, strict=True):
        if given is None:
            sides.append(edge.expand(-1, -1, k, -1, -1))
            continue
        if isinstance(given, np.ndarray):
            given = torch.from_numpy(given)
        if not isinstance(given, torch.Tensor) or given.ndim != 5 or not given.is_floating_point():
            raise InvalidInputError(f"context {name} must be a float tensor (N, C, j, H, W) preprocessed like the clips")
        if given.shape[0] not in (1, x.shape[0]) or given.shape[1] != x.shape[1] or given.shape[3:] != x.shape[3:]:
            raise InvalidInputError(
                f"context {name} has shape {tuple(given.shape)}; it must match the clips {tuple(x.shape)} "
                "except in time (and may have 1 row)"
            )
        if given.shape[2] == 0:
            sides.append(edge.expand(-1, -1, k, -1, -1))
            continue
        given_frames.append(given)
        given = given.to(x).expand(x.shape[0], -1, -1, -1, -1)
        if name == "before":
            given = given[:, :, -k:]
            fill = given[:, :, :1].expand(-1, -1, k - given.shape[2], -1, -1)
            sides.append(torch.cat([fill, given], dim=2))
        else:
            given = given[:, :, :k]
            fill = given[:, :, -1:].expand(-1, -1, k - given.shape[2], -1, -1)
            sides.append(torch.cat([given, fill], dim=2))
    return torch.cat([sides[0], x, sides[1]], dim=2), k, given_frames


def _check_clips(clips: Any) -> torch.Tensor:
    if isinstance(clips, np.ndarray):
        clips = torch.from_numpy(clips)
    if not isinstance(clips, torch.Tensor):
        raise InvalidInputError(f"clips must be a float tensor (N, C, T, H, W), got {type(clips).__name__}")
    if clips.ndim != 5:
        raise InvalidInputError(
            f"clips must be shaped (N, C, T, H, W), got {tuple(clips.shape)}; use spec.preprocess(frames) to make them"
        )
    if not clips.is_floating_point():
        raise InvalidInputError(f"clips must be floating point (use spec.preprocess), got {clips.dtype}")
    if clips.numel() == 0:
        raise InvalidInputError(f"clips are empty: shape {tuple(clips.shape)}")
    return clips


def _check_finite(tensors: torch.Tensor | list[torch.Tensor]) -> None:
    """Refuse NaN or infinite clips (or given context frames), with one host read-back for all."""
    if isinstance(tensors, torch.Tensor):
        tensors = [tensors]
    flags = torch.stack([torch.isfinite(t).all().to(tensors[0].device) for t in tensors]).tolist()
    if not flags[0]:
        raise InvalidInputError("clips contain NaN or infinite values")
    if not all(flags):
        raise InvalidInputError("context frames contain NaN or infinite values")


def _label_or_index(value: Any, spec: InputSpec | None) -> int:
    if isinstance(value, str):
        if spec is None:
            raise UnknownNameError(
                f"target {value!r} is a label name, but the model has no InputSpec; pass spec= or a class index"
            )
        return spec.label_index(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInputError(f"a target must be a class index or a label name, got {value!r}")
    if value < 0:
        raise InvalidInputError(f"target {int(value)} is out of range: class indices start at 0")
    return int(value)


def _requested_target(target: Target, spec: InputSpec | None, n: int) -> tuple[int, ...] | None:
    """The requested class per clip (n values), or None for each clip's argmax."""
    if target is None:
        return None
    if isinstance(target, np.ndarray):
        target = torch.from_numpy(target)
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise InvalidInputError(f"a target tensor must hold integer class indices, got {target.dtype}")
        if target.ndim == 0:
            target = target.reshape(1).expand(n)
        if target.ndim != 1 or target.shape[0] != n:
            raise InvalidInputError(f"a target tensor must have one entry per clip ({n}), got shape {tuple(target.shape)}")
        values = [_label_or_index(int(v), spec) for v in target.tolist()]
    elif isinstance(target, str | numbers.Integral):
        values = [_label_or_index(target, spec)] * n
    elif isinstance(target, Sequence):
        if len(target) != n:
            raise InvalidInputError(f"give one target per clip ({n}), got {len(target)}")
        values = [_label_or_index(v, spec) for v in target]
    else:
        raise InvalidInputError(f"target must be None, an int, a label name or one per clip, got {type(target).__name__}")
    return tuple(values)
