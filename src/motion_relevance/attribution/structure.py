"""What the methods need to know about a model's structure, found by one dry forward pass.

Module registration order says little about data flow (a block may register its batch norm
before its convolution, an Inception block runs four branches on one input), so the layers that
LRP treats specially and the default Grad-CAM layer are found from the order in which modules
are *called* and from which tensor feeds which module:

* ``first_layer`` / ``last_layer``: the first and last convolution or linear layer called;
* ``cam_layer``: the last ``nn.Conv3d`` whose output still has more than one time step;
* ``batch_norm_merges``: every batch norm whose input is exactly the output of a convolution or
  linear layer called once (so its affine map can be folded into that layer);
* ``first_input_mask``: which entries of the first layer's input come from the clip rather than
  from padding (models with TensorFlow-"SAME" padding pad with ``F.pad`` before the first
  convolution; LRP's first-layer rules must not give relevance to those zeros).

The result is cached per model (weakly) and input shape, so repeated calls cost nothing.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from zennit.types import BatchNorm, ConvolutionTranspose
from zennit.types import Linear as LinearLayer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelStructure:
    """Layers found by a dry forward pass of one clip shape (names are ``named_modules`` names)."""

    linear_layers: tuple[str, ...]
    """Convolution and linear layers, in the order they are first called."""
    first_layer: str | None
    last_layer: str | None
    cam_layer: str | None
    batch_norm_merges: tuple[tuple[tuple[str, ...], str], ...]
    """``((linear_name,), batch_norm_name)`` pairs, the format of Zennit's ``NamedMergeBatchNorm``."""
    unmerged_batch_norms: tuple[str, ...]
    first_input_mask: torch.Tensor | None
    """float ``(1, C, T', H', W')``: 1 where the first layer's input is clip data, 0 where it is
    padding; None when the first layer sees the clip itself."""


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, ModelStructure]] = weakref.WeakKeyDictionary()


def model_structure(model: nn.Module, x: torch.Tensor) -> ModelStructure:
    """The structure of ``model`` for clips shaped like ``x`` (N, C, T, H, W), cached."""
    fingerprint = tuple((name, type(m)) for name, m in model.named_modules())
    key = (fingerprint, tuple(x.shape[1:]), x.dtype, str(x.device))
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        per_model.clear()  # a changed model or a new shape: keep only the latest entry
        per_model[key] = _discover(model, x[:1].detach())
    return per_model[key]


def _discover(model: nn.Module, x: torch.Tensor) -> ModelStructure:
    names = {m: name for name, m in model.named_modules()}
    first_call: list[str] = []
    last_call: dict[str, int] = {}
    calls: dict[str, int] = {}
    # id of a linear layer's output -> (layer name, weak reference to the output); the weak
    # reference tells a live output from a later tensor that reuses a dead one's id.
    outputs: dict[int, tuple[str, weakref.ref]] = {}
    bn_sources: dict[str, str | None] = {}
    conv3d_shapes: dict[str, tuple[int, ...]] = {}
    step = 0

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        nonlocal step
        name = names[module]
        step += 1
        calls[name] = calls.get(name, 0) + 1
        if name not in last_call:
            first_call.append(name)
        last_call[name] = step
        if isinstance(module, LinearLayer) and isinstance(output, torch.Tensor):
            outputs[id(output)] = (name, weakref.ref(output))
            if isinstance(module, nn.Conv3d):
                conv3d_shapes[name] = tuple(output.shape)
        if isinstance(module, BatchNorm) and args and isinstance(args[0], torch.Tensor):
            source, ref = outputs.get(id(args[0]), (None, None))
            bn_sources[name] = source if ref is not None and ref() is args[0] else None

    handles = [m.register_forward_hook(hook) for m in names if m is not model]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()

    modules = dict(model.named_modules())
    linear = tuple(n for n in first_call if isinstance(modules[n], LinearLayer))
    first = linear[0] if linear else None
    last = max(linear, key=lambda n: last_call[n]) if linear else None
    cams = [n for n, shape in conv3d_shapes.items() if len(shape) == 5 and shape[2] > 1]
    cam = max(cams, key=lambda n: last_call[n]) if cams else None

    merges: list[tuple[tuple[str, ...], str]] = []
    unmerged: list[str] = []
    for bn_name, source in bn_sources.items():
        if (
            source is not None
            and calls[source] == 1
            and calls[bn_name] == 1
            and _channels_match(modules[source], modules[bn_name])
        ):
            merges.append(((source,), bn_name))
        else:
            unmerged.append(bn_name)
    if unmerged:
        log.info("batch norms not directly after a convolution/linear layer (kept as is): %s", unmerged)

    mask = _first_input_mask(model, modules[first], x) if first is not None else None
    return ModelStructure(linear, first, last, cam, tuple(merges), tuple(unmerged), mask)


def _channels_match(linear: nn.Module, batch_norm: nn.Module) -> bool:
    """Whether Zennit can fold ``batch_norm`` into ``linear``: one batch-norm channel per output
    channel of the layer, an affine batch norm that tracks running statistics."""
    out_dim = 1 if isinstance(linear, ConvolutionTranspose) else 0  # as Zennit's merge indexes it
    return (
        linear.weight.shape[out_dim] == batch_norm.num_features
        and batch_norm.running_mean is not None
        and batch_norm.weight is not None
        and batch_norm.bias is not None
    )


class _Stop(Exception):
    """Raised inside a hook to end a dry run early."""


def _first_input_mask(model: nn.Module, first: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Forward-mode derivative of the first layer's input w.r.t. the clip: zero exactly on
    entries that do not depend on the clip (padding)."""
    captured: dict[str, torch.Tensor | None] = {}

    def pre_hook(module: nn.Module, args: tuple) -> None:
        captured["tangent"] = fwAD.unpack_dual(args[0]).tangent if args else None
        raise _Stop

    handle = first.register_forward_pre_hook(pre_hook)
    try:
        with torch.no_grad(), fwAD.dual_level(), warnings.catch_warnings():
            # torch's forward-AD decompositions warn (once, on import) that torch.jit.script
            # is deprecated: torch's own business, not the user's.
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
            model(fwAD.make_dual(x, torch.ones_like(x)))
    except _Stop:
        pass
    except Exception as exc:  # an op without forward-mode AD before the first layer
        log.info("could not trace padding before the first layer (%s); assuming none", exc)
        return None
    finally:
        handle.remove()
    tangent = captured.get("tangent")
    if tangent is None:
        return None
    mask = (tangent[:1] != 0).to(x.dtype)
    if bool(mask.all()):
        return None
    return mask
