"""Max pooling whose backward shares tied maxima evenly (forward unchanged, bit for bit).

PyTorch's max-pool backward sends a window's whole gradient to the *first* element that
attains the maximum. On static video content consecutive frames are identical, so temporal
pooling windows are exactly tied, and the gradient always lands on the earlier frame of each
pair: explanations of static content get an even/odd comb and an early-frame bias that the
input does not have. ``TieSharingMaxPool`` computes the same forward with ``F.max_pool1d/2d/3d``
and, backwards, splits each window's gradient evenly among *all* elements equal to the window's
maximum. For untied windows (almost all of them on natural, moving content) it is the ordinary
max-pool gradient. It is still the gradient of the same function almost everywhere; at ties
it picks the symmetric subgradient instead of the first one.

For LRP the pool carries relevance as its gradient (no rule attaches to max pools), and the
shared split conserves it like the first-element split does: each window's relevance is handed
out in parts that add up to it.

``tie_sharing_pools()`` applies it during one explanation. It is a ``TorchFunctionMode``: while
it is active on the current thread, every call of ``F.max_pool1d/2d/3d`` (without
``return_indices``) and ``torch.max_pool1d/2d/3d`` goes through ``TieSharingMaxPool``. That
covers ``nn.MaxPool*d`` modules and their subclasses (I3D's "same"-padded pools), functional
calls inside a model's ``forward`` and torchvision's S3D and MViT, without touching the model:
there is nothing to restore, no module changes type, so Captum's hooks and Zennit's composites
see the model as it is (Zennit attaches no rule to max pools; a rule attached to a pool module
by a custom composite would replace this backward, as it replaces any module's). Other threads
are not affected. Adaptive max pools and pools asked for their indices keep PyTorch's backward.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from motion_relevance.errors import InvalidInputError

TIES = ("first", "shared")
"""Values of ``explain(..., ties=...)``: ``"first"`` is PyTorch's (and Captum's/Zennit's)
max-pool backward, ``"shared"`` splits tied maxima evenly."""

_FUNCTIONAL: dict[Callable[..., Any], int] = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3}
_ATEN: dict[Callable[..., Any], int] = {torch.max_pool1d: 1, torch.max_pool2d: 2, torch.max_pool3d: 3}
_ARG_NAMES = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_POOL_FN = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _tuple(value: int | Sequence[int] | None, nd: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * nd
    values = tuple(int(v) for v in value)  # type: ignore[union-attr]
    if len(values) == 1:
        return values * nd
    if len(values) != nd:
        raise InvalidInputError(f"max pool {name} must have 1 or {nd} entries, got {values}")
    return values


class TieSharingMaxPool(torch.autograd.Function):
    """``F.max_pool{nd}d`` forward; backward splits each window's gradient evenly among all of
    the window's elements that equal its maximum (padding never counts)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        nd: int,
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        ceil_mode: bool,
    ) -> torch.Tensor:
        out = _POOL_FN[nd](x, kernel, stride, padding, dilation, ceil_mode)
        ctx.save_for_backward(x, out)
        ctx.params = (nd, kernel, stride, padding, dilation)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, out = ctx.saved_tensors
        _, kernel, stride, padding, dilation = ctx.params
        grad_x = shared_max_pool_backward(x, out, grad, kernel, stride, padding, dilation)
        return grad_x, None, None, None, None, None, None


