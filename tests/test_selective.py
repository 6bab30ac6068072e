"""The selective-relevance core: hand-computed volumes, the authors' algorithm, properties."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import motion_relevance as mr
from motion_relevance.errors import InvalidInputError, MotionRelevanceError
from motion_relevance.selective import ENV_VAR

SOBEL_T0 = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64)


def naive_zero_padded(relevance: np.ndarray) -> np.ndarray:
    """The authors' derivative restated with explicit loops over the 27 taps (zero padding 1)."""
    kernel = np.zeros((3, 3, 3))
    kernel[0], kernel[2] = SOBEL_T0, -SOBEL_T0
    e = relevance.sum(axis=1)  # (N, T, H, W)
    n, t, h, w = e.shape
    padded = np.zeros((n, t + 2, h + 2, w + 2))
    padded[:, 1:-1, 1:-1, 1:-1] = e
    out = np.zeros_like(e, dtype=np.float64)
    for dt in range(3):
        for dh in range(3):
            for dw in range(3):
                out += kernel[dt, dh, dw] * padded[:, dt : dt + t, dh : dh + h, dw : dw + w]
    return out


def naive_selective(relevance: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    d = np.abs(naive_zero_padded(relevance))
    std = d.reshape(d.shape[0], -1).std(axis=1, ddof=1)
    mask = d > sigma * std[:, None, None, None]
    return d, mask


def eager_only(reason: str):
    """Marks a test that cannot reach the fused kernels: the ``numba`` backend skips it, saying why."""

    def mark(test):
        test.eager_only = reason
        return test

    return mark


@pytest.fixture(autouse=True, params=["numba", "torch"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test here runs on both implementations: the fused CPU kernels and eager PyTorch.

    Under ``numba`` the test must reach the fused kernels (a test that cannot is marked
    ``eager_only`` and skipped there); if Numba is unusable the test fails rather than quietly
    checking the eager path twice.
    """
    monkeypatch.setenv(ENV_VAR, request.param)
    if request.param == "torch":
        yield request.param
        return
    reason = getattr(request.function, "eager_only", None)
    if reason is not None:
        pytest.skip(f"eager path only: {reason}")
    from motion_relevance import selective_kernels  # imports Numba: an ImportError fails the test

    calls = []
    real = selective_kernels.split
    monkeypatch.setattr(selective_kernels, "split", lambda *a: calls.append(a) or real(*a))
    yield request.param
    assert calls, "the numba backend never reached the fused kernels"


def gradient(rel: torch.Tensor, **options: str) -> torch.Tensor:
    """``D`` as ``selective_relevance`` gives it (the fused kernels under the ``numba`` backend),
    checked against ``temporal_gradient`` (always eager)."""
    d = mr.selective_relevance(rel, **options).temporal_gradient
    assert torch.equal(d, mr.temporal_gradient(rel, **options))
    return d


# ------------------------------------------------------------------------------------------------
# hand-computed tiny volumes
# ------------------------------------------------------------------------------------------------


def test_static_map_gives_empty_mask_under_replicate_and_edges_under_zeros() -> None:
    frame = torch.rand(3, 1, 5, 6)
    rel = frame.expand(3, 6, 5, 6).contiguous()  # same map in all 6 frames
    sel = mr.selective_relevance(rel)
    assert not sel.mask.any()
    assert torch.equal(sel.static, rel)
    assert float(sel.motion_share) == 0.0
    zeros = mr.selective_relevance(rel, padding="zeros")
    marked = zeros.mask[0].any(dim=(1, 2))
    assert marked[0] and marked[-1] and not marked[1:-1].any()


def test_temporal_ramp_hand_computed() -> None:
    # E[t] = t everywhere on a 1x4x3x3 volume; spatial smoothing of a constant map is 16x it.
    t = torch.arange(4, dtype=torch.float64)
    rel = t.view(1, 1, 4, 1, 1).expand(1, 1, 4, 3, 3).contiguous()
    g = gradient(rel, derivative="signed")
    # G[t] = 16 * (E[t-1] - E[t+1]); replicate padding at both ends.
    expected_t = torch.tensor([16 * (0 - 1), 16 * (0 - 2), 16 * (1 - 3), 16 * (2 - 3)], dtype=torch.float64)
    assert torch.allclose(g[0, 0], expected_t.view(4, 1, 1).expand(4, 3, 3))
    assert torch.allclose(gradient(rel), g.abs())


def test_moving_dot_marks_old_and_new_position() -> None:
    rel = torch.zeros(1, 1, 5, 7, 7)
    for t in range(5):
        rel[0, 0, t, 3, 1 + t] = 1.0  # a dot moving right one pixel a frame
    sel = mr.selective_relevance(rel, sigma=1.0)
    g = gradient(rel, derivative="signed")[0, 0]
    # At t=2 the dot was at x=2 (t-1) and will be at x=4 (t+1): +4 and -4 at the centres.
    assert g[2, 3, 2] == 4.0 and g[2, 3, 4] == -4.0 and g[2, 3, 3] == 0.0
    assert sel.mask[0, 0, 2, 3, 2] and sel.mask[0, 0, 2, 3, 4]
    assert not sel.mask[0, 0, :, 0].any() and not sel.mask[0, 0, :, 6, :].any()
    assert 0.0 < float(sel.motion_share[0]) <= 1.0


def test_single_frame_clip_has_empty_mask_in_both_paddings() -> None:
    rel = torch.randn(2, 3, 1, 4, 4)
    for padding in ("replicate", "zeros"):
        sel = mr.selective_relevance(rel, padding=padding)
        assert not sel.mask.any()
        assert torch.equal(sel.temporal_gradient, torch.zeros(2, 1, 1, 4, 4))
        assert torch.isfinite(sel.threshold).all()


def test_two_frame_clip() -> None:
    rel = torch.zeros(1, 1, 2, 3, 3)
    rel[0, 0, 0, 1, 1] = 1.0
    rep = gradient(rel, derivative="signed")[0, 0]
    # replicate: both frames see S(E0) - S(E1); the smoothing kernel is [1,2,1]x[1,2,1].
    s = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]])
    assert torch.equal(rep[0], s) and torch.equal(rep[1], s)
    zer = gradient(rel, padding="zeros", derivative="signed")[0, 0]
    assert torch.equal(zer[0], torch.zeros(3, 3))  # -S(E1) = 0
    assert torch.equal(zer[1], s)  # S(E0)


def test_signed_derivative_is_one_sided() -> None:
    rel = torch.zeros(1, 1, 5, 3, 3)
    rel[0, 0, 0] = 1.0  # G = E[t-1] - E[t+1] > 0 at t = 1 (relevance went away)
    rel[0, 0, 4] = 1.0  # G < 0 at t = 3 (relevance arrives)
    signed = mr.selective_relevance(rel, sigma=0.0, padding="zeros", derivative="signed")
    absolute = mr.selective_relevance(rel, sigma=0.0, padding="zeros", derivative="abs")
    assert signed.mask[0, 0, 1].all() and not signed.mask[0, 0, 3].any()
    assert absolute.mask[0, 0, 1].all() and absolute.mask[0, 0, 3].all()


# ------------------------------------------------------------------------------------------------
# the authors' algorithm, voxel for voxel
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 3, 4, 5, 6), (3, 2, 7, 4, 3), (2, 1, 3, 9, 9), (1, 3, 16, 12, 10)])
@pytest.mark.parametrize("sigma", [0.0, 0.5, 1.0, 2.5])
def test_zero_padding_matches_naive_restatement(shape: tuple[int, ...], sigma: float) -> None:
    rng = np.random.default_rng(sum(shape))
    rel = rng.standard_normal(shape)
    d_ref, mask_ref = naive_selective(rel, sigma)
    sel = mr.selective_relevance(torch.from_numpy(rel), sigma, padding="zeros")
    np.testing.assert_allclose(sel.temporal_gradient[:, 0].numpy(), d_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(sel.mask[:, 0].numpy(), mask_ref)
    np.testing.assert_array_equal(sel.motion.numpy(), rel * mask_ref[:, None])


def test_zero_padding_equals_conv3d_with_the_sobel_kernel() -> None:
    from motion_relevance.selective import TEMPORAL_SOBEL

    rel = torch.randn(2, 3, 6, 8, 8, dtype=torch.float64)
    ref = torch.nn.functional.conv3d(
        rel.sum(1, keepdim=True), TEMPORAL_SOBEL.double()[None, None], padding=1
    )
    got = gradient(rel, padding="zeros", derivative="signed")
    assert torch.allclose(got, ref, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# shapes, dtypes, result fields
# ------------------------------------------------------------------------------------------------


def test_unbatched_input_keeps_its_rank() -> None:
    rel = torch.randn(3, 5, 6, 6)
    sel = mr.selective_relevance(rel)
    assert sel.motion.shape == rel.shape and sel.static.shape == rel.shape
    assert sel.mask.shape == (1, 5, 6, 6) and sel.mask.dtype == torch.bool
    assert sel.temporal_gradient.shape == (1, 5, 6, 6)
    assert sel.motion_share.shape == () and sel.threshold.shape == ()
    batched = mr.selective_relevance(rel[None])
    assert torch.equal(batched.mask[0], sel.mask)


def _any_floating_dtype(dtype: torch.dtype) -> None:
    rel = torch.randn(2, 3, 5, 6, 6).to(dtype)
    sel = mr.selective_relevance(rel)
    assert sel.motion.dtype == dtype and sel.static.dtype == dtype
    assert torch.equal(sel.motion + sel.static, rel)
    assert sel.temporal_gradient.dtype == torch.promote_types(dtype, torch.float32)
    assert torch.isfinite(sel.motion_share).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_any_floating_dtype(dtype: torch.dtype) -> None:
    _any_floating_dtype(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@eager_only("half precision always takes the eager path")
def test_half_precision(dtype: torch.dtype) -> None:
    _any_floating_dtype(dtype)


def test_result_fields_are_consistent() -> None:
    rel = torch.randn(4, 3, 8, 10, 10)
    sel = mr.selective_relevance(rel, sigma=1.5)
    d = sel.temporal_gradient
    std = d.reshape(4, -1).std(dim=1)
    assert torch.allclose(sel.threshold, 1.5 * std)
    assert torch.equal(sel.mask, d > sel.threshold.view(-1, 1, 1, 1, 1))
    share = (sel.motion.abs().sum(dim=(1, 2, 3, 4)) / rel.abs().sum(dim=(1, 2, 3, 4)))
    assert torch.allclose(sel.motion_share, share, rtol=1e-5)
    assert sel.sigma == 1.5 and sel.padding == "replicate" and sel.derivative == "abs"


def test_all_zero_relevance_gives_no_nan() -> None:
    rel = torch.zeros(2, 3, 4, 5, 5)
    for padding in ("replicate", "zeros"):
        sel = mr.selective_relevance(rel, padding=padding)
        assert not sel.mask.any()
        assert torch.equal(sel.motion_share, torch.zeros(2))
        assert torch.isfinite(sel.threshold).all()


def test_constant_relevance_gives_empty_mask() -> None:
    sel = mr.selective_relevance(torch.full((1, 3, 6, 4, 4), 2.5))
    assert not sel.mask.any() and float(sel.motion_share) == 0.0


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------


def test_nan_and_inf_are_refused_with_a_count() -> None:
    rel = torch.randn(1, 3, 4, 4, 4)
    rel[0, 0, 0, 0, 0] = float("nan")
    rel[0, 1, 2, 1, 1] = float("inf")
    with pytest.raises(InvalidInputError, match="2 NaN/Inf voxel"):
        mr.selective_relevance(rel)
    with pytest.raises(InvalidInputError, match="NaN/Inf"):
        mr.temporal_gradient(rel)


@pytest.mark.parametrize(
    ("value", "kwargs", "pattern"),
    [
        (torch.randn(3, 4, 4), {}, "shape"),
        (torch.randn(1, 1, 3, 4, 4, 2), {}, "shape"),
        (torch.zeros(1, 3, 0, 4, 4), {}, "empty"),
        (torch.ones(1, 3, 4, 4, 4, dtype=torch.int64), {}, "floating"),
        (torch.randn(1, 3, 4, 4, 4), {"sigma": -0.5}, "sigma"),
        (torch.randn(1, 3, 4, 4, 4), {"sigma": float("nan")}, "sigma"),
        (torch.randn(1, 3, 4, 4, 4), {"padding": "reflect"}, "padding"),
        (torch.randn(1, 3, 4, 4, 4), {"derivative": "square"}, "derivative"),
        ([[1.0]], {}, "torch.Tensor"),
    ],
)
@eager_only("bad input is refused before either path runs")
def test_bad_input_raises_one_line_error(value: object, kwargs: dict, pattern: str) -> None:
    with pytest.raises(MotionRelevanceError, match=pattern) as info:
        mr.selective_relevance(value, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_numpy_input_is_accepted() -> None:
    rel = np.random.default_rng(0).standard_normal((1, 3, 4, 5, 5)).astype(np.float32)
    sel = mr.selective_relevance(rel)
    assert isinstance(sel.motion, torch.Tensor) and sel.motion.shape == rel.shape


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------

volumes = st.tuples(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 5), st.integers(1, 5)
).flatmap(
    lambda shape: arrays(
        np.float64,
        shape,
        elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=64),
    )
)
PROPS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


def _near_threshold(sel: mr.SelectiveRelevance, rtol: float = 1e-9) -> torch.Tensor:
    thr = sel.threshold.reshape(-1, *([1] * (sel.temporal_gradient.ndim - 1)))
    return (sel.temporal_gradient - thr).abs() <= rtol * (1.0 + thr.abs())


@PROPS
@given(volumes, st.floats(0, 3), st.floats(0, 3), st.sampled_from(["replicate", "zeros"]))
def test_mask_shrinks_as_sigma_rises(rel: np.ndarray, s1: float, s2: float, padding: str) -> None:
    lo, hi = sorted((s1, s2))
    r = torch.from_numpy(rel)
    small = mr.selective_relevance(r, lo, padding=padding).mask
    large = mr.selective_relevance(r, hi, padding=padding).mask
    assert not (large & ~small).any()


@PROPS
@given(volumes, st.floats(0, 3), st.sampled_from(["replicate", "zeros"]), st.sampled_from(["abs", "signed"]))
def test_motion_plus_static_is_relevance(rel: np.ndarray, sigma: float, padding: str, derivative: str) -> None:
    r = torch.from_numpy(rel)
    sel = mr.selective_relevance(r, sigma, padding=padding, derivative=derivative)
    assert torch.equal(sel.motion + sel.static, r)
    assert torch.isfinite(sel.motion_share).all()
    assert ((sel.motion_share >= 0) & (sel.motion_share <= 1 + 1e-12)).all()


@PROPS
@given(volumes, st.floats(0, 3), st.integers(-20, 20), st.sampled_from(["replicate", "zeros"]))
@example(np.array([5e-324, 0.0, 1.0]).reshape(1, 1, 3, 1, 1), 1.0, -1, "replicate")  # subnormal: assumed away
def test_positive_scaling_leaves_mask_unchanged(rel: np.ndarray, sigma: float, k: int, padding: str) -> None:
    # scaling by 2**k is exact only while no value (or square of one, in the std) underflows
    assume(not ((np.abs(rel) < 1e-100) & (rel != 0)).any())
    r = torch.from_numpy(rel)
    base = mr.selective_relevance(r, sigma, padding=padding)
    scaled = mr.selective_relevance(r * 2.0**k, sigma, padding=padding)  # exact in floating point
    assert torch.equal(base.mask, scaled.mask)
    other = mr.selective_relevance(r * 3.7, sigma, padding=padding)  # rounding may move ties only
    differ = base.mask != other.mask
    assert not (differ & ~_near_threshold(base, 1e-9)).any()


@PROPS
@given(volumes, st.floats(0, 3), st.sampled_from(["replicate", "zeros"]))
def test_batch_equals_clips_one_by_one(rel: np.ndarray, sigma: float, padding: str) -> None:
    r = torch.from_numpy(rel)
    batch = mr.selective_relevance(r, sigma, padding=padding)
    near = _near_threshold(batch, 1e-9)
    for i in range(r.shape[0]):
        one = mr.selective_relevance(r[i : i + 1], sigma, padding=padding)
        assert torch.allclose(one.temporal_gradient, batch.temporal_gradient[i : i + 1])
        assert torch.allclose(one.threshold, batch.threshold[i : i + 1])
        assert not ((one.mask != batch.mask[i : i + 1]) & ~near[i : i + 1]).any()
        assert torch.allclose(one.motion_share, batch.motion_share[i : i + 1])


@PROPS
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 5), st.integers(1, 5)).flatmap(
        lambda s: arrays(np.float64, (s[0], s[1], 1, s[3], s[4]), elements=st.floats(-100, 100, width=64)).map(
            lambda a: np.repeat(a, s[2], axis=2)
        )
    ),
    st.floats(0, 3),
)
def test_static_scene_gives_empty_mask_by_default(rel: np.ndarray, sigma: float) -> None:
    sel = mr.selective_relevance(torch.from_numpy(rel), sigma)
    assert not sel.mask.any()
    assert torch.equal(sel.motion_share, torch.zeros(rel.shape[0], dtype=torch.float64))
