"""Relevance and motion maps of a batch run, in a chunked, compressed Zarr store at float16.

``STORE/maps.zarr`` holds one group per unit (named by the unit key, see ``VideoEntry.key``;
its attributes give ``row``, ``video``, ``label`` and the clips' ``start_frames``) with one
sub-group per method::

    maps.zarr/<key>/<method>/relevance   float16 (N, C, T, H, W), one chunk per clip, zstd
    maps.zarr/<key>/<method>/motion      float16 (N, C, T, H, W)
    maps.zarr/<key>/<method>/scale       float32 (N,)

float16 keeps ~3 significant digits but has a narrow range, and raw relevance can be tiny
(gradients ~1e-8) or large (LRP on big logits), so every clip is divided by its largest
``|relevance|`` before the cast and that factor is kept in ``scale``:
``relevance = maps[...] * scale[:, None, None, None, None]`` (``read_maps`` does it).

A unit's group is written under ``STORE/tmp`` and renamed into ``maps.zarr`` when complete, before
the unit's rows are committed, so a crash never leaves a half-written group behind a committed
unit.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion_relevance.errors import DependencyError, OutputError

#: Blosc/zstd with byte shuffle: good ratios on smooth float16 maps at little CPU cost.
_CLEVEL = 5


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:  # pragma: no cover - zarr is a core dependency
        raise DependencyError("--save-maps needs zarr>=3; install it with `pip install 'zarr>=3'`") from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise DependencyError(f"--save-maps needs zarr>=3, found {zarr.__version__}; upgrade it with `pip install -U zarr`")
    return zarr


def _compressor() -> Any:
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=_CLEVEL, shuffle="shuffle")


def init_maps(root: Path) -> None:
    """Create the root group of the maps store (no-op when it exists)."""
    zarr = _zarr()
    zarr.open_group(str(root), mode="a")


class MapWriter:
    """Collects one unit's maps clip batch by clip batch in a temporary group."""

    def __init__(self, tmp_root: Path, attrs: dict[str, Any]) -> None:
        self._zarr = _zarr()
        self.tmp = tmp_root / f"{uuid.uuid4().hex}.zarr"
        try:
            self.group = self._zarr.open_group(str(self.tmp), mode="w")
            self.group.attrs.update(attrs)
        except OSError as exc:
            raise OutputError(f"cannot write maps under {tmp_root}: {exc.strerror or exc}; check the store's folder") from None
        self._arrays: dict[str, dict[str, Any]] = {}

    def append(self, method: str, relevance: torch.Tensor, motion: torch.Tensor) -> None:
        """Add clips ``(n, C, T, H, W)`` of ``method``; maps are scaled per clip to float16."""
        try:
            self._append(method, relevance, motion)
        except OSError as exc:
            raise OutputError(f"cannot write maps under {self.tmp}: {exc.strerror or exc}; free disk space or choose another --out") from None

    def _append(self, method: str, relevance: torch.Tensor, motion: torch.Tensor) -> None:
        rel = relevance.detach().float().cpu().numpy()
        mot = motion.detach().float().cpu().numpy()
        scale = np.abs(rel).reshape(rel.shape[0], -1).max(axis=1).astype(np.float32)
        scale[~(scale > 0)] = 1.0
        shape = (-1,) + (1,) * (rel.ndim - 1)
        data = {
            "relevance": (rel / scale.reshape(shape)).astype(np.float16),
            "motion": (mot / scale.reshape(shape)).astype(np.float16),
            "scale": scale,
        }
        arrays = self._arrays.get(method)
        if arrays is None:
            sub = self.group.require_group(method)
            arrays = {}
            for name, values in data.items():
                chunks = (1, *values.shape[1:]) if values.ndim > 1 else (4096,)
                arrays[name] = sub.create_array(
                    name,
                    shape=values.shape,
                    chunks=chunks,
                    dtype=values.dtype,
                    compressors=_compressor(),
                )
                arrays[name][...] = values
            self._arrays[method] = arrays
            return
        for name, values in data.items():
            arrays[name].append(values, axis=0)

    def drop(self, method: str) -> None:
        """Forget a method's maps (it failed part way)."""
        self._arrays.pop(method, None)
        if method in self.group:
            del self.group[method]

    def commit(self, dest: Path, start_frames: Sequence[int]) -> None:
        """Move the finished group to ``dest`` (replacing a leftover of an interrupted run)."""
        try:
            self.group.attrs["start_frames"] = [int(s) for s in start_frames]
            self.group.attrs["methods"] = list(self._arrays)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(self.tmp, dest)
        except OSError as exc:
            raise OutputError(f"cannot move maps into {dest}: {exc.strerror}; check the store's disk") from None

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def read_maps(store: str | os.PathLike[str], key: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """``(relevance, motion)`` float32 ``(N, C, T, H, W)`` of one unit and method, rescaled."""
    zarr = _zarr()
    root = Path(store) / "maps.zarr"
    try:
        group = zarr.open_group(str(root / key), mode="r")
        sub = group[method]
    except (FileNotFoundError, KeyError):
        raise OutputError(f"no maps for unit {key!r} and method {method!r} in {root}; run the batch with --save-maps") from None
    scale = np.asarray(sub["scale"][...], dtype=np.float32).reshape(-1, 1, 1, 1, 1)
    relevance = np.asarray(sub["relevance"][...], dtype=np.float32) * scale
    motion = np.asarray(sub["motion"][...], dtype=np.float32) * scale
    return relevance, motion


__all__ = ["MapWriter", "init_maps", "read_maps"]
