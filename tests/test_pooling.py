"""Tie-sharing max pool: forward bit for bit, backward against an unfold reference, explain(ties=)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import motion_relevance as mr
from motion_relevance.attribution.pooling import tie_sharing_max_pool, tie_sharing_pools
from motion_relevance.errors import InvalidInputError
from motion_relevance.models.i3d import MaxPool3dSame
from motion_relevance.synthetic import generate

torch.set_num_threads(1)

#: (kernel, stride, padding, dilation, ceil_mode) for 3-D pools: non-overlapping, overlapping
#: and padded ("same"-like), dilated, ceil_mode with a partial last window, anisotropic.
CONFIGS_3D = [
    (2, None, 0, 1, False),
    ((1, 2, 2), (1, 2, 2), 0, 1, False),
    (3, 1, 1, 1, False),
    (3, 2, 1, 1, False),
    (3, 2, 1, 1, True),
    ((2, 3, 3), (1, 2, 2), (1, 1, 0), (1, 1, 2), True),
    (2, 2, (0, 1, 1), 1, False),  # C3D's pool5
    ((3, 3, 3), (2, 2, 2), (1, 1, 1), 2, True),
]


def _clips(shape: tuple[int, ...], seed: int, levels: int | None) -> torch.Tensor:
    """Random values; with ``levels`` quantised to that many values, so windows have many ties."""
    g = torch.Generator().manual_seed(seed)
    if levels is None:
        return torch.randn(shape, generator=g)
    return torch.randint(0, levels, shape, generator=g).float() - 1.0


def reference_grad(x: torch.Tensor, grad: torch.Tensor, kernel, stride, padding, dilation, ceil_mode) -> torch.Tensor:
    """Independent gradient of a 3-D max pool sharing ties: windows by ``unfold`` of the
    -inf-padded input and of an index volume, scatter ``grad / ties`` onto the indices."""
    k = torch.nn.modules.utils._triple(kernel)
    s = k if stride is None else torch.nn.modules.utils._triple(stride)
    p = torch.nn.modules.utils._triple(padding)
    d = torch.nn.modules.utils._triple(dilation)
    out = F.max_pool3d(x, k, s, p, d, ceil_mode)
    n, c = x.shape[:2]
    index = torch.arange(x[0, 0].numel()).reshape(x.shape[2:]).float()
    extents = [d[a] * (k[a] - 1) + 1 for a in range(3)]
    rights = [max((out.shape[2 + a] - 1) * s[a] + extents[a] - x.shape[2 + a] - p[a], 0) for a in range(3)]
    pad = [v for a in (2, 1, 0) for v in (p[a], rights[a])]
    xs = F.pad(x, pad, value=float("-inf"))
    idx = F.pad(index[None, None].expand(n, c, -1, -1, -1), pad, value=-1.0)
    for axis in range(3):
        dim = 2 + axis
        xs = xs.unfold(dim, extents[axis], s[axis])[..., :: d[axis]].narrow(dim, 0, out.shape[dim])
        idx = idx.unfold(dim, extents[axis], s[axis])[..., :: d[axis]].narrow(dim, 0, out.shape[dim])
    windows = xs.flatten(5)  # (n, c, o1, o2, o3, k1*k2*k3)
    where = idx.flatten(5).long()
    best = windows.amax(dim=-1, keepdim=True)
    assert torch.equal(best.squeeze(-1), out)
    tied = (windows == best) & (where >= 0)
    share = (grad[..., None] / tied.sum(-1, keepdim=True)) * tied
    result = torch.zeros(n, c, x[0, 0].numel(), dtype=x.dtype)
    result.scatter_add_(2, where.clamp_min(0).flatten(2), share.flatten(2))
    return result.reshape(x.shape)


@pytest.mark.parametrize("config", CONFIGS_3D)
@pytest.mark.parametrize("levels", [None, 2, 3])
def test_forward_bit_identical_and_backward_matches_unfold_reference(config, levels) -> None:
    kernel, stride, padding, dilation, ceil_mode = config
    x = _clips((2, 3, 7, 9, 8), seed=CONFIGS_3D.index(config) * 10 + (levels or 0), levels=levels)
    expected = F.max_pool3d(x, kernel, stride, padding, dilation, ceil_mode)
    xs = x.clone().requires_grad_(True)
    out = tie_sharing_max_pool(xs, kernel, stride, padding, dilation, ceil_mode, nd=3)
    assert torch.equal(out, expected)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(grad)
    ref = reference_grad(x, grad, kernel, stride, padding, dilation, ceil_mode)
    torch.testing.assert_close(xs.grad, ref, rtol=1e-5, atol=1e-6)
    # The gradient is handed out, not created: each window's gradient adds up over its maxima.
    torch.testing.assert_close(xs.grad.sum(), grad.sum(), rtol=1e-4, atol=1e-4)
    if levels is None:  # no ties: PyTorch's own max-pool gradient
        xp = x.clone().requires_grad_(True)
        F.max_pool3d(xp, kernel, stride, padding, dilation, ceil_mode).backward(grad)
        torch.testing.assert_close(xs.grad, xp.grad, rtol=1e-5, atol=1e-6)


def test_ties_are_shared_evenly_and_first_reproduces_pytorch() -> None:
    x = torch.ones(1, 1, 4, 2, 2)
    pool = nn.MaxPool3d(2)
    first = x.clone().requires_grad_(True)
    pool(first).sum().backward()
    assert first.grad.sum() == 2 and first.grad.flatten()[0] == 1  # all to the first element
    with tie_sharing_pools("first"):
        again = x.clone().requires_grad_(True)
        pool(again).sum().backward()
    assert torch.equal(again.grad, first.grad)
    with tie_sharing_pools("shared"):
        shared = x.clone().requires_grad_(True)
        pool(shared).sum().backward()
    assert torch.equal(shared.grad, torch.full_like(x, 1 / 8))


@pytest.mark.parametrize(
    "call",
    [
        lambda x: nn.MaxPool3d(3, 1, 1)(x),
        lambda x: MaxPool3dSame((3, 3, 3), (2, 2, 2))(x),  # I3D: zero "same" padding, overlapping
        lambda x: MaxPool3dSame((1, 3, 3), (1, 2, 2))(x),
        lambda x: F.max_pool3d(x, kernel_size=2, stride=2),
        lambda x: F.max_pool3d(x, 3, 2, 1, 1, True),
        lambda x: torch.max_pool3d(x, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
        lambda x: F.max_pool2d(x.flatten(1, 2), 3, 2, 1),
        lambda x: nn.MaxPool1d(2)(x.flatten(1, 3)),
    ],
)
def test_the_mode_routes_every_max_pool_path(call) -> None:
    x = _clips((1, 2, 6, 8, 8), seed=5, levels=2).abs() + 1  # > 0: I3D's zero padding never ties
    plain = x.clone().requires_grad_(True)
    expected = call(plain)
    expected.sum().backward()
    with tie_sharing_pools():
        shared = x.clone().requires_grad_(True)
        out = call(shared)
    assert torch.equal(out, expected)
    assert type(out.grad_fn).__name__ == "TieSharingMaxPoolBackward"
    out.sum().backward()
    assert not torch.equal(shared.grad, plain.grad)  # ties in every window: the split differs
    torch.testing.assert_close(shared.grad.sum(), plain.grad.sum())


def test_pools_asked_for_indices_and_other_threads_keep_pytorch_backward() -> None:
    x = torch.ones(1, 1, 4, 4, 4, requires_grad=True)
    with tie_sharing_pools():
        out, indices = F.max_pool3d(x, 2, return_indices=True)
    assert out.grad_fn is not None and "TieSharing" not in type(out.grad_fn).__name__
    assert int(indices.flatten()[0]) == 0
    # Once the block is left, nothing remains routed.
    assert "TieSharing" not in type(F.max_pool3d(x, 2).grad_fn).__name__


def test_double_backward_and_gradcheck() -> None:
    x = torch.randn(1, 2, 5, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tie_sharing_max_pool(t, 3, 2, 1, nd=3), (x,))
    g = torch.randn(1, 2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    (grad_x,) = torch.autograd.grad(tie_sharing_max_pool(x, 3, 2, 1, nd=3), x, g, create_graph=True)
    (grad_g,) = torch.autograd.grad(grad_x.sum(), g)
    torch.testing.assert_close(grad_g, torch.ones_like(g))  # each window's gradient goes to x once


def _frozen_synthetic(frames: int) -> tuple[nn.Module, torch.Tensor]:
    model, spec = mr.load_model("synthetic-motion")
    batch = generate("motion", 1, seed=3)
    clip = spec.preprocess(batch.frames[0])
    return model, clip[:, :, :1].expand(-1, -1, frames, -1, -1).contiguous()


def _per_frame(relevance: torch.Tensor) -> torch.Tensor:
    return relevance.abs().sum(dim=(0, 1, 3, 4))


@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "lrp_epsilon_plus_flat"])
def test_frozen_clip_has_flat_interior_with_shared_ties_and_a_comb_with_first(method: str) -> None:
    """A 48-frame frozen clip: frames 16..31 are beyond the reach of the temporal edges (the
    network's zero padding), so their relevance can only differ through tie-breaking."""
    model, frozen = _frozen_synthetic(48)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    forwards = {name: m.forward for name, m in model.named_modules()}
    first = _per_frame(mr.explain(model, frozen, method, spec=None).relevance)[16:32]
    expl = mr.explain(model, frozen, method, spec=None, ties="shared")
    shared = _per_frame(expl.relevance)[16:32]
    assert expl.options["ties"] == "shared"
    torch.testing.assert_close(shared, shared.mean().expand_as(shared), rtol=1e-4, atol=0)
    assert float((first.max() - first.min()) / first.mean()) > 0.05  # the comb
    # Even and odd frames differ with "first": the comb's period divides the pools' stride (4).
    assert not torch.allclose(first[0::2], first[1::2], rtol=1e-3)
    # The model is left as it was: parameters, modules' forwards, and the plain backward.
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(m.forward == forwards[name] for name, m in model.named_modules())
    again = _per_frame(mr.explain(model, frozen, method, spec=None).relevance)[16:32]
    assert torch.equal(again, first)


def test_lrp_with_shared_ties_still_conserves() -> None:
    model, frozen = _frozen_synthetic(16)
    for ties in ("first", "shared"):
        expl = mr.explain(model, frozen, "lrp_epsilon_plus_flat", spec=None, ties=ties, ignore_bias=True)
        logit = expl.logits.gather(1, expl.target[:, None]).squeeze(1)
        torch.testing.assert_close(expl.relevance.sum(dim=(1, 2, 3, 4)), logit, rtol=1e-3, atol=1e-4)


def test_bad_ties_value_is_a_one_line_error() -> None:
    model, frozen = _frozen_synthetic(16)
    with pytest.raises(InvalidInputError, match="ties must be one of 'first', 'shared'"):
        mr.explain(model, frozen, "saliency", ties="even")
    with pytest.raises(InvalidInputError), tie_sharing_pools("random"):
        pass


def test_every_preset_pool_goes_through_the_shared_backward() -> None:
    """Count pools that run under the mode: every max pool of C3D, I3D and torchvision's S3D
    (modules and I3D's padded subclass) yields a TieSharingMaxPool node."""
    from torchvision.models.video import s3d

    from motion_relevance.models.c3d import C3D
    from motion_relevance.models.i3d import InceptionI3d
    from motion_relevance.models.synthetic_presets import SyntheticC3D

    cases = [
        (SyntheticC3D(), torch.randn(1, 3, 16, 32, 32)),
        (C3D(num_classes=3), torch.randn(1, 3, 16, 112, 112)),
        (InceptionI3d(num_classes=3), torch.randn(1, 3, 9, 64, 64)),
        (s3d(num_classes=3).features, torch.randn(1, 3, 14, 64, 64)),  # all of S3D's pools
    ]
    for model, x in cases:
        pools = [m for m in model.modules() if isinstance(m, nn.MaxPool3d)]
        seen: list[str] = []

        def record(module: nn.Module, args: object, out: torch.Tensor, seen: list[str] = seen) -> None:
            seen.append(type(out.grad_fn).__name__)

        hooks = [p.register_forward_hook(record) for p in pools]
        model.eval()
        with tie_sharing_pools():
            model(x.requires_grad_(True))
        for h in hooks:
            h.remove()
        assert pools and len(seen) == len(pools), type(model).__name__
        assert set(seen) == {"TieSharingMaxPoolBackward"}, (type(model).__name__, set(seen))


def test_pool_1d_2d_configs_match_pytorch() -> None:
    x = _clips((2, 3, 11, 10), seed=7, levels=None)
    for k, s, p, d, c in itertools.product([2, 3], [None, 1, 2], [0, 1], [1, 2], [False, True]):
        if p > (k // 2):
            continue
        expected = F.max_pool2d(x, k, s, p, d, c)
        assert torch.equal(tie_sharing_max_pool(x, k, s, p, d, c, nd=2), expected)
        expected1 = F.max_pool1d(x.flatten(2), k, s, p, d, c)
        assert torch.equal(tie_sharing_max_pool(x.flatten(2), k, s, p, d, c, nd=1), expected1)
