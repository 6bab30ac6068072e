"""Reference models of the synthetic benchmark: a small C3D-style network per variant.

The trained weights ship with the package (``models/trained/synthetic-*.safetensors``, about
0.3 MB each) and are verified against the sha256 digests below before loading. They are
reproduced by ``python scripts/train_synthetic.py --variant VARIANT`` (the graded family by
``scripts/train_graded.py``).
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

#: The graded-reliance family (``scripts/train_graded.py``): one model per motion level (the
#: percentage of training clips in which motion, not the static colour cue, carries the label)
#: and training seed; smaller clips and network so that each trains in minutes on 2 cores.
GRADED_LEVELS: tuple[int, ...] = (0, 25, 40, 45, 50, 75, 100)
GRADED_SEEDS: tuple[int, ...] = (0, 1, 2)
GRADED_FRAMES = 16
GRADED_SIZE = 32
GRADED_WIDTHS: tuple[int, int, int, int] = (8, 16, 24, 32)


def graded_name(level: int, seed: int) -> str:
    """Preset name of the graded model of ``level`` (percent) and ``seed``."""
    return f"synthetic-graded-{level:03d}-s{seed}"


GRADED_PRESETS: dict[str, str] = {
    graded_name(level, seed): f"small C3D on 32x32 two-cue clips; motion carries the label in "
    f"{level} % of training clips, a static colour cue in the rest (seed {seed})"
    for level in GRADED_LEVELS
    for seed in GRADED_SEEDS
}

#: sha256 of each shipped weights file (printed by the training command).
WEIGHTS_SHA256: dict[str, str] = {
    "synthetic-motion": "6477fee674bf35da05db9f58c40a1c02537e610587c811152134f5e8ac61e4cf",
    "synthetic-appearance": "467abf5ecfed4269ea9d66c93d2dff055b5b127d24edbce0aa0b3d77350dab63",
    "synthetic-shortcut": "1a16e6f170132369594ed0dc8972040370c1836224ccc2450c46f0230969032a",
}

#: sha256 of each graded model's weights (printed by scripts/train_graded.py).
GRADED_SHA256: dict[str, str] = {
    "synthetic-graded-000-s0": "9b58af7806ecc29151b481dce5a6e1e93007b6251a63af640e6773a87a7ea23f",
    "synthetic-graded-000-s1": "2d2d616100638952bb80b55a787d316645e9a2d82ab6d9ccf2e521b6541faea8",
    "synthetic-graded-000-s2": "21f1208f25525381e01e4d77604f42eb43a9b707c9463f9688427edc0fe215ae",
    "synthetic-graded-025-s0": "b4b4ec1c2a01e1c246e7172ea68dec7942c0da583bf8b56c5508c1bf83e48005",
    "synthetic-graded-025-s1": "5ced40388f786b5649b79c18aafbb5dd6361484a9851aa332a8593b9bd1aea3d",
    "synthetic-graded-025-s2": "16831f170600211e36326d249c81c4c61ada20aa8a55770363888af028933ff4",
    "synthetic-graded-040-s0": "62dbe6fbeca703d9e73d3959fd1c709f164417790ca0a24c9c32593a191d7f9a",
    "synthetic-graded-040-s1": "7cbf8d43158591c7d48731aa7aa3dbb7abfd0cf2a2ddc127729188ed9624cd94",
    "synthetic-graded-040-s2": "1cf62760f5fb9fc397a19495bcf4fc8d7a59797721c4d7e5a0668393abd5999e",
    "synthetic-graded-045-s0": "7ffd6c71fe6ab360c96d7fc375da8b8b3021374584dee5f0cf29215587ffc08b",
    "synthetic-graded-045-s1": "18259bcbd140fb03317f6794dff4ca30566aab3cfcdab24c77d1ada9c480d5a5",
    "synthetic-graded-045-s2": "d25c0fb41ad620165f0f483c237acbd8aa70ec2d5f0f538d1eccb1ead95b9ee6",
    "synthetic-graded-050-s0": "fbf8374fbb6bab35b943b2ff6e73054064559985dffccc4c4f2b5849ffdcc08d",
    "synthetic-graded-050-s1": "d6007f1874b8a308ac0e63a2018ed066fc38836a30c79e4a28012613d059e089",
    "synthetic-graded-050-s2": "bfabc1ec13632abd7e5dcdd85957f4e1904fd6daa9d8dcdde85ae9190cc587c7",
    "synthetic-graded-075-s0": "50f4a2273df01ca789ed9a14fcb5ff9415c071f6c7c1f4fd69e814f3490da073",
    "synthetic-graded-075-s1": "f86e8a7e7ba898dc0e86b647a8cc1bcb6d03930ebed7c0d286401069ebecc7c2",
    "synthetic-graded-075-s2": "b756b75b21394a671984f2653d483f9a3f1669cf626c69eb9cb1a7be6410e4b8",
    "synthetic-graded-100-s0": "d6ad3d00e15b9ed6b588cc059dba255dd2dbe0fd2554eaf63bbe72b1bad9e752",
    "synthetic-graded-100-s1": "1873f291d6e85137d7fb243f734e341e004062cd173801a416dc77f310ec4431",
    "synthetic-graded-100-s2": "9dfada58d8a2b655718b0954552e39479aecfb3fd622b8c3bce270b758fbd314",
}
WEIGHTS_SHA256.update(GRADED_SHA256)
# Only graded models whose weights ship are presets (the family is trained a level at a time).
SYNTHETIC_PRESETS.update({k: v for k, v in GRADED_PRESETS.items() if k in GRADED_SHA256})

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


def _spec(frames: int, size: int, variant: str, description: str, min_frames: int | None) -> InputSpec:
    """The shared shape of every synthetic preset's InputSpec (no resize, the same pixels)."""
    return InputSpec(frames=frames, size=(size, size), resize=None, mean=MEAN, std=STD,
                     scale=1.0 / 255.0, labels=labels(variant), cam_layer="features.conv4",
                     description=description, min_frames=min_frames)


