"""The fused CPU kernels agree with the eager PyTorch selective step, and are used only where valid."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import motion_relevance as mr
from motion_relevance import selective, selective_kernels
from motion_relevance.errors import InvalidInputError
from motion_relevance.selective import ENV_VAR, _split_torch

PROPS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.tuples(
    st.integers(1, 3), st.integers(1, 4), st.integers(1, 7), st.integers(1, 6), st.integers(1, 6)
)


@pytest.fixture
def fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Records every call of the fused kernels made through ``selective_relevance``."""
    calls: list[tuple] = []
    real = selective_kernels.split
    monkeypatch.setattr(selective_kernels, "split", lambda *a: calls.append(a) or real(*a))
    return calls


def _assert_agree(rel: torch.Tensor, sigma: float, padding: str, derivative: str, rtol: float) -> None:
    fused = selective_kernels.split(rel, sigma, padding == "replicate", derivative == "abs")
    motion, mask, d, threshold, kept, total = _split_torch(rel, sigma, padding, derivative)
    # the filters add in the same order: the derivative is bit-identical
    assert torch.equal(fused.temporal_gradient, d)
    assert torch.allclose(fused.threshold, threshold, rtol=rtol, atol=1e-30)
    near = (d - threshold.view(-1, 1, 1, 1, 1)).abs() <= 4 * rtol * threshold.abs().view(-1, 1, 1, 1, 1)
    assert not ((fused.mask != mask) & ~near).any()
    same = (fused.mask == mask).expand_as(rel)
    assert torch.equal(fused.motion[same], motion[same])
    assert fused.finite
    assert torch.allclose(fused.total, total.double(), rtol=rtol, atol=0)
    share = torch.where(total > 0, kept / torch.where(total > 0, total, 1.0), 0.0)
    assert fused.motion_share.dtype == rel.dtype
    assert torch.allclose(fused.motion_share, share, rtol=rtol, atol=1e-6)


@settings(PROPS)
@given(
    shapes.flatmap(lambda s: arrays(np.float64, s, elements=st.floats(-100, 100, width=64))),
    st.floats(0, 3),
    st.sampled_from(["replicate", "zeros"]),
    st.sampled_from(["abs", "signed"]),
)
def test_fused_matches_eager_in_float64(rel: np.ndarray, sigma: float, padding: str, derivative: str) -> None:
    _assert_agree(torch.from_numpy(rel), sigma, padding, derivative, rtol=1e-9)


@pytest.mark.parametrize(
    "shape",
    [
        (8, 3, 16, 28, 28), (1, 3, 32, 30, 20), (2, 1, 5, 1, 9), (3, 4, 2, 7, 1), (1, 3, 1, 5, 5),
        (2, 3, 5, 7, 16), (1, 3, 1, 1, 32), (1, 1, 2, 2, 16), (1, 4, 3, 3, 48), (1, 3, 16, 112, 112),
    ],
)
@pytest.mark.parametrize(("padding", "derivative"), [("replicate", "abs"), ("zeros", "signed"), ("zeros", "abs")])
def test_fused_matches_eager_in_float32(shape: tuple[int, ...], padding: str, derivative: str) -> None:
    rel = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    _assert_agree(rel, 1.0, padding, derivative, rtol=1e-4)


@pytest.mark.parametrize("width", [7, 16])
@pytest.mark.parametrize("frames", [1, 2, 3, 5, 9])
def test_every_split_of_the_work_gives_the_same_result(frames: int, width: int) -> None:
    """Three clips: one, three or six threads take whole clips each; two, four or five share
    out the frames (chunks recompute their neighbours' smoothing). Neither may change the result."""
    rel = torch.randn(3, 3, frames, 6, width, generator=torch.Generator().manual_seed(frames)).numpy()
    results = [
        selective_kernels._selective(rel, 1.0, True, True, threads, np.float32(0), 1e-16)
        for threads in range(1, max(frames, 6) + 2)
    ]
    for out in results[1:]:
        for a, b in zip(out[:3], results[0][:3], strict=True):  # motion, mask, D
            assert np.array_equal(a, b)
        for a, b in zip(out[3:6], results[0][3:6], strict=True):  # threshold, share, total
            np.testing.assert_allclose(a, b, rtol=1e-6)
        assert out[6] and results[0][6]


