"""The selective benchmark compares like with like: its naive conv3d loop is the same algorithm."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import motion_relevance as mr
from motion_relevance import selective_kernels
from motion_relevance.selective import ENV_VAR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_selective


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_naive_benchmark_version_matches_the_library(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, kernel)
    rel = torch.randn(3, 3, 6, 9, 8, generator=torch.Generator().manual_seed(1))
    motion, static, mask = bench_selective.naive_per_clip(rel, 1.0)
    sel = mr.selective_relevance(rel, 1.0)
    thr = sel.threshold.view(-1, 1, 1, 1, 1)
    near = (sel.temporal_gradient - thr).abs() <= 1e-4 * thr
    assert not ((mask != sel.mask) & ~near).any()
    agree = (mask == sel.mask).expand_as(rel)
    assert torch.equal(motion[agree], sel.motion[agree])
    assert torch.equal(motion + static, rel)


def test_eager_helper_forces_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(selective_kernels, "split", lambda *a: calls.append(a))
    bench_selective.eager(torch.randn(1, 3, 4, 5, 5))
    assert calls == []
