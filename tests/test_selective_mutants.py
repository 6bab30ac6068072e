"""Edge cases of the selective step that the mutation run of ``selective.py`` found untested.

Expected values come from a NumPy restatement of the algorithm (the 27-tap temporal Sobel
filter over an explicitly padded channel sum, ``np.std(ddof=1)``) or from hand-built volumes.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import motion_relevance as mr
from motion_relevance import selective
from motion_relevance.errors import InvalidInputError
from motion_relevance.selective import ENV_VAR

SMOOTH = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64)


def reference(
    relevance: np.ndarray, sigma: float, padding: str = "replicate", derivative: str = "abs"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``D`` (N, T, H, W), threshold (N,), mask (N, T, H, W) and motion share (N,) in float64."""
    e = np.asarray(relevance, dtype=np.float64).sum(axis=1)
    n, t, h, w = e.shape
    mode = "edge" if padding == "replicate" else "constant"
    padded = np.pad(e, ((0, 0), (1, 1), (1, 1), (1, 1)), mode=mode)
    g = np.zeros_like(e)
    for dh in range(3):
        for dw in range(3):
            before = padded[:, 0:t, dh : dh + h, dw : dw + w]
            after = padded[:, 2 : t + 2, dh : dh + h, dw : dw + w]
            g += SMOOTH[dh, dw] * (before - after)
    d = np.abs(g) if derivative == "abs" else g
    flat = d.reshape(n, -1)
    std = flat.std(axis=1, ddof=1) if flat.shape[1] > 1 else np.zeros(n)
    threshold = sigma * std
    mask = d > threshold[:, None, None, None]
    r = np.abs(np.asarray(relevance, dtype=np.float64))
    total = r.sum(axis=(1, 2, 3, 4))
    kept = (r * mask[:, None]).sum(axis=(1, 2, 3, 4))
    share = np.where(total > 0, kept / np.where(total > 0, total, 1.0), 0.0)
    return d, threshold, mask, share


@pytest.fixture
def eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forces the eager PyTorch path of ``selective_relevance``."""
    monkeypatch.setenv(ENV_VAR, "torch")


# ------------------------------------------------------------------------------------------------
# temporal_gradient: rank, dtype, per-clip sums
# ------------------------------------------------------------------------------------------------


def test_temporal_gradient_of_an_unbatched_clip_keeps_its_rank() -> None:
    rel = np.random.default_rng(1).standard_normal((3, 4, 5, 6))
    d = mr.temporal_gradient(torch.from_numpy(rel))
    assert d.shape == (1, 4, 5, 6)
    np.testing.assert_allclose(d[0].numpy(), reference(rel[None], 1.0)[0][0], rtol=1e-12, atol=1e-12)


def test_temporal_gradient_of_half_precision_is_computed_in_float32() -> None:
    """Per-frame values 40000, 20000, 0 in two channels: the channel sum (80000) and the sum of
    |R| of the clip (960000) overflow float16 (max 65504), not float32."""
    frames = np.array([40000.0, 20000.0, 0.0], dtype=np.float16)
    rel = np.broadcast_to(frames.reshape(1, 1, 3, 1, 1), (1, 2, 3, 2, 2)).copy()
    d = mr.temporal_gradient(torch.from_numpy(rel), derivative="signed")
    assert d.dtype == torch.float32
    # constant frames: the smoothing is 16 times the channel sum; replicate padding at the ends
    e = np.array([80000.0, 40000.0, 0.0])
    expected = 16 * np.array([e[0] - e[1], e[0] - e[2], e[1] - e[2]])
    np.testing.assert_array_equal(d[0, 0].numpy(), np.broadcast_to(expected.reshape(3, 1, 1), (3, 2, 2)))


def test_temporal_gradient_checks_each_clip_sum_not_the_batch_sum() -> None:
    """Two one-voxel clips of 3e38: each clip's sum of |R| is finite in float32, the two
    together are not. Nothing overflows per clip, so there is no error; one frame has no
    temporal neighbour, so D is zero."""
    rel = torch.full((2, 1, 1, 1, 1), 3e38)
    assert torch.equal(mr.temporal_gradient(rel), torch.zeros(2, 1, 1, 1, 1))


# ------------------------------------------------------------------------------------------------
# error messages, word for word
# ------------------------------------------------------------------------------------------------


def test_non_tensor_error_names_the_type() -> None:
    with pytest.raises(InvalidInputError) as info:
        mr.selective_relevance([[1.0]])  # type: ignore[arg-type]
    assert str(info.value) == "relevance must be a torch.Tensor or numpy array, got list"


def test_nan_error_message() -> None:
    rel = torch.zeros(1, 1, 2, 2, 2)
    rel[0, 0, 1, 0, 1] = float("nan")
    message = (
        "relevance contains 1 NaN/Inf voxel(s) of 8; "
        "fix the explanation (e.g. check the model's output) before the selective step"
    )
    with pytest.raises(InvalidInputError) as info:
        mr.temporal_gradient(rel)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"padding": "reflect"}, "padding must be one of replicate, zeros, got 'reflect'"),
        ({"derivative": "square"}, "derivative must be one of abs, signed, got 'square'"),
        ({"sigma": True}, "sigma must be a finite number >= 0, got True"),
        ({"sigma": "1"}, "sigma must be a finite number >= 0, got '1'"),
    ],
)
def test_option_error_messages(options: dict, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        mr.selective_relevance(torch.ones(1, 1, 2, 2, 2), **options)
    assert str(info.value) == message


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_overflow_error_messages(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, kernel)
    summed = torch.full((1, 2, 1, 1, 1), 3e38)  # finite voxels, channel sum 6e38 > float32 max
    with pytest.raises(InvalidInputError) as info:
        mr.temporal_gradient(summed)
    assert str(info.value) == "relevance values are too large: their channel sum overflows"
    if kernel == "torch":
        with pytest.raises(InvalidInputError) as info:
            mr.selective_relevance(summed)
        assert str(info.value) == "relevance values are too large: their channel sum overflows"
    # one pixel: the sum of |R| (6e37) is finite, but 16 times a voxel (the smoothing) is not
    rel = torch.zeros(1, 1, 4, 1, 1)
    rel[0, 0, ::2] = 3e37
    with pytest.raises(InvalidInputError) as info:
        mr.selective_relevance(rel)
    assert str(info.value) == "relevance values are too large: their temporal derivative overflows"


# ------------------------------------------------------------------------------------------------
# the eager path: threshold of tiny clips, per-clip scaling, half precision
# ------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("eager")
def test_two_voxel_clip_has_a_threshold() -> None:
    """T = 2, one pixel, zero padding: D = |(-4 E[1], 4 E[0])| = (12, 4) for E = (1, 3)."""
    rel = torch.tensor([1.0, 3.0], dtype=torch.float64).view(1, 1, 2, 1, 1)
    sel = mr.selective_relevance(rel, 1.0, padding="zeros")
    assert torch.equal(sel.temporal_gradient.flatten(), torch.tensor([12.0, 4.0], dtype=torch.float64))
    assert float(sel.threshold[0]) == pytest.approx(np.std([12.0, 4.0], ddof=1), rel=1e-12)
    assert sel.mask.flatten().tolist() == [True, False]
    assert float(sel.motion_share[0]) == pytest.approx(0.25)


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_default_sigma_is_one(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, kernel)
    rel = np.random.default_rng(5).standard_normal((2, 3, 6, 5, 5))
    sel = mr.selective_relevance(torch.from_numpy(rel))
    _, threshold, mask, _ = reference(rel, 1.0)
    assert sel.sigma == 1.0
    np.testing.assert_allclose(sel.threshold.numpy(), threshold, rtol=1e-9)
    np.testing.assert_array_equal(sel.mask[:, 0].numpy(), mask)


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_motion_share_of_a_clip_whose_relevance_sums_below_one(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dot of 0.01 moving right one pixel a frame, next to an all-zero clip: sum |R| = 0.05."""
    monkeypatch.setenv(ENV_VAR, kernel)
    rel = np.zeros((2, 1, 5, 7, 7))
    for t in range(5):
        rel[0, 0, t, 3, 1 + t] = 0.01
    sel = mr.selective_relevance(torch.from_numpy(rel))
    share = reference(rel, 1.0)[3]
    assert 0.0 < share[0] < 1.0 and share[1] == 0.0
    np.testing.assert_allclose(sel.motion_share.numpy(), share, rtol=1e-12)