def test_kernels_refuse_arrays_of_the_wrong_shape() -> None:
    """The loops index the outputs by the relevance's shape; mismatched arrays are an error, not a
    write past their end."""
    r = np.zeros((2, 3, 4, 5, 6), np.float32)
    d = np.zeros((2, 1, 4, 5, 6), np.float32)
    mask = np.zeros(d.shape, np.bool_)
    per_clip = np.ones(2, np.float32), np.zeros(2), np.zeros(2)
    per_frame = np.zeros(8)
    zero = np.float32(0)
    with pytest.raises(ValueError, match="must be"):
        selective_kernels._by_clip(r, d[:1], mask, r.copy(), *per_clip, 1.0, True, True, zero, 1e-16)
    with pytest.raises(ValueError, match="one threshold and one sum per clip"):
        selective_kernels._by_clip(r, d, mask, r.copy(), *per_clip[:2], per_frame, 1.0, True, True, zero, 1e-16)
    with pytest.raises(ValueError, match="must be"):
        selective_kernels._derivative_by_chunk(r, d[:, :, :3].copy(), 1, True, True, per_frame, per_frame, zero)
    with pytest.raises(ValueError, match="one moment per frame"):
        selective_kernels._derivative_by_chunk(r, d, 1, True, True, per_frame[:7], per_frame, zero)
    with pytest.raises(ValueError, match="motion like R"):
        selective_kernels._mask_by_frame(r, d, per_clip[0], mask, np.zeros((2, 2, 4, 5, 6), np.float32), per_frame, per_frame, zero)
    with pytest.raises(ValueError, match="one sum per frame"):
        selective_kernels._mask_by_frame(r, d, per_clip[0], mask, r.copy(), per_frame[:4], per_frame, zero)
    with pytest.raises(ValueError, match="5-D float CPU tensor"):
        selective_kernels.split(torch.zeros(2, 3, 4, 5, 6, dtype=torch.float16), 1.0, True, True)
    with pytest.raises(ValueError, match="non-empty"):
        selective_kernels.split(torch.zeros(2, 3, 0, 5, 6), 1.0, True, True)


def test_public_function_uses_the_kernels_for_float_cpu_tensors(fused_calls: list) -> None:
    mr.selective_relevance(torch.randn(1, 3, 4, 5, 5))
    mr.selective_relevance(torch.randn(1, 3, 4, 5, 5, dtype=torch.float64))
    assert len(fused_calls) == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(1, 3, 4, 5, 5, requires_grad=True),
        lambda: torch.randn(1, 3, 4, 5, 5).half(),
        lambda: torch.randn(1, 3, 4, 5, 5).bfloat16(),
    ],
    ids=["requires-grad", "float16", "bfloat16"],
)
def test_eager_path_for_autograd_and_half_precision(make, fused_calls: list) -> None:
    rel = make()
    assert selective._fused_kernels(rel) is None
    sel = mr.selective_relevance(rel)
    assert fused_calls == []
    assert sel.motion.dtype == rel.dtype
    if rel.requires_grad:  # the eager path keeps the graph
        sel.motion.sum().backward()
        assert rel.grad is not None


def test_environment_variable_forces_the_eager_path(monkeypatch: pytest.MonkeyPatch, fused_calls: list) -> None:
    rel = torch.randn(1, 3, 4, 5, 5)
    assert selective._fused_kernels(rel) is selective_kernels
    monkeypatch.setenv(ENV_VAR, "torch")
    assert selective._fused_kernels(rel) is None
    mr.selective_relevance(rel)
    assert fused_calls == []


def test_a_forked_child_does_not_enter_the_parents_thread_pool(
    monkeypatch: pytest.MonkeyPatch, fused_calls: list
) -> None:
    mr.selective_relevance(torch.randn(1, 3, 4, 5, 5))  # the pool now belongs to this process
    assert len(fused_calls) == 1
    monkeypatch.setattr(selective_kernels, "_launched_in", -1)  # as seen from a forked child
    rel = torch.randn(1, 3, 4, 5, 5)
    assert selective._fused_kernels(rel) is None
    assert mr.selective_relevance(rel).mask.shape == (1, 1, 4, 5, 5)
    assert len(fused_calls) == 1


