"""The model registry: a preset name gives a module in eval mode and the InputSpec to feed it.

Presets are declared next to their architectures (``i3d.PRESETS``, ``c3d.PRESETS``,
``torchvision_presets.PRESETS``; the synthetic benchmark's are adapted below) and collected
here, in the order ``list_models`` shows them. ``load_model`` treats every preset alike:
``weights="random"`` builds the architecture untrained, ``None`` loads the preset's own
``Weights`` (fetched into the cache, or shipped in the package; a one-line error says how to get
them otherwise), and a path loads a user's checkpoint strictly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from torch import nn

from motion_relevance.checks import optional_positive_int
from motion_relevance.errors import InvalidInputError, UnknownNameError, WeightsError
from motion_relevance.models import c3d, i3d, torchvision_presets
from motion_relevance.models import synthetic_presets as syn
from motion_relevance.models import weights as wts
from motion_relevance.models.preset import Preset, Weights, package_labels
from motion_relevance.models.spec import InputSpec

log = logging.getLogger(__name__)

WeightsArg = str | Path | None


@dataclass(frozen=True)
class ModelInfo:
    """What ``list_models`` tells about one preset."""

    name: str
    description: str
    spec: InputSpec
    weights_available: bool
    """True when the preset's pretrained weights can be loaded here without further steps."""
    weights_hint: str = ""
    """How to get the weights when they are not available."""

    def summary(self) -> str:
        """One line for ``motion-relevance models``: name, input, classes, weights, description."""
        s = self.spec
        frames = "" if s.min_frames is None else f" (T>={s.min_frames})"
        if s.resize is None:
            prep = "resize"
        elif isinstance(s.resize, int):
            prep = f"short side {s.resize}, centre crop"
        else:
            prep = f"resize {s.resize[0]}x{s.resize[1]}, centre crop"
        lo, hi = s.value_range
        classes = f"{s.num_classes} classes" if s.num_classes is not None else "unlabelled"
        weights = "available" if self.weights_available else f"missing, {self.weights_hint}"
        return (
            f"{self.name:21s} {s.frames}x{s.size[0]}x{s.size[1]}{frames}, {prep}, values "
            f"[{lo:.4g}, {hi:.4g}], {classes}, CAM {s.cam_layer}; weights {weights} | "
            f"{self.description}"
        )


def _synthetic_presets() -> tuple[Preset, ...]:
    """The synthetic benchmark's presets (weights shipped in the package, sha256-verified)."""
    presets = []
    for name, description in syn.SYNTHETIC_PRESETS.items():
        spec = syn.synthetic_spec(name)
        widths = syn.GRADED_WIDTHS if name in syn.GRADED_PRESETS else syn.WIDTHS
        weights = Weights(
            spec=replace(spec, labels=None),
            num_classes=len(spec.labels or ()),
            labels=spec.labels,
            licence="Apache-2.0 (trained by this project)",
            source="package",
            location=str(syn.weights_resource(name)),
            sha256=syn.WEIGHTS_SHA256.get(name),
            hint="they ship with the package: reinstall motion-relevance",
        )
        presets.append(
            Preset(
                name,
                description,
                partial(syn.SyntheticC3D, widths=widths),
                weights,
                head="fc.weight",
                pretrained=partial(lambda n: syn.build_synthetic(n)[0].state_dict(), name),
                available=partial(syn.synthetic_weights_available, name),
            )
        )
    return tuple(presets)


#: Every preset, in listing order.
PRESETS: dict[str, Preset] = {
    p.name: p for p in (*i3d.PRESETS, *c3d.PRESETS, *torchvision_presets.PRESETS, *_synthetic_presets())
}
#: The weights ``motion-relevance weights fetch`` can obtain.
wts.FETCHABLE.update({i3d.FETCH.name: i3d.FETCH})


