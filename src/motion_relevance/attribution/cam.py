"""Grad-CAM and Guided Grad-CAM on 3-D feature maps, computed by Captum.

The CAM of a layer with output ``A`` (N, C', T', H', W') is ``sum_k w_k A_k`` with ``w_k`` the
mean of the target logit's gradient over ``A_k``'s T'H'W' voxels; it is upsampled trilinearly
to the clip's (T, H, W) and spread evenly over the clip's channels, so the channel sum of the
relevance is the CAM. ``relu=False`` keeps the signed map. The layer defaults to the spec's
``cam_layer``, else the last ``nn.Conv3d`` whose output still has more than one time step.
Models whose CAM layer outputs tokens give the spec a ``cam_reshape`` to (N, C, T, H, W).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import GuidedBackprop, GuidedGradCam, LayerAttribution, LayerGradCam
from torch import nn

from motion_relevance.attribution.method import Method, Option, boolean
from motion_relevance.attribution.run import RELU_HOOK_WARNING, Attribution, Run, leaf
from motion_relevance.attribution.structure import model_structure
from motion_relevance.errors import InvalidInputError, UnknownNameError
from motion_relevance.models.spec import InputSpec


def _check_layer(name: str, value: Any) -> str | nn.Module:
    if isinstance(value, str | nn.Module):
        return value
    raise InvalidInputError(f"option {name} must be a dotted module name or a module of the model, got {type(value).__name__}")


def resolve_layer(model: nn.Module, spec: InputSpec | None, x: torch.Tensor, layer: str | nn.Module | None) -> str:
    """Dotted name of the CAM layer: ``layer``, else ``spec.cam_layer``, else the last Conv3d
    with more than one output time step."""
    if layer is None and spec is not None and spec.cam_layer:
        layer = spec.cam_layer
    if layer is None:
        name = model_structure(model, x).cam_layer
        if name is None:
            raise InvalidInputError(
                "no Conv3d output with more than one time step to take Grad-CAM at; pass layer='<module name>'"
            )
        return name
    if isinstance(layer, nn.Module):
        name = next((n for n, m in model.named_modules() if m is layer), None)
        if name is None:
            raise InvalidInputError("the Grad-CAM layer module is not part of the model; pass one of its submodules")
        return name
    try:
        model.get_submodule(layer)
    except AttributeError:
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv3d)]
        example = f", e.g. {convs[-1]!r}" if convs else ""
        raise UnknownNameError(
            f"the model has no module {layer!r}; pass a dotted name from model.named_modules(){example}"
        ) from None
    return layer


def _finalize(model: nn.Module, spec: InputSpec | None, x: torch.Tensor, opts: dict[str, Any]) -> dict[str, Any]:
    return {**opts, "layer": resolve_layer(model, spec, x, opts["layer"])}


def _layer_cam(run: Run, x: torch.Tensor, layer_name: str, relu: bool) -> tuple[torch.Tensor, Any]:
    """(CAM upsampled to the clip's T, H, W as (N, 1, T, H, W), the scorer)."""
    layer = run.model.get_submodule(layer_name)
    scorer = run.scorer(select=True)
    reshape = run.spec.cam_reshape if run.spec is not None else None
    if reshape is None:
        cam = LayerGradCam(scorer, layer).attribute(leaf(x), relu_attributions=relu)
    else:
        # Token layers: Captum computes the layer's gradient and output, the spec turns both
        # into (N, C, T, H, W), and the Grad-CAM weighting is applied to that.
        grads, acts = compute_layer_gradients_and_eval(scorer, layer, leaf(x))
        g, a = reshape(grads[0]), reshape(acts[0])
        if g.ndim != 5:
            raise InvalidInputError(f"spec.cam_reshape must return (N, C, T, H, W), got shape {tuple(g.shape)}")
        cam = (g.mean(dim=(2, 3, 4), keepdim=True) * a).sum(dim=1, keepdim=True)
        if relu:
            cam = cam.clamp(min=0)
    if not isinstance(cam, torch.Tensor) or cam.ndim != 5:
        shape = tuple(cam.shape) if isinstance(cam, torch.Tensor) else type(cam).__name__
        raise InvalidInputError(
            f"layer {layer_name!r} gives a CAM of shape {shape}, not (N, 1, T, H, W); choose a 3-D "
            "convolutional layer, or give the model's InputSpec a cam_reshape"
        )
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="trilinear"), scorer


def _gradcam(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
    cam, scorer = _layer_cam(run, x, opts["layer"], opts["relu"])
    return scorer.result((cam / x.shape[1]).expand_as(x).contiguous())


def _guided_gradcam(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=RELU_HOOK_WARNING)
        if run.spec is None or run.spec.cam_reshape is None:
            scorer = run.scorer(select=True)
            layer = run.model.get_submodule(opts["layer"])
            relevance = GuidedGradCam(scorer, layer).attribute(leaf(x), interpolate_mode="trilinear")
            if relevance.shape != x.shape:  # Captum returns an empty tensor when it cannot upsample
                raise InvalidInputError(
                    f"layer {opts['layer']!r} does not give a (N, 1, T, H, W) CAM; choose a 3-D convolutional layer"
                )
            return scorer.result(relevance)
        cam, scorer = _layer_cam(run, x, opts["layer"], relu=True)
        guided = GuidedBackprop(scorer).attribute(leaf(x))
    return scorer.result(guided * cam)


_LAYER = Option(
    "layer",
    None,
    "dotted module name (or module) whose output is weighted",
    _check_layer,
    shown_default="spec.cam_layer, else the last Conv3d with more than one output time step",
)

#: The methods of this module, in the order ``list_methods`` shows them.
METHODS: tuple[Method, ...] = (
    Method(
        "gradcam",
        "Grad-CAM at a 3-D layer, upsampled trilinearly to the clip",
        _gradcam,
        (_LAYER, Option("relu", True, "apply ReLU to the map; False returns the raw signed map", boolean)),
        kind="cam",
        finalize=_finalize,
    ),
    Method(
        "guided_gradcam",
        "guided backpropagation times the (ReLU) Grad-CAM map upsampled trilinearly",
        _guided_gradcam,
        (_LAYER,),
        kind="cam",
        finalize=_finalize,
    ),
)