def _python(code: str, **env: str) -> None:
    """Run ``code`` in a fresh interpreter (a clean ``sys.modules``); fail on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr


def test_import_does_not_load_numba() -> None:
    _python("import motion_relevance, sys; assert 'numba' not in sys.modules")


def test_numba_is_loaded_by_the_first_fused_step_only() -> None:
    _python(
        "import sys, torch, motion_relevance as mr\n"
        "mr.selective_relevance(torch.randn(1, 3, 4, 5, 5, dtype=torch.float16))\n"
        "mr.selective_relevance(torch.randn(1, 3, 4, 5, 5, requires_grad=True))\n"
        "assert 'numba' not in sys.modules, 'loaded for the eager path'\n"
        "mr.selective_relevance(torch.randn(1, 3, 4, 5, 5))\n"
        "assert 'numba' in sys.modules\n"
    )
    _python(
        "import sys, torch, motion_relevance as mr\n"
        "mr.selective_relevance(torch.randn(1, 3, 4, 5, 5))\n"
        "assert 'numba' not in sys.modules\n",
        **{ENV_VAR: "torch"},
    )


def test_starting_numba_keeps_torchs_thread_count() -> None:
    """Numba's OpenMP pool resets the process-wide thread count when it starts; a process limited
    to one torch thread (``batch --threads 1`` beside decode workers) must stay limited."""
    _python(
        "import sys, torch, motion_relevance as mr\n"
        "torch.set_num_threads(1)\n"
        "mr.selective_relevance(torch.randn(2, 3, 4, 5, 5))\n"
        "assert 'numba' in sys.modules\n"
        "assert torch.get_num_threads() == 1, torch.get_num_threads()\n",
        NUMBA_NUM_THREADS="2",
    )


def test_without_numba_the_eager_path_runs() -> None:
    """A Python where Numba cannot be imported still gets the selective step, from PyTorch."""
    _python(
        "import sys, torch\n"
        "sys.modules['numba'] = None  # makes `import numba` raise ImportError\n"
        "import motion_relevance as mr\n"
        "from motion_relevance import selective\n"
        "rel = torch.randn(2, 3, 4, 5, 5)\n"
        "sel = mr.selective_relevance(rel)\n"
        "assert selective._kernels_missing and selective._fused_kernels(rel) is None\n"
        "assert torch.equal(sel.temporal_gradient, mr.temporal_gradient(rel))\n"
    )


def test_non_contiguous_input(monkeypatch: pytest.MonkeyPatch, fused_calls: list) -> None:
    rel = torch.randn(1, 5, 4, 6, 3).permute(0, 4, 2, 3, 1)  # (1, 3, 4, 6, 5), not contiguous
    fused = mr.selective_relevance(rel)
    assert len(fused_calls) == 1
    monkeypatch.setenv(ENV_VAR, "torch")
    eager = mr.selective_relevance(rel)
    assert len(fused_calls) == 1
    assert torch.equal(fused.temporal_gradient, eager.temporal_gradient)
    assert torch.equal(fused.motion + fused.static, rel)


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_overflowing_derivative_is_refused(kernel: str, monkeypatch: pytest.MonkeyPatch, fused_calls: list) -> None:
    monkeypatch.setenv(ENV_VAR, kernel)
    rel = torch.zeros(1, 1, 4, 3, 3)
    rel[0, 0, ::2] = 3e37  # finite, but 16 times that (the smoothing) is not
    with pytest.raises(InvalidInputError, match="too large"):
        mr.selective_relevance(rel)
    assert len(fused_calls) == (kernel == "numba")


@pytest.mark.parametrize("offset", [1, 3])
def test_relevance_starting_inside_a_cache_line(offset: int) -> None:
    """A view into a larger tensor, starting anywhere."""
    shape = (2, 3, 4, 5, 32)
    count = 2 * 3 * 4 * 5 * 32
    base = torch.randn(count + 16, generator=torch.Generator().manual_seed(offset))
    rel = base[offset : offset + count].view(shape)
    assert rel.data_ptr() % 64 != 0
    _assert_agree(rel, 1.0, "replicate", "abs", rtol=1e-4)


@pytest.mark.parametrize("kernel", ["numba", "torch"])
@pytest.mark.parametrize(("dtype", "scale", "rtol"), [(torch.float64, 2.0**-545, 1e-9), (torch.float32, 2.0**-75, 1e-5)])
@pytest.mark.parametrize("width", [7, 16])
def test_tiny_relevance_keeps_its_threshold(
    kernel: str,
    dtype: torch.dtype,
    scale: float,
    rtol: float,
    width: int,
    monkeypatch: pytest.MonkeyPatch,
    fused_calls: list,
) -> None:
    """Relevance so small that the squares of its derivative underflow (about 1e-164 in float64,
    1e-23 in float32) still gets the threshold of the same relevance at ordinary size, scaled."""
    monkeypatch.setenv(ENV_VAR, kernel)
    rel = torch.randn(2, 3, 5, 6, width, generator=torch.Generator().manual_seed(width), dtype=dtype)
    ordinary = mr.selective_relevance(rel)
    tiny = mr.selective_relevance(rel * scale)
    assert len(fused_calls) == (2 if kernel == "numba" else 0)
    assert torch.equal(tiny.temporal_gradient, ordinary.temporal_gradient * scale)
    torch.testing.assert_close(tiny.threshold, ordinary.threshold * scale, rtol=rtol, atol=0)
    assert (ordinary.threshold > 0).all()
