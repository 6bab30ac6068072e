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
#: Levels chosen from the validation reliance of trial models (seed 0, 400 steps): 20 -> 0.02,
#: 30 -> 0.21, 35 -> 0.27, 40 -> 0.59, 45 -> 0.62, 50 -> 0.73 (seed 1), 100 -> 1.
GRADED_LEVELS: tuple[int, ...] = (0, 30, 40, 50, 100)
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
    "synthetic-graded-000-s0": "d60bb0b4ec37452d841b789b21654101c24a8664e75a7c09e9f835de85114878",
    "synthetic-graded-000-s1": "2635211c7ec143e55b4ca4bd2453e259d18454de4bd042b4281b02e924bc2780",
    "synthetic-graded-000-s2": "cbcd0cbc9f493f6629b584ff63cfe87e9bd94f0282bb3b6226dcaae7f1b8f5d8",
    "synthetic-graded-030-s0": "a8e456b35098dab039734e4846db29831e4a6a84b5096b2701e53bf7354ba8f2",
    "synthetic-graded-030-s1": "43f72fa41e5bafffda2acd98f6edae7852cea9d8e5dac500a071e73f6a9dad94",
    "synthetic-graded-030-s2": "4bf8ca6f84a784516d2efced3c92c52c18b28bed0eaa426149df784534e9728c",
    "synthetic-graded-040-s0": "1187993e2ad26b94701cddadfc1abfd694540cd523921f2cb840d939df48a44f",
    "synthetic-graded-040-s1": "e806b648049f959bb8ede732a699af112184e8600f60d6a31534b1e2fc87b730",
    "synthetic-graded-040-s2": "f19340b3a8aad84f8e71ac494250d846b8900528727a6e5aa7066e0bf4811a83",
    "synthetic-graded-050-s0": "8e578e4b5a31387ae5b589a54db571f83a63abaff738406a65793fe89a859799",
    "synthetic-graded-050-s1": "b5c90b9ff9b8431bbc2962be7ac4979cc27ee53476f3a475e6826de3f327ad4d",
    "synthetic-graded-050-s2": "3bf5056d1caaa117b5d7730c219f8013eb5e7b0aaf192443f37d90b9cbdf211d",
    "synthetic-graded-100-s0": "feefc846491c0160e91f7cb9de30cab5f1a2b4e08a61b503a2374be261b283b1",
    "synthetic-graded-100-s1": "19fb95d0a9fddedd1647c9f6f8564c2a0a712bceef086055a560881349710b64",
    "synthetic-graded-100-s2": "c8de719cc0e9b6e2e623ba2b309a5e1f8a1608c8149405f1a546cd9028859296",
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
