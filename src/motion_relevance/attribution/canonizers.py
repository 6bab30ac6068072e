"""Zennit canonizers for video models: temporary rewrites that let LRP rules see every operation.

LRP rules attach to modules, so a model must express each operation that redistributes
relevance as a module before the rules are registered; canonizers make these rewrites and undo
them afterwards (Zennit restores the parameters and attributes they touch).

* **Batch norm** (``Conv3d -> BatchNorm3d``, also 1-D/2-D): folded into the preceding layer
  with Zennit's ``NamedMergeBatchNorm``. Which batch norm follows which layer is read from the
  data flow of a dry forward pass (``structure.model_structure``), not from registration order,
  so blocks that register modules in any order, Inception branches and (2+1)D factorised
  convolutions all merge correctly, and a batch norm after a concatenation or a sum is never
  merged into the wrong layer. The emptied batch norm is made an exact identity
  (``ExactMergeBatchNorm``; Zennit 0.5.1 leaves a ``1/sqrt(1 + eps)`` factor).
* **Residual sums** in video ResNet blocks (torchvision's ``r3d_18``/``mc3_18``/
  ``r2plus1d_18`` ``BasicBlock`` and ``Bottleneck``): ``out += residual`` becomes a Zennit
  ``Sum`` module, so relevance is split between the two branches in proportion to their
  contributions instead of being copied to both (which would double it). Other residual block
  types can be added with ``register_residual_block``.
* **Concatenation** in Inception blocks (``torch.cat`` of four branches on channels) needs no
  rewrite: it is a fixed routing of entries, whose gradient hands each output channel's
  relevance to the branch that produced it, exactly and conservatively. The tests check
  conservation through Inception blocks.
* **I3D head**: ``InceptionI3d`` averages over the 2x7x7 window and then over time with
  functional calls, whose gradient spreads relevance uniformly (also onto inactive units). The
  canonizer routes both averages through pooling modules so Zennit's proportional ``Norm``
  rule applies.
* **S3D head** (torchvision's ``S3D``): the logits are averaged over time and space with a
  functional ``torch.mean``; the canonizer routes that mean through an ``AdaptiveAvgPool3d``
  module, like I3D's.

Max pools need no rewrite: their gradient routes each window's relevance to its maximum (or,
with ``explain(..., ties="shared")``, evenly to tied maxima, ``attribution.pooling``), and
padding never takes any: ``nn.MaxPool3d`` pads with -inf, and the zeros that I3D's "SAME" pools
pad with only win a window whose real entries are all zero (ReLU outputs), where the relevance
arriving is zero. Relevance is lost at pools only through an *absolute* stabiliser in the layers
around them; ``lrp.RelativeStabilizer`` removes that.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.video import S3D
from torchvision.models.video import resnet as video_resnet
from zennit.canonizers import AttributeCanonizer, Canonizer, NamedMergeBatchNorm
from zennit.layer import Sum

from motion_relevance.attribution.structure import ModelStructure

ResidualForward = Callable[[nn.Module, torch.Tensor], torch.Tensor]
"""A block's forward, written with ``self.canonizer_sum(torch.stack([a, b], dim=-1))`` for
the residual addition."""


def _video_basic_block_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision.models.video.resnet.BasicBlock with the residual sum as a module."""
    out = self.conv2(self.conv1(x))
    residual = x if self.downsample is None else self.downsample(x)
    out = self.canonizer_sum(torch.stack([residual, out], dim=-1))
    return self.relu(out)


