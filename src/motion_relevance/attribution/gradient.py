"""Gradient, path and perturbation methods, all computed by Captum on 5-D clips.

Every method explains the target's logit (before softmax). Single-pass methods see each clip
once: the same forward pass gives the logits and the gradient. Multi-pass methods
(integrated gradients, SmoothGrad, occlusion) first take the logits of the unmodified clip
(one forward without gradient) and then run Captum in internal batches of ``batch_size`` passes,
so peak memory does not grow with ``n_steps``, ``samples`` or the number of windows.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Occlusion,
    Saliency,
)

from motion_relevance.attribution.method import (
    Method,
    Option,
    finite_float,
    non_negative_float,
    positive_int,
    triple,
)
from motion_relevance.attribution.run import RELU_HOOK_WARNING, Attribution, Run, leaf
from motion_relevance.checks import one_of
from motion_relevance.errors import InvalidInputError


def _saliency(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
    scorer = run.scorer(select=True)
    grad = Saliency(scorer).attribute(leaf(x), abs=False)
    return scorer.result(grad)


def _input_x_gradient(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
    scorer = run.scorer(select=True)
    return scorer.result(InputXGradient(scorer).attribute(leaf(x)))


def _relu_rule(method: type[GuidedBackprop] | type[Deconvolution], run: Run, x: torch.Tensor) -> Attribution:
    """Captum's ReLU-hook methods, with its hook warning silenced (we restore the model)."""
    scorer = run.scorer(select=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=RELU_HOOK_WARNING)
        relevance = method(scorer).attribute(leaf(x))
    return scorer.result(relevance)


