"""Test helpers (not a test module): tiny video models and synthetic videos.

``build_tiny`` is a top-level builder (``"tiny_models:build_tiny"``) so subprocesses and Ray
workers can rebuild the exact same model: its weights come from a fixed seed. ``TinyNet`` and
``SPEC`` are the report tests' model; ``float_path_share`` their reference motion share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from motion_relevance.attribution import explain
from motion_relevance.models.spec import InputSpec
from motion_relevance.selective import selective_relevance
from motion_relevance.video import iter_clips, write_video

LABELS = ("left", "right", "still")
FRAMES = 4
SIZE = 16


class TinyC3D(nn.Module):
    """Conv3d -> ReLU -> Conv3d -> global average pool -> linear: (N, 3, T, H, W) -> (N, 3)."""

    def __init__(self, num_classes: int = len(LABELS)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(3, 6, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv3d(6, 8, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def build_tiny(weights: str | None = None, num_classes: int | None = None) -> tuple[nn.Module, InputSpec]:
    """The tiny model with deterministic random weights, and its InputSpec."""
    if weights is not None:
        raise ValueError("the tiny test model has no weights file")
    state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    model = TinyC3D(num_classes or len(LABELS)).eval()
    torch.random.set_rng_state(state)
    spec = InputSpec(
        frames=FRAMES,
        size=(SIZE, SIZE),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        labels=LABELS,
        cam_layer="features.2",
    )
    return model, spec


def moving_square(frames: int, *, seed: int, size: int = 24) -> np.ndarray:
    """uint8 (T, size, size, 3): a bright square moving over a noisy background."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 60, size=(frames, size, size, 3), dtype=np.uint8)
    step = int(rng.integers(1, 3))
    for t in range(frames):
        x = (2 + step * t) % (size - 8)
        video[t, 8:16, x : x + 8] = (220, 200, 40)
    return video


def write_clip(path: Path, frames: int, *, seed: int) -> Path:
    """Write a small H.264 test video with PyAV."""
    return write_video(path, moving_square(frames, seed=seed), fps=8.0)


def make_dataset(folder: Path) -> Path:
    """Five videos (two good, one corrupt, one too short, one unlabelled) and their manifest.

    The good ones have 12 frames (3 clips of 4) and 9 frames (3 clips, the last overlapping).
    """
    folder.mkdir(parents=True, exist_ok=True)
    write_clip(folder / "v0.mp4", 12, seed=0)
    write_clip(folder / "v1.mp4", 12, seed=1)
    write_clip(folder / "short.mp4", 2, seed=3)
    write_clip(folder / "v2.mp4", 9, seed=2)
    (folder / "bad.mp4").write_bytes(b"this is not a video " * 20)
    manifest = folder / "manifest.csv"
    manifest.write_text(
        "path,label\nv0.mp4,left\nv1.mp4,right\nbad.mp4,left\nshort.mp4,still\nv2.mp4,\n"
    )
    return manifest


def build_tiny_outside_ray(weights: str | None = None, num_classes: int | None = None) -> tuple[nn.Module, InputSpec]:
    """``build_tiny``, but failing inside a Ray worker (to test how worker failures surface)."""
    import ray

    if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
        raise RuntimeError("this builder refuses to run in a Ray actor")
    return build_tiny(weights, num_classes)


class TinyNet(nn.Module):
    """Two 3-D convolutions, global pooling, 5 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv3d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))).flatten(1))


SPEC = InputSpec(frames=8, size=(24, 24), resize=28, labels=("a", "b", "c", "d", "e"), cam_layer="conv2")


def float_path_share(model: nn.Module, path: Path, target: int, sigma: float) -> float:
    """Motion share over owned frames, straight from explain + selective_relevance."""
    kept = total = 0.0
    for window, frames in iter_clips(path, SPEC):
        rel = explain(model, SPEC.preprocess(frames), "saliency", target=target, spec=SPEC).relevance
        sel = selective_relevance(rel, sigma)
        magnitude = rel[0].abs().sum(0)[window.owned].double()
        kept += float((magnitude * sel.mask[0, 0, window.owned]).sum())
        total += float(magnitude.sum())
    return kept / total


class HangingSpec(InputSpec):
    """The tiny model's spec, whose preprocessing never returns for an all-black clip: a decode
    worker that hangs on one video (the fault-injection tests' stalled worker)."""

    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        if int(torch.as_tensor(frames).max()) < 8:
            import time

            time.sleep(3600)
        return super().preprocess(frames)


def build_tiny_hanging(weights: str | None = None, num_classes: int | None = None) -> tuple[nn.Module, InputSpec]:
    """``build_tiny`` with ``HangingSpec``: decoding an all-black video hangs."""
    import dataclasses

    model, spec = build_tiny(weights, num_classes)
    return model, HangingSpec(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)})


def write_black_clip(path: Path, frames: int) -> Path:
    """An all-black H.264 video (``HangingSpec`` hangs on it)."""
    return write_video(path, np.zeros((frames, SIZE * 2, SIZE * 2, 3), np.uint8), fps=8.0)


def build_tiny_dying_once(weights: str | None = None, num_classes: int | None = None) -> tuple[nn.Module, InputSpec]:
    """``build_tiny`` whose process is killed (``os._exit``) in the middle of its first forward
    pass after ``$TINY_DIE_ONCE`` names a file that does not exist yet (it is created first, so
    only one process ever dies): a Ray actor killed mid-video."""
    import os

    model, spec = build_tiny(weights, num_classes)
    marker = os.environ.get("TINY_DIE_ONCE")

    def die_once(module: nn.Module, args: object) -> None:
        if marker and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os._exit(137)

    model.features.register_forward_pre_hook(die_once)
    return model, spec