def _video_bottleneck_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision.models.video.resnet.Bottleneck with the residual sum as a module."""
    out = self.conv3(self.conv2(self.conv1(x)))
    residual = x if self.downsample is None else self.downsample(x)
    out = self.canonizer_sum(torch.stack([residual, out], dim=-1))
    return self.relu(out)


_RESIDUAL_BLOCKS: dict[type[nn.Module], ResidualForward] = {
    video_resnet.BasicBlock: _video_basic_block_forward,
    video_resnet.Bottleneck: _video_bottleneck_forward,
}


def register_residual_block(block_type: type[nn.Module], forward: ResidualForward) -> None:
    """Teach ``ResidualSumCanonizer`` a residual block type: ``forward(self, x)`` must compute the
    block exactly, adding the branches with ``self.canonizer_sum(torch.stack([a, b], dim=-1))``."""
    _RESIDUAL_BLOCKS[block_type] = forward


class ResidualSumCanonizer(AttributeCanonizer):
    """Replace the residual addition of known video ResNet blocks by a Zennit ``Sum`` module."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @staticmethod
    def _attribute_map(name: str, module: nn.Module) -> dict[str, object] | None:
        forward = next((f for t, f in _RESIDUAL_BLOCKS.items() if type(module) is t), None)
        if forward is None:
            return None
        return {"forward": forward.__get__(module), "canonizer_sum": Sum()}

    def copy(self) -> ResidualSumCanonizer:
        return ResidualSumCanonizer()


class I3DHeadPool(nn.AvgPool3d):
    """I3D's final "VALID" average pool (2 x min(7, H) x min(7, W), stride 1) as a module."""

    def __init__(self) -> None:
        super().__init__(kernel_size=(2, 7, 7), stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(x, (2, min(7, x.shape[3]), min(7, x.shape[4])), stride=1)


def _i3d_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """InceptionI3d.forward with both averages as pooling modules."""
    x = self.canonizer_pool(self.features(x))
    return self.canonizer_mean(self.Logits(x)).flatten(1)


class I3DHeadCanonizer(AttributeCanonizer):
    """Make ``InceptionI3d``'s head poolings modules, so LRP splits relevance proportionally."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @staticmethod
    def _attribute_map(name: str, module: nn.Module) -> dict[str, object] | None:
        from motion_relevance.models.i3d import InceptionI3d

        if type(module) is not InceptionI3d:
            return None
        return {
            "forward": _i3d_forward.__get__(module),
            "canonizer_pool": I3DHeadPool(),
            "canonizer_mean": nn.AdaptiveAvgPool3d(1),
        }

    def copy(self) -> I3DHeadCanonizer:
        return I3DHeadCanonizer()


def _s3d_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision S3D.forward with the final mean as a pooling module."""
    x = self.classifier(self.avgpool(self.features(x)))
    return self.canonizer_mean(x).flatten(1)


class S3DHeadCanonizer(AttributeCanonizer):
    """Make the final mean of torchvision's ``S3D`` a pooling module (proportional ``Norm`` rule)."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @staticmethod
    def _attribute_map(name: str, module: nn.Module) -> dict[str, object] | None:
        if type(module) is not S3D:
            return None
        return {"forward": _s3d_forward.__get__(module), "canonizer_mean": nn.AdaptiveAvgPool3d(1)}

    def copy(self) -> S3DHeadCanonizer:
        return S3DHeadCanonizer()


class ExactMergeBatchNorm(NamedMergeBatchNorm):
    """Zennit's ``NamedMergeBatchNorm`` with the emptied batch norm made an exact identity.

    Zennit 0.5.1 resets the merged batch norm to mean 0, variance 1, scale 1, shift 0, but keeps
    its ``eps``, so the module still divides by ``sqrt(1 + eps)``: a 5e-4 shrink per layer for
    I3D's ``eps=1e-3``, about 2 % of the logits over the network's depth. Setting the scale to
    ``sqrt(running_var + eps)`` (restored with everything else on removal) makes it the
    identity, whatever variance and eps the merge left.
    """

    @staticmethod
    def merge_batch_norm(modules: list[nn.Module], batch_norm: nn.Module) -> None:
        NamedMergeBatchNorm.merge_batch_norm(modules, batch_norm)
        batch_norm.weight.data = (batch_norm.running_var.data + batch_norm.eps).sqrt()


def video_canonizers(structure: ModelStructure) -> list[Canonizer]:
    """The canonizers for a model with ``structure``: batch-norm merging along the data flow,
    residual sums of video ResNet blocks, and the I3D and S3D heads."""
    canonizers: list[Canonizer] = []
    if structure.batch_norm_merges:
        canonizers.append(ExactMergeBatchNorm([(list(a), b) for a, b in structure.batch_norm_merges]))
    canonizers += [ResidualSumCanonizer(), I3DHeadCanonizer(), S3DHeadCanonizer()]
    return canonizers
