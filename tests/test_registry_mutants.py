"""The method registry and the SlowFast adapter: what the method tests did not reach (found by
mutation testing, ``docs/testing.md``): registering a method, the errors' wording, and the
SlowFast adapter's default and edge values of ``alpha``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from motion_relevance.attribution import SlowFastInput, registry
from motion_relevance.attribution.method import Method
from motion_relevance.errors import InvalidInputError


def test_a_registered_method_is_found_by_its_key_and_names_are_unique(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))  # restored after the test
    extra = Method("My-Extra_Method", "a test method", lambda run, x, opts: None)
    assert registry.register(extra) is extra
    assert registry.get_method(" my_extra-method ") is extra
    with pytest.raises(ValueError, match=r"^method 'my_extra_method' is already registered$"):
        registry.register(Method("my_extra_method", "again", lambda run, x, opts: None))
    assert registry.get_method("saliency").name == "saliency"  # the others stay


def test_a_method_that_is_not_a_string_is_named_by_its_type() -> None:
    with pytest.raises(InvalidInputError, match=r"^method must be a name \(str\), got int$"):
        registry.get_method(3)  # type: ignore[arg-type]


class _Pathways(nn.Module):
    """Returns the number of frames of each pathway, to see what the adapter feeds."""

    def forward(self, pathways: list[torch.Tensor]) -> torch.Tensor:
        return torch.tensor([[float(p.shape[2]) for p in pathways]])


def test_slowfast_alpha_default_and_edge_values() -> None:
    x = torch.zeros(1, 3, 8, 4, 4)
    assert SlowFastInput(_Pathways()).alpha == 4
    assert SlowFastInput(_Pathways())(x).tolist() == [[2.0, 8.0]]  # 8 // 4 slow frames
    assert SlowFastInput(_Pathways(), alpha=1)(x).tolist() == [[8.0, 8.0]]  # every frame
    assert SlowFastInput(_Pathways(), alpha=8)(x).tolist() == [[1.0, 8.0]]  # exactly alpha frames
    for bad in (0, -2, True, 2.0, "4"):
        with pytest.raises(InvalidInputError, match=r"^alpha must be a positive integer, got "):
            SlowFastInput(_Pathways(), alpha=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"^a SlowFast clip needs at least alpha=8 frames, got 7$"):
        SlowFastInput(_Pathways(), alpha=8)(torch.zeros(1, 3, 7, 4, 4))
