"""Reference models of the synthetic benchmark: a small C3D-style network per variant.

The trained weights ship with the package (``models/trained/synthetic-*.safetensors``, about
0.3 MB each) and are verified against the sha256 digests below before loading. They are
reproduced by ``python -m motion_relevance.synthetic.train --variant VARIANT``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from importlib import resources
from typing import TYPE_CHECKING

import torch
from torch import nn

from motion_relevance.errors import UnknownNameError, WeightsError
from motion_relevance.models.spec import InputSpec
from motion_relevance.synthetic.generator import FRAMES, SIZE, labels

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)

SYNTHETIC_PRESETS: dict[str, str] = {
    "synthetic-motion": "small C3D trained on the synthetic benchmark; label = direction of motion",
    "synthetic-appearance": "small C3D trained on the synthetic benchmark; label = shape and colour of a static object",
    "synthetic-shortcut": "small C3D trained on the synthetic benchmark; label = direction of motion, "
    "with a static colour cue that agrees in 90 % of training clips",
}

#: sha256 of each shipped weights file (printed by the training command).
WEIGHTS_SHA256: dict[str, str] = {
    "synthetic-motion": "6477fee674bf35da05db9f58c40a1c02537e610587c811152134f5e8ac61e4cf",
    "synthetic-appearance": "467abf5ecfed4269ea9d66c93d2dff055b5b127d24edbce0aa0b3d77350dab63",
    "synthetic-shortcut": "1a16e6f170132369594ed0dc8972040370c1836224ccc2450c46f0230969032a",
}

#: Channel widths of the four 3x3x3 convolution stages.
WIDTHS: tuple[int, int, int, int] = (8, 16, 32, 64)
#: Pixel normalisation shared by all synthetic presets: (v / 255 - 0.5) / 0.25.
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.25, 0.25, 0.25)


class SyntheticC3D(nn.Module):
    """C3D-style network: four 3x3x3 conv + batch norm + ReLU stages with max pooling, then
    global average pooling and a linear classifier. The first pooling is spatial only, as in
    C3D. (Batch norm is what lets the shape task of the ``appearance`` variant train in a few
    hundred steps; the LRP canonizers fold it into the convolutions.)"""

    def __init__(self, num_classes: int = 4, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        pools = [(1, 2, 2), (2, 2, 2), (2, 2, 2), None]
        c_in = 3
        for i, (c_out, pool) in enumerate(zip(widths, pools, strict=True), start=1):
            layers[f"conv{i}"] = nn.Conv3d(c_in, c_out, kernel_size=3, padding=1)
            layers[f"bn{i}"] = nn.BatchNorm3d(c_out)
            layers[f"relu{i}"] = nn.ReLU()
            if pool is not None:
                layers[f"pool{i}"] = nn.MaxPool3d(pool)
            c_in = c_out
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def _variant(name: str) -> str:
    if name not in SYNTHETIC_PRESETS:
        raise UnknownNameError(
            f"unknown synthetic preset {name!r}; choose one of {', '.join(SYNTHETIC_PRESETS)}"
        )
    return name.removeprefix("synthetic-")


def synthetic_spec(name: str) -> InputSpec:
    """The InputSpec of a synthetic preset: 16 frames of 64x64, no resize, 4 labels."""
    variant = _variant(name)
    return InputSpec(
        frames=FRAMES,
        size=(SIZE, SIZE),
        resize=None,
        mean=MEAN,
        std=STD,
        scale=1.0 / 255.0,
        labels=labels(variant),
        cam_layer="features.conv4",
        description=SYNTHETIC_PRESETS[name],
    )


def weights_resource(name: str) -> Traversable:
    """Where a preset's weights live inside the installed package."""
    _variant(name)
    return resources.files("motion_relevance.models").joinpath("trained", f"{name}.safetensors")


def synthetic_weights_available(name: str) -> bool:
    """Whether the package holds weights for this preset (verified when loaded)."""
    return weights_resource(name).is_file() and name in WEIGHTS_SHA256


def build_synthetic(name: str) -> tuple[nn.Module, InputSpec]:
    """The trained preset in eval mode and its InputSpec; weights are sha256-verified."""
    from safetensors.torch import load as load_safetensors

    spec = synthetic_spec(name)
    resource = weights_resource(name)
    if not resource.is_file():
        raise WeightsError(
            f"the package has no weights for {name}; reinstall motion-relevance or train them "
            f"with `python -m motion_relevance.synthetic.train --variant {_variant(name)}`"
        )
    data = resource.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = WEIGHTS_SHA256.get(name)
    if expected is None or digest != expected:
        raise WeightsError(
            f"weights of {name} have sha256 {digest[:16]}..., expected "
            f"{(expected or 'none recorded')[:16]}...; reinstall motion-relevance"
        )
    model = SyntheticC3D(num_classes=len(spec.labels or ()))
    try:
        model.load_state_dict(load_safetensors(data), strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"weights of {name} do not fit the SyntheticC3D architecture ({str(exc).splitlines()[0]}); "
            "reinstall motion-relevance"
        ) from exc
    log.info("loaded %s (sha256 %s)", name, digest[:12])
    return model.eval(), spec


__all__ = [
    "SYNTHETIC_PRESETS",
    "WEIGHTS_SHA256",
    "SyntheticC3D",
    "build_synthetic",
    "synthetic_spec",
    "synthetic_weights_available",
    "weights_resource",
]