def graded_spec(name: str) -> InputSpec:
    """The InputSpec of a graded-reliance preset: 16 frames of 32x32 (longer clips accepted,
    for context frames), direction labels."""
    if name not in GRADED_PRESETS:
        raise UnknownNameError(f"unknown graded preset {name!r}")
    return _spec(GRADED_FRAMES, GRADED_SIZE, "shortcut", GRADED_PRESETS[name], min_frames=8)


def synthetic_spec(name: str) -> InputSpec:
    """The InputSpec of a synthetic preset: 16 frames of 64x64, no resize, 4 labels."""
    if name in GRADED_PRESETS:
        return graded_spec(name)
    return _spec(FRAMES, SIZE, _variant(name), SYNTHETIC_PRESETS[name], min_frames=None)


def weights_resource(name: str) -> Traversable:
    """Where a preset's weights live inside the installed package."""
    _variant(name)
    folder = resources.files("motion_relevance.models").joinpath("trained")
    if name in GRADED_PRESETS:
        folder = folder.joinpath("graded")
    return folder.joinpath(f"{name}.safetensors")


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
            "with the command in docs/evidence.md"
        )
    data = resource.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = WEIGHTS_SHA256.get(name)
    if expected is None or digest != expected:
        raise WeightsError(
            f"weights of {name} have sha256 {digest[:16]}..., expected "
            f"{(expected or 'none recorded')[:16]}...; reinstall motion-relevance"
        )
    widths = GRADED_WIDTHS if name in GRADED_PRESETS else WIDTHS
    model = SyntheticC3D(num_classes=len(spec.labels or ()), widths=widths)
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
    "GRADED_FRAMES",
    "GRADED_LEVELS",
    "GRADED_PRESETS",
    "GRADED_SEEDS",
    "GRADED_SIZE",
    "GRADED_WIDTHS",
    "SYNTHETIC_PRESETS",
    "WEIGHTS_SHA256",
    "SyntheticC3D",
    "build_synthetic",
    "graded_name",
    "graded_spec",
    "synthetic_spec",
    "synthetic_weights_available",
    "weights_resource",
]