@pytest.mark.usefixtures("eager")
def test_one_voxel_clips_have_one_zero_threshold_each() -> None:
    rel = torch.randn(3, 2, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    sel = mr.selective_relevance(rel)
    assert torch.equal(sel.threshold, torch.zeros(3))
    assert not sel.mask.any()


@pytest.mark.usefixtures("eager")
@pytest.mark.parametrize("derivative", ["abs", "signed"])
def test_std_is_scaled_per_clip(derivative: str) -> None:
    """An ordinary clip next to the same clip times 2**-545: the tiny clip's threshold is the
    ordinary one times 2**-545 (its squares would underflow at the ordinary clip's scale)."""
    ordinary = np.random.default_rng(7).standard_normal((1, 3, 5, 6, 7))
    rel = torch.from_numpy(np.concatenate([ordinary, ordinary * 2.0**-545]))
    sel = mr.selective_relevance(rel, 1.0, derivative=derivative)
    expected = reference(ordinary, 1.0, derivative=derivative)[1][0]
    assert expected > 0
    np.testing.assert_allclose(sel.threshold.numpy(), [expected, expected * 2.0**-545], rtol=1e-9, atol=0)


def test_half_precision_sums_relevance_in_float32() -> None:
    """float16 takes the eager path; its sum of |R| (108000) overflows float16 but not float32.
    Frames 4000, 4000, 2000, 2000: D is 32000 in the two middle frames, 0 at the ends."""
    frames = np.array([4000.0, 4000.0, 2000.0, 2000.0], dtype=np.float16)
    rel = np.broadcast_to(frames.reshape(1, 1, 4, 1, 1), (1, 1, 4, 3, 3)).copy()
    sel = mr.selective_relevance(torch.from_numpy(rel))
    d, threshold, mask, share = reference(rel, 1.0)
    assert d[0, :, 0, 0].tolist() == [0.0, 32000.0, 32000.0, 0.0]
    assert torch.equal(sel.mask[:, 0], torch.from_numpy(mask))
    np.testing.assert_allclose(float(sel.threshold), threshold[0], rtol=1e-6)
    assert float(sel.motion_share) == pytest.approx(float(share[0])) == pytest.approx(0.5)


def test_failed_import_of_the_kernels_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an importable kernel module the eager path runs, and the import is not retried."""
    import motion_relevance

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(selective, "_kernels_missing", False)
    monkeypatch.delattr(motion_relevance, "selective_kernels", raising=False)
    monkeypatch.setitem(sys.modules, "motion_relevance.selective_kernels", None)  # import fails
    rel = torch.randn(1, 3, 4, 5, 5, generator=torch.Generator().manual_seed(3))
    assert selective._fused_kernels(rel) is None
    assert selective._kernels_missing is True
    sel = mr.selective_relevance(rel)
    np.testing.assert_array_equal(sel.mask[:, 0].numpy(), reference(rel.numpy(), 1.0)[2])
