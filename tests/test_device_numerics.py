"""The same maps on every device: TF32 off while explaining, SmoothGrad noise from a CPU
generator, bfloat16 as an option, and input checks with one host synchronisation."""

from __future__ import annotations

import collections

import pytest
import torch
from captum.attr import Saliency
from torch import nn
from torch.overrides import TorchFunctionMode

from motion_relevance.attribution import explain
from motion_relevance.attribution import gradient as gradient_module
from motion_relevance.errors import InvalidInputError
from tiny_models import build_tiny

GRADIENT_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop",
                    "deconvolution")  # fmt: skip
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _clips(n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 4, 16, 16, generator=g)


def _rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# -- TF32 -----------------------------------------------------------------------------------------


class _Recorder(nn.Module):
    """Wraps a model and records the float32 precision settings its forward runs under."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen: list[tuple[str, str]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision))
        return self.model(x)


def test_tf32_is_off_while_explaining_and_restored_after() -> None:
    model, spec = build_tiny()
    wrapped = _Recorder(model)
    before = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    explain(wrapped, _clips(), "saliency", spec=spec)
    assert wrapped.seen and all(s == ("ieee", "ieee") for s in wrapped.seen)
    assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == before
    wrapped.seen.clear()
    explain(wrapped, _clips(), "saliency", spec=spec, tf32=True)  # the global settings, untouched
    assert wrapped.seen and all(s == before for s in wrapped.seen)


def test_tf32_settings_are_restored_when_a_method_fails() -> None:
    model, spec = build_tiny()
    before = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    with pytest.raises(InvalidInputError):
        explain(model, _clips(), "saliency", spec=spec, target=99)
    assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == before


# -- SmoothGrad noise ---------------------------------------------------------------------------


def test_smoothgrad_noise_is_drawn_on_the_cpu_whatever_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The noise is drawn from a CPU generator and only then moved: for the same seed it is the
    same tensor whether it is bound for the CPU or for another device ("meta" stands in here)."""
    drawn: list[torch.Tensor] = []
    original = gradient_module.host_noise

    def spy(generator: torch.Generator, shape: tuple[int, ...], stdev: float, in_time: str = "independent") -> torch.Tensor:
        assert generator.device.type == "cpu"
        noise = original(generator, shape, stdev, in_time)
        assert noise.device.type == "cpu"
        drawn.append(noise)
        return noise

    monkeypatch.setattr(gradient_module, "host_noise", spy)
    saliency = Saliency(nn.Identity())
    tunnel_cpu = gradient_module._HostNoiseTunnel(saliency, torch.Generator().manual_seed(7))
    tunnel_other = gradient_module._HostNoiseTunnel(saliency, torch.Generator().manual_seed(7))
    x = torch.zeros(1, 3, 4, 8, 8)
    on_cpu = tunnel_cpu._add_noise_to_input(x, 0.5, 3)
    on_meta = tunnel_other._add_noise_to_input(x.to("meta"), 0.5, 3)
    assert on_meta.device.type == "meta" and on_meta.shape == on_cpu.shape == (3, 3, 4, 8, 8)
    assert drawn[0].equal(drawn[1])
    assert on_cpu.equal(drawn[0])  # the input was zero: what was added is exactly the drawn noise
    expected = torch.randn((3, 3, 4, 8, 8), generator=torch.Generator().manual_seed(7)) * 0.5
    assert drawn[0].equal(expected)  # independent restatement: N(0, 1) from the seeded CPU generator


def test_smoothgrad_depends_on_the_seed_only() -> None:
    model, spec = build_tiny()
    x = _clips(1)
    a = explain(model, x, "smoothgrad", spec=spec, seed=3, samples=4).relevance
    c = explain(model, x, "smoothgrad", spec=spec, seed=4, samples=4).relevance
    torch.manual_seed(0)  # the global generator plays no part
    d = explain(model, x, "smoothgrad", spec=spec, seed=3, samples=4).relevance
    assert a.equal(d)
    assert _rel_l2(a, c) > 0.01


