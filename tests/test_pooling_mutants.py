"""Tie-sharing pools: argument handling the configuration tests did not reach (found by mutation
testing, ``docs/testing.md``): defaults, one-entry and empty sequences, the argument named in
each error, the aten call with its defaults, dilation through the mode, and the guard that
leaves pools asked for their indices to PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from motion_relevance.attribution.pooling import (
    TieSharingMode,
    tie_sharing_max_pool,
    tie_sharing_pools,
)
from motion_relevance.errors import InvalidInputError


def _x(shape: tuple[int, ...] = (1, 2, 5, 7, 6), seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_defaults_are_pytorchs() -> None:
    """No padding, dilation 1, floor mode, three spatial axes, stride = kernel."""
    x = _x()
    assert torch.equal(tie_sharing_max_pool(x, 2), F.max_pool3d(x, 2))


@pytest.mark.parametrize("stride", [(1,), (2,), []])
def test_one_entry_and_empty_strides(stride) -> None:
    """A one-entry sequence applies to every axis; an empty one means "the kernel" (aten's
    default)."""
    x = _x(seed=1)
    expected = F.max_pool3d(x, 2, stride[0] if stride else None)
    assert torch.equal(tie_sharing_max_pool(x, (2,), stride), expected)


@pytest.mark.parametrize("name", ["kernel_size", "stride", "padding", "dilation"])
def test_each_bad_argument_is_named_in_its_error(name: str) -> None:
    args = {"kernel_size": 2, "stride": None, "padding": 0, "dilation": 1}
    args[name] = (1, 1)  # two entries for a 3-D pool
    with pytest.raises(InvalidInputError, match=rf"^max pool {name} must have 1 or 3 entries, got \(1, 1\)$"):
        tie_sharing_max_pool(_x(), **args)


def test_aten_call_with_its_defaults_and_dilation_through_the_mode() -> None:
    """``torch.max_pool3d(x, k)`` leaves stride, padding, dilation and ceil_mode to their
    defaults (stride [] = kernel, 0, 1, floor); a dilated functional call keeps its dilation."""
    x = _x((1, 1, 7, 9, 8), seed=2)
    calls = [
        lambda t: torch.max_pool3d(t, [2, 2, 2]),
        lambda t: F.max_pool3d(t, 3, 1, 1, 2),
        lambda t: F.max_pool3d(t, kernel_size=3, stride=2, dilation=2, ceil_mode=True),
    ]
    for call in calls:
        expected = call(x)
        with tie_sharing_pools():
            out = call(x.clone().requires_grad_(True))
        assert type(out.grad_fn).__name__ == "TieSharingMaxPoolBackward"
        assert torch.equal(out, expected)


def test_a_pool_asked_for_indices_is_left_to_pytorch() -> None:
    """The mode's guard: a max-pool call with ``return_indices=True`` gets PyTorch's values and
    indices, not the tie-sharing pool (which has no indices)."""
    x = _x(seed=3)
    out = TieSharingMode().__torch_function__(F.max_pool3d, (), (x, 2), {"return_indices": True})
    values, indices = F.max_pool3d(x, 2, return_indices=True)
    assert isinstance(out, tuple) and len(out) == 2
    assert torch.equal(out[0], values) and torch.equal(out[1], indices)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_padded_pool_backward_on_cuda_matches_cpu() -> None:
    """The padding masks are built on the input's device (a CPU mask would fail on CUDA)."""
    x = torch.randint(0, 2, (1, 2, 5, 6, 6), generator=torch.Generator().manual_seed(4)).float()
    grads = []
    for device in ("cpu", "cuda"):
        xs = x.to(device).requires_grad_(True)
        tie_sharing_max_pool(xs, 3, 2, 1, ceil_mode=True).sum().backward()
        grads.append(xs.grad.cpu())
    torch.testing.assert_close(grads[1], grads[0])
