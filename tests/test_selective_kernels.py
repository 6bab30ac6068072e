"""The fused CPU kernels agree with the eager PyTorch selective step, and are used only where valid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numba import njit

import motion_relevance as mr
from motion_relevance import selective_kernels
from motion_relevance.errors import InvalidInputError
from motion_relevance.selective import _split_torch

PROPS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.tuples(
    st.integers(1, 3), st.integers(1, 4), st.integers(1, 7), st.integers(1, 6), st.integers(1, 6)
)
# widths of whole 64-byte vectors (8 float64) take the one-sweep smoothing
vector_shapes = st.tuples(
    st.integers(1, 2), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.sampled_from([8, 16, 24])
)


def _volumes(shape_strategy: st.SearchStrategy) -> st.SearchStrategy:
    return shape_strategy.flatmap(lambda s: arrays(np.float64, s, elements=st.floats(-100, 100, width=64)))


def _both(rel: torch.Tensor, sigma: float, padding: str, derivative: str):
    fused = selective_kernels.split(rel, sigma, padding == "replicate", derivative == "abs")
    eager = _split_torch(rel, sigma, padding, derivative)
    return fused, eager


def _assert_agree(rel: torch.Tensor, sigma: float, padding: str, derivative: str, rtol: float) -> None:
    fused, (motion, mask, d, threshold, kept, total) = _both(rel, sigma, padding, derivative)
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
    _volumes(shapes),
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
        # widths of whole 64-byte vectors take the one-sweep smoothing
        (2, 3, 5, 7, 16), (1, 3, 1, 1, 32), (1, 1, 2, 2, 16), (1, 4, 3, 3, 48), (1, 3, 16, 112, 112),
    ],
)
@pytest.mark.parametrize(("padding", "derivative"), [("replicate", "abs"), ("zeros", "signed"), ("zeros", "abs")])
def test_fused_matches_eager_in_float32(shape: tuple[int, ...], padding: str, derivative: str) -> None:
    rel = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    _assert_agree(rel, 1.0, padding, derivative, rtol=1e-4)


@settings(PROPS)
@given(
    _volumes(vector_shapes),
    st.floats(0, 3),
    st.sampled_from(["replicate", "zeros"]),
    st.sampled_from(["abs", "signed"]),
)
def test_vector_width_rows_match_eager_in_float64(rel: np.ndarray, sigma: float, padding: str, derivative: str) -> None:
    """Widths of whole 64-byte vectors take the one-sweep smoothing; it must agree bit for bit."""
    _assert_agree(torch.from_numpy(rel), sigma, padding, derivative, rtol=1e-9)


@njit
def _one_sweep(r, u, out, before, d, want, replicate, absolute):  # pragma: no cover - compiled
    erow = np.empty(r.shape[3] * r.shape[4], r.dtype)
    nothing = np.zeros(r.shape[3] * r.shape[4], r.dtype)
    return selective_kernels._smooth_rows(r, 0, u, erow, out, before, d, nothing, want, replicate, absolute)


@njit
def _plane_by_plane(r, u, out):  # pragma: no cover - compiled
    p = r.shape[3] * r.shape[4]
    selective_kernels._smooth_frame(r, 0, u, out, np.empty(p, r.dtype), np.empty(p, r.dtype), True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("height", [1, 2, 3, 9])
def test_one_sweep_equals_the_plane_by_plane_smoothing(dtype: type, height: int) -> None:
    """The vector kernel itself (it runs only for widths of whole vectors): S, D and its moments."""
    width = 2 * 64 // np.dtype(dtype).itemsize
    rng = np.random.default_rng(height)
    r = rng.normal(5, 2, (1, 3, 2, height, width)).astype(dtype)
    before = rng.normal(0, 50, height * width).astype(dtype)
    expected = np.empty(height * width, dtype)
    _plane_by_plane(r, 1, expected)
    out, d = np.empty_like(expected), np.empty_like(expected)
    s, q, shift = _one_sweep(r, 1, out, before, d, True, True, True)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(d, np.abs(before - expected))
    assert shift == d[0]
    np.testing.assert_allclose(s + shift * d.size, d.astype(np.float64).sum(), rtol=1e-5)
    np.testing.assert_allclose(q - s * s / d.size, ((d - d.astype(np.float64).mean()) ** 2).sum(), rtol=1e-4)
    untouched = np.full_like(d, 7)
    assert _one_sweep(r, 1, out, before, untouched, False, True, True) == (0.0, 0.0, 0.0)
    assert (untouched == 7).all()


@pytest.mark.parametrize("offset", [0, 1, 5, 15])
def test_motion_part_at_any_alignment(offset: int) -> None:
    """The non-temporal stores cover whole cache lines; the elements before and after them the
    ordinary loop. A motion array starting anywhere in a line gives the same result."""
    rng = np.random.default_rng(offset)
    r = rng.normal(size=(2, 3, 4, 5, 16)).astype(np.float32)
    d = np.abs(rng.normal(size=(2, 1, 4, 5, 16))).astype(np.float32)
    threshold = np.array([0.5, 1.0], np.float32)
    results = []
    for start in (0, offset):
        raw = selective_kernels._aligned_empty((r.size + 16,), np.float32)
        motion = raw[start : start + r.size].reshape(r.shape)
        mask = np.empty(d.shape, np.bool_)
        kept, total = np.empty(8), np.empty(8)
        selective_kernels._apply_mask(r, d, threshold, mask, motion, kept, total, np.float32(0))
        results.append((motion.copy(), mask, kept, total))
    (m0, k0, kept0, total0), (m1, k1, kept1, total1) = results
    np.testing.assert_array_equal(m0, m1)
    np.testing.assert_array_equal(k0, k1)
    np.testing.assert_array_equal(m0, np.where(k0, r, 0))
    np.testing.assert_allclose(kept0, kept1, rtol=1e-6)
    np.testing.assert_allclose(total0, np.abs(r).sum(axis=(1, 3, 4)).reshape(-1), rtol=1e-5)
    np.testing.assert_allclose(total1, total0, rtol=1e-6)


@pytest.mark.parametrize("width", [7, 16])
@pytest.mark.parametrize("frames", [1, 2, 3, 5, 9])
def test_every_split_of_the_work_gives_the_same_result(frames: int, width: int) -> None:
    """Chunks of frames recompute their neighbours' smoothing, blocks of clips run one after the
    other; neither may change the result."""
    rel = torch.randn(3, 3, frames, 6, width, generator=torch.Generator().manual_seed(frames)).numpy()
    results = []
    for threads in range(1, frames + 2):
        for block in (1, 2, 3):
            d = np.empty((3, 1, frames, 6, width), np.float32)
            mask = np.empty(d.shape, np.bool_)
            motion = np.empty_like(rel)
            work = np.empty((threads + block, 5, 6 * width), np.float32)
            out = selective_kernels._selective(
                rel, d, mask, motion, 1.0, True, True, threads, block, work, np.float32(0), 1e-16
            )
            results.append((d, mask, motion, out))
    for d, mask, motion, out in results[1:]:
        assert np.array_equal(d, results[0][0]) and np.array_equal(mask, results[0][1])
        assert np.array_equal(motion, results[0][2])
        for a, b in zip(out, results[0][3], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_public_function_uses_the_kernels_for_float_cpu_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = selective_kernels.split
    monkeypatch.setattr(selective_kernels, "split", lambda *a: calls.append(a) or real(*a))
    mr.selective_relevance(torch.randn(1, 3, 4, 5, 5))
    mr.selective_relevance(torch.randn(1, 3, 4, 5, 5, dtype=torch.float64))
    assert len(calls) == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(1, 3, 4, 5, 5, requires_grad=True),
        lambda: torch.randn(1, 3, 4, 5, 5).half(),
        lambda: torch.randn(1, 3, 4, 5, 5).bfloat16(),
    ],
    ids=["requires-grad", "float16", "bfloat16"],
)
def test_eager_path_for_autograd_and_half_precision(make) -> None:
    rel = make()
    assert not selective_kernels.usable(rel)
    sel = mr.selective_relevance(rel)
    assert sel.motion.dtype == rel.dtype
    if rel.requires_grad:  # the eager path keeps the graph
        sel.motion.sum().backward()
        assert rel.grad is not None


def test_environment_variable_forces_the_eager_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rel = torch.randn(1, 3, 4, 5, 5)
    assert selective_kernels.usable(rel)
    monkeypatch.setenv(selective_kernels.ENV_VAR, "torch")
    assert not selective_kernels.usable(rel)


def test_a_forked_child_does_not_enter_the_parents_thread_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    mr.selective_relevance(torch.randn(1, 3, 4, 5, 5))  # the pool now belongs to this process
    monkeypatch.setattr(selective_kernels, "_launched_in", -1)  # as seen from a forked child
    rel = torch.randn(1, 3, 4, 5, 5)
    assert not selective_kernels.usable(rel)
    assert mr.selective_relevance(rel).mask.shape == (1, 1, 4, 5, 5)


def test_non_contiguous_input(monkeypatch: pytest.MonkeyPatch) -> None:
    rel = torch.randn(1, 5, 4, 6, 3).permute(0, 4, 2, 3, 1)  # (1, 3, 4, 6, 5), not contiguous
    fused = mr.selective_relevance(rel)
    monkeypatch.setenv(selective_kernels.ENV_VAR, "torch")
    eager = mr.selective_relevance(rel)
    assert torch.equal(fused.temporal_gradient, eager.temporal_gradient)
    assert torch.equal(fused.motion + fused.static, rel)


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_overflowing_derivative_is_refused(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(selective_kernels.ENV_VAR, kernel)
    rel = torch.zeros(1, 1, 4, 3, 3)
    rel[0, 0, ::2] = 3e37  # finite, but 16 times that (the smoothing) is not
    with pytest.raises(InvalidInputError, match="too large"):
        mr.selective_relevance(rel)


@pytest.mark.parametrize("offset", [1, 3])
def test_relevance_starting_inside_a_cache_line(offset: int) -> None:
    """The vector kernels load the relevance wherever it starts (a view into a larger tensor)."""
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
    kernel: str, dtype: torch.dtype, scale: float, rtol: float, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relevance so small that the squares of its derivative underflow (about 1e-164 in float64,
    1e-23 in float32) still gets the threshold of the same relevance at ordinary size, scaled."""
    monkeypatch.setenv(selective_kernels.ENV_VAR, kernel)
    rel = torch.randn(2, 3, 5, 6, width, generator=torch.Generator().manual_seed(width), dtype=dtype)
    ordinary = mr.selective_relevance(rel)
    tiny = mr.selective_relevance(rel * scale)
    assert torch.equal(tiny.temporal_gradient, ordinary.temporal_gradient * scale)
    torch.testing.assert_close(tiny.threshold, ordinary.threshold * scale, rtol=rtol, atol=0)
    assert (ordinary.threshold > 0).all()