def preset_names() -> list[str]:
    """Names of every registered preset, in listing order."""
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name lists the known ones."""
    if not isinstance(name, str) or name not in PRESETS:
        raise UnknownNameError(f"unknown model {name!r}; known models: {', '.join(PRESETS)}")
    return PRESETS[name]


def fetchable(name: str) -> str:
    """``name`` when its pretrained weights can be fetched into the cache (``weights fetch``);
    otherwise a one-line error says what to do instead."""
    if name in wts.FETCHABLE:
        return name
    if name in PRESETS:
        raise WeightsError(
            f"{name} has no weights to fetch; pass a checkpoint file with --weights PATH "
            f"(weights=PATH), or 'random' for an untrained model"
        )
    raise UnknownNameError(
        f"unknown model {name!r}; weights can be fetched for: {', '.join(sorted(wts.FETCHABLE))}"
    )


def _available(preset: Preset) -> bool:
    source = preset.weights.source
    if source == "cache":
        return wts.is_cached(preset.name)
    if source == "package":
        return preset.available is None or bool(preset.available())
    return False


def _hint(preset: Preset) -> str:
    if preset.weights.source == "user":
        return f"weights=PATH ({preset.weights.hint})"
    return preset.weights.hint


def list_models() -> list[ModelInfo]:
    """Every preset with its InputSpec and whether its weights can be loaded here."""
    return [
        ModelInfo(p.name, p.description, p.weights.input_spec(), _available(p), _hint(p))
        for p in PRESETS.values()
    ]


def _pretrained(preset: Preset) -> dict:
    """The preset's own weights, verified."""
    w = preset.weights
    if w.source == "cache":
        return wts.load_cached(preset.name)
    if w.source == "package" and preset.pretrained is not None:
        return preset.pretrained()
    raise WeightsError(
        f"{preset.name} has no bundled weights and motion_relevance never downloads them: {w.hint}, "
        "and pass it with weights=PATH (CLI: --weights PATH), or weights='random' for an untrained model"
    )


def _classes_in(state: dict, preset: Preset, source: str) -> int:
    if preset.head not in state:
        raise WeightsError(f"weights in {source} do not fit {preset.name}: key {preset.head!r} is missing")
    return int(state[preset.head].shape[0])


def load_model(
    name: str, *, weights: str | Path | None = None, num_classes: int | None = None
) -> tuple[nn.Module, InputSpec]:
    """A preset's module (eval mode, ``module.input_spec`` set) and its InputSpec.

    ``weights``: None for the preset's own pretrained weights (offline; an error says how to get
    them), a checkpoint path (``.safetensors`` or a torch state dict; strict), or ``"random"``
    for an untrained model. ``num_classes`` sizes the classifier (default: the preset's or the
    checkpoint's); with the preset's own weights it puts a fresh classifier on the pretrained
    body where the preset allows it (I3D). Label names come with the spec only when the
    classifier has the classes they name.
    """
    preset = get_preset(name)
    num_classes = optional_positive_int("num_classes", num_classes)
    if weights is not None and not isinstance(weights, str | Path):
        raise InvalidInputError(f"weights must be None, 'random' or a file path, got {type(weights).__name__}")
    trained = preset.weights.num_classes
    if isinstance(weights, str) and weights == wts.RANDOM:
        n = num_classes or trained
        module = preset.architecture(n)
    elif weights is None:
        module = preset.architecture(trained)
        state = _pretrained(preset)
        wts.apply_state_dict(module, state, source=f"{name}'s weights", model_name=name)
        n = num_classes or trained
        if n != trained:
            if preset.new_head is None:
                raise InvalidInputError(f"{name} has {trained} classes; do not set num_classes={n}")
            module = preset.new_head(module, n)
    else:
        path = Path(weights).expanduser()
        state = (preset.read_file or wts.read_checkpoint)(path)
        n = num_classes or _classes_in(state, preset, str(weights))
        module = preset.architecture(n)
        wts.apply_state_dict(module, state, source=str(weights), model_name=name)
    spec = preset.weights.input_spec(n)
    module.eval()
    module.input_spec = spec
    log.info("loaded %s (%s)", name, "random weights" if weights == wts.RANDOM else (weights or "pretrained"))
    return module, spec


__all__ = [
    "PRESETS",
    "ModelInfo",
    "fetchable",
    "get_preset",
    "list_models",
    "load_model",
    "package_labels",
    "preset_names",
]