def shared_max_pool_backward(
    x: torch.Tensor,
    out: torch.Tensor,
    grad: torch.Tensor,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> torch.Tensor:
    """Gradient w.r.t. ``x`` of a max pool with output ``out``, sharing ties evenly.

    Loops over the kernel offsets (at most 27 for 3x3x3): for each offset the strided slice of
    the (padded) input holds that offset's element of every window; it counts as a maximum where
    it equals the window's output and lies inside the input. Two passes: count the maxima per
    window, then add ``grad / count`` to each maximum. Written with differentiable tensor ops,
    so the result is differentiable w.r.t. ``grad`` (double backward).
    """
    nd = len(kernel)
    sizes = x.shape[-nd:]
    outs = out.shape[-nd:]
    # Pad so that every window (including ceil_mode's partial last one) lies inside.
    lefts, rights = [], []
    for n, o, k, s, p, d in zip(sizes, outs, kernel, stride, padding, dilation, strict=True):
        need = (o - 1) * s + d * (k - 1) + 1
        lefts.append(p)
        rights.append(max(need - n - p, 0))
    pads: list[int] = []
    for left, right in zip(reversed(lefts), reversed(rights), strict=True):
        pads += [left, right]
    xp = F.pad(x, pads) if any(pads) else x
    lead = (slice(None),) * (x.ndim - nd)

    def window_slice(offset: tuple[int, ...]) -> tuple[slice, ...]:
        return lead + tuple(
            slice(j * d, j * d + (o - 1) * s + 1, s)
            for j, d, o, s in zip(offset, dilation, outs, stride, strict=True)
        )

    def inside(offset: tuple[int, ...]) -> torch.Tensor | None:
        """Bool mask (broadcast over the output) of windows whose element ``offset`` is real
        input, not padding; None when all are."""
        mask: torch.Tensor | None = None
        for axis, (j, d, o, s, left, n) in enumerate(zip(offset, dilation, outs, stride, lefts, sizes, strict=True)):
            flags = [0 <= i * s + j * d - left < n for i in range(o)]  # index arithmetic, on the host
            if all(flags):
                continue
            shape = [1] * nd
            shape[axis] = o
            ok = torch.tensor(flags, device=x.device).reshape(shape)
            mask = ok if mask is None else mask & ok
        return mask

    offsets = list(itertools.product(*(range(k) for k in kernel)))
    masks = [inside(o) for o in offsets]

    def is_max(offset: tuple[int, ...], mask: torch.Tensor | None) -> torch.Tensor:
        hit = xp[window_slice(offset)] == out
        return hit if mask is None else hit & mask

    count = torch.zeros_like(out)
    for offset, mask in zip(offsets, masks, strict=True):
        count += is_max(offset, mask)
    share = grad / count.clamp_min(1)  # a NaN window (no element equals NaN) passes nothing
    grad_xp = torch.zeros_like(xp, dtype=grad.dtype)
    for offset, mask in zip(offsets, masks, strict=True):
        grad_xp[window_slice(offset)] += share * is_max(offset, mask)
    if not any(pads):
        return grad_xp
    crop = lead + tuple(slice(left, left + n) for left, n in zip(lefts, sizes, strict=True))
    return grad_xp[crop]


def tie_sharing_max_pool(
    x: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    *,
    nd: int = 3,
) -> torch.Tensor:
    """``F.max_pool{nd}d(x, ...)`` (same arguments, same output) with the tie-sharing backward."""
    kernel = _tuple(kernel_size, nd, "kernel_size")
    strides = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _tuple(stride, nd, "stride")
    return TieSharingMaxPool.apply(
        x, nd, kernel, strides, _tuple(padding, nd, "padding"), _tuple(dilation, nd, "dilation"), bool(ceil_mode)
    )


class TieSharingMode(TorchFunctionMode):
    """Routes max pools through ``TieSharingMaxPool`` while active (see the module docstring)."""

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        nd = _FUNCTIONAL.get(func) or _ATEN.get(func)
        if nd is not None:
            bound = dict(zip(_ARG_NAMES, args, strict=False))
            bound.update(kwargs)
            if not bound.get("return_indices", False) and isinstance(bound.get("input"), torch.Tensor):
                return tie_sharing_max_pool(
                    bound["input"],
                    bound["kernel_size"],
                    bound.get("stride"),
                    bound.get("padding", 0),
                    bound.get("dilation", 1),
                    bound.get("ceil_mode", False),
                    nd=nd,
                )
        return func(*args, **kwargs)


@contextlib.contextmanager
def tie_sharing_pools(ties: str = "shared") -> Iterator[None]:
    """Within the block, max pools on this thread share tied maxima evenly (``ties="shared"``)
    or keep PyTorch's first-element backward (``ties="first"``, does nothing). Models are not
    modified, so there is nothing to restore afterwards."""
    check_ties(ties)
    if ties == "first":
        yield
        return
    with TieSharingMode():
        yield


def check_ties(ties: Any) -> str:
    """``ties`` checked against ``TIES``."""
    if not isinstance(ties, str) or ties not in TIES:
        raise InvalidInputError(f"ties must be one of {', '.join(map(repr, TIES))}, got {ties!r}")
    return ties


__all__ = [
    "TIES",
    "TieSharingMaxPool",
    "TieSharingMode",
    "check_ties",
    "shared_max_pool_backward",
    "tie_sharing_max_pool",
    "tie_sharing_pools",
]