# -- bfloat16 -----------------------------------------------------------------------------------


def test_bf16_runs_the_model_in_bfloat16_and_returns_float32() -> None:
    model, spec = build_tiny()
    inner: list[torch.dtype] = []
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv3d))
    handle = conv.register_forward_hook(lambda _m, _i, out: inner.append(out.dtype))
    x = _clips()
    ref = explain(model, x, "saliency", spec=spec)
    assert set(inner) == {torch.float32}
    inner.clear()
    low = explain(model, x, "saliency", spec=spec, precision="bf16")
    handle.remove()
    assert set(inner) == {torch.bfloat16}
    assert low.relevance.dtype == torch.float32 and low.logits.dtype == torch.float32
    assert low.options["precision"] == "bfloat16" and "precision" not in ref.options
    # close to float32 but not equal: bfloat16 keeps 8 bits of mantissa
    assert 0 < _rel_l2(low.relevance, ref.relevance) < 0.2


@pytest.mark.parametrize("bad", ["fp16", "half", 16, None])
def test_bad_precision_is_a_one_line_error(bad: object) -> None:
    model, spec = build_tiny()
    with pytest.raises(InvalidInputError, match="precision"):
        explain(model, _clips(), "saliency", spec=spec, precision=bad)  # type: ignore[arg-type]


def test_tf32_must_be_a_bool() -> None:
    model, spec = build_tiny()
    with pytest.raises(InvalidInputError, match="tf32"):
        explain(model, _clips(), "saliency", spec=spec, tf32="yes")  # type: ignore[arg-type]


# -- host synchronisations ----------------------------------------------------------------------

#: Tensor methods that read a value back to the host (a device synchronisation on a GPU).
_READBACKS = {torch.Tensor.item, torch.Tensor.__bool__, torch.Tensor.tolist, torch.Tensor.__float__,
              torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.numpy, torch.Tensor.cpu}  # fmt: skip


class _CountReadbacks(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in _READBACKS:
            self.calls[func.__name__] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad",
                                    "occlusion", "gradcam", "guided_backprop"])  # fmt: skip
@pytest.mark.parametrize("target", [None, 2])
def test_explain_reads_back_to_the_host_once(method: str, target: int | None) -> None:
    """A proxy on the CPU for the GPU's host synchronisations: every read-back of a tensor value
    in the forward passes and the checks is counted (one: the finiteness check of the clips)."""
    model, spec = build_tiny()
    options = {"occlusion": {"window": (2, 8, 8)}, "integrated_gradients": {"n_steps": 4},
               "smoothgrad": {"samples": 3}}.get(method, {})  # fmt: skip
    counter = _CountReadbacks()
    with counter:
        explain(model, _clips(3), method, spec=spec, target=target, batch_size=2, **options)
    assert sum(counter.calls.values()) == 1, dict(counter.calls)


def test_the_one_check_still_refuses_bad_clips_and_context() -> None:
    model, spec = build_tiny()
    x = _clips()
    x[1, 0, 0, 0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="clips contain NaN"):
        explain(model, x, "saliency", spec=spec)


# -- on a GPU -----------------------------------------------------------------------------------


@CUDA
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_cpu_and_cuda_maps_agree(method: str) -> None:
    model, spec = build_tiny()
    x = _clips(2)
    cpu = explain(model, x, method, spec=spec, seed=5).relevance
    gpu = explain(model.to("cuda"), x.to("cuda"), method, spec=spec, seed=5).relevance.cpu()
    model.to("cpu")
    assert _rel_l2(gpu, cpu) <= 1e-3


@CUDA
def test_explain_synchronises_at_most_once_on_cuda() -> None:
    import warnings

    model, spec = build_tiny()
    model = model.to("cuda")
    x = _clips(4).to("cuda")
    explain(model, x, "saliency", spec=spec)  # warm-up
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            explain(model, x, "saliency", spec=spec)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert len(syncs) <= 1, [str(w.message) for w in syncs]