def _guided_backprop(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
    return _relu_rule(GuidedBackprop, run, x)


def _deconvolution(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
    return _relu_rule(Deconvolution, run, x)


def _baseline(value: Any, x: torch.Tensor) -> torch.Tensor:
    """IG baseline for one clip ``x`` (1, C, T, H, W): "zeros", a number or a tensor that
    broadcasts to the clip."""
    if isinstance(value, str):
        if value != "zeros":
            raise InvalidInputError(f"option baseline must be 'zeros', a number or a tensor, got {value!r}")
        return torch.zeros_like(x)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return torch.full_like(x, finite_float("baseline", value))
    if isinstance(value, torch.Tensor):
        b = value.detach().to(device=x.device, dtype=x.dtype)
        try:
            return torch.broadcast_to(b, x.shape).clone()
        except RuntimeError:
            raise InvalidInputError(
                f"option baseline has shape {tuple(value.shape)}, which does not broadcast to a clip "
                f"{tuple(x.shape[1:])}"
            ) from None
    raise InvalidInputError(f"option baseline must be 'zeros', a number or a tensor, got {type(value).__name__}")


def _integrated_gradients(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
    value = opts["baseline"]
    if isinstance(value, torch.Tensor) and value.ndim == 5 and value.shape[0] == run.total > 1:
        value = value[run.index]  # one baseline per clip
    baselines = _baseline(value, x)
    logits, target = run.plain_forward(x)
    relevance = IntegratedGradients(run.scorer(select=False, target=target)).attribute(
        x,
        baselines=baselines,
        n_steps=opts["n_steps"],
        method="gausslegendre",
        internal_batch_size=run.batch_size,
    )
    return Attribution(relevance, logits, target)


#: How SmoothGrad's noise varies over time: drawn for every voxel (Captum's SmoothGrad), or one
#: pattern per noisy copy repeated in every frame (the noise then adds no motion to the clip).
NOISE_IN_TIME: tuple[str, ...] = ("independent", "static")


def host_noise(
    generator: torch.Generator, shape: tuple[int, ...], stdev: float, in_time: str = "independent"
) -> torch.Tensor:
    """Gaussian noise of ``stdev`` drawn on the CPU from ``generator`` (float32), whatever device
    it is used on. ``shape`` is (N, C, T, H, W); ``in_time="static"`` draws (N, C, 1, H, W) and
    repeats it over T."""
    if in_time == "static":
        frame = torch.randn((*shape[:2], 1, *shape[3:]), generator=generator, dtype=torch.float32) * stdev
        return frame.expand(shape)
    return torch.randn(shape, generator=generator, dtype=torch.float32) * stdev


class _HostNoiseTunnel(NoiseTunnel):
    """Captum's SmoothGrad with its noise drawn from a CPU generator and then moved to the
    clip's device, so one seed gives the same noise on every device (Captum draws it on the
    device, whose generators differ)."""

    def __init__(self, attribution_method: Saliency, generator: torch.Generator, in_time: str = "independent") -> None:
        super().__init__(attribution_method)
        self._generator = generator
        self._in_time = in_time

    def _add_noise_to_input(self, input: torch.Tensor, stdev: float, nt_samples_partition: int) -> torch.Tensor:  # type: ignore[override]
        shape = (input.shape[0] * nt_samples_partition, *input.shape[1:])
        noise = host_noise(self._generator, shape, stdev, self._in_time)
        return input.repeat_interleave(nt_samples_partition, dim=0) + noise.to(device=input.device, dtype=input.dtype)


def _smoothgrad(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
    logits, target = run.plain_forward(x)
    if run.spec is not None:
        low, high = run.spec.value_range
        span = high - low
    else:
        span = float(x.max() - x.min())
    stdev = opts["noise"] * span
    generator = torch.Generator(device="cpu").manual_seed(int(run.seed))
    scorer = Saliency(run.scorer(select=False, target=target))
    relevance = _HostNoiseTunnel(scorer, generator, opts["noise_in_time"]).attribute(
        x,
        nt_type="smoothgrad",
        nt_samples=opts["samples"],
        nt_samples_batch_size=run.batch_size,
        stdevs=stdev,
        abs=False,
    )
    return Attribution(relevance, logits, target)


def occlusion_windows(shape: tuple[int, ...], window: tuple[int, int, int], stride: tuple[int, int, int]) -> int:
    """Number of occluded positions Captum evaluates for one clip of ``shape`` (C, T, H, W):
    along each axis the windows start every ``stride`` and the last may reach past the end
    (it is then cut), so an axis of ``n`` gives ``ceil((n - window) / stride) + 1``."""
    count = 1
    for size, w, s in zip(shape[1:], window, stride, strict=True):
        count *= -(-(size - w) // s) + 1
    return count


def _occlusion(run: Run, x: torch.Tensor, opts: dict[str, Any]) -> Attribution:
    c, t, h, w = x.shape[1:]
    window = opts["window"]
    stride = opts["stride"] if opts["stride"] is not None else window
    if any(k > n for k, n in zip(window, (t, h, w), strict=True)):
        raise InvalidInputError(f"occlusion window {window} is larger than the clip (T, H, W) = {(t, h, w)}")
    if any(s > k and k < n for s, k, n in zip(stride, window, (t, h, w), strict=True)):
        raise InvalidInputError(f"occlusion stride {stride} is larger than the window {window}: voxels would be skipped")
    logits, target = run.plain_forward(x)
    relevance = Occlusion(run.scorer(select=False, target=target)).attribute(
        x,
        sliding_window_shapes=(c, *window),
        strides=(c, *stride),
        baselines=opts["fill"],
        perturbations_per_eval=run.batch_size,
    )
    return Attribution(relevance, logits, target)


def _check_baseline(name: str, value: Any) -> Any:
    if isinstance(value, str) and value == "zeros":
        return value
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise InvalidInputError(f"option {name} must be a finite floating-point tensor")
        return value.detach()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return finite_float(name, value)
    raise InvalidInputError(f"option {name} must be 'zeros', a number or a tensor, got {value!r}")


#: The methods of this module, in the order ``list_methods`` shows them.
METHODS: tuple[Method, ...] = (
    Method("saliency", "gradient of the target logit w.r.t. the clip (signed)", _saliency),
    Method("input_x_gradient", "clip times the gradient of the target logit", _input_x_gradient),
    Method(
        "integrated_gradients",
        "gradients integrated on the straight path from a baseline to the clip (Gauss-Legendre)",
        _integrated_gradients,
        (
            Option("n_steps", 32, "integration steps (forward+backward passes per clip)", positive_int),
            Option("baseline", "zeros", "'zeros', a number, or a tensor broadcastable to a clip", _check_baseline),
        ),
        multi_pass=True,
    ),
    Method(
        "smoothgrad",
        "gradient averaged over noisy copies of the clip (SmoothGrad, signed)",
        _smoothgrad,
        (
            Option("samples", 16, "noisy copies per clip", positive_int),
            Option(
                "noise",
                0.15,
                "noise std as a fraction of the input value range (spec.value_range, else the clip's range)",
                non_negative_float,
            ),
            Option(
                "noise_in_time",
                "independent",
                "'independent': noise drawn for every voxel (Captum's SmoothGrad); 'static': one noise "
                "pattern per copy in every frame, so the noise itself adds no motion",
                lambda name, value: one_of(name, value, NOISE_IN_TIME),
            ),
        ),
        multi_pass=True,
    ),
    Method(
        "guided_backprop",
        "gradient with negative gradients stopped at every nn.ReLU (guided backpropagation)",
        _guided_backprop,
    ),
    Method(
        "deconvolution",
        "gradient with ReLUs applied to the backward signal (DeconvNet)",
        _deconvolution,
    ),
    Method(
        "occlusion",
        "drop in the target logit when a 3-D window of the clip is replaced by a fill value",
        _occlusion,
        (
            Option("window", (4, 16, 16), "window (t, h, w) or one int for all three", triple),
            Option("stride", None, "window step (t, h, w) or one int", triple, shown_default="the window"),
            Option("fill", 0.0, "value the occluded voxels take", finite_float),
        ),
        multi_pass=True,
        kind="perturbation",
    ),
)
