"""Fused CPU kernels for the selective step, in plain Numba loops; used by ``selective_relevance``.

``selective.py`` imports this module (and with it Numba) only when the fused path is first
used. The eager PyTorch version there makes about twenty passes over memory (channel sum,
three separable filters, abs, mean, norm, compare, multiply, two L1 sums); here the same
algorithm takes two parallel passes over each block of clips:

1. per clip and chunk of frames: channel sum, ``[1, 2, 1]`` in height then in width (a ring of
   three smoothed frames), ``D[t] = S[t-1] - S[t+1]`` (or its magnitude) written out, and
   per-frame sums and centred sums of squares of ``D``, combined into each clip's std;
2. per frame: ``mask = D > threshold``, ``motion = R * mask``, ``sum|R|`` and ``sum|motion|``.

The filters add in exactly the order of the eager version, so ``D`` is bit-identical to it.
Every array the kernels index is allocated here or checked against the relevance's shape
before any loop runs (Numba does not check indices).
"""

from __future__ import annotations

import math
import os
import threading
from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import njit, prange

# Reassociation lets the reductions vectorise; only the sums use it, never the filters.
_REDUCE = {"reassoc", "nsz"}
# Clips per block: about an L3 cache of relevance, which pass 2 reads again.
_BLOCK_BYTES = 32 << 20
_DTYPES = (torch.float32, torch.float64)
_lock = threading.Lock()  # Numba's workqueue threading layer must not be entered twice at once
_launched_in: int | None = None  # the process that started Numba's thread pool


class Split(NamedTuple):
    """What the fused kernels return, as torch tensors (``N`` clips)."""

    motion: torch.Tensor  # like the relevance
    mask: torch.Tensor  # bool (N, 1, T, H, W)
    temporal_gradient: torch.Tensor  # (N, 1, T, H, W), the relevance's dtype
    threshold: torch.Tensor  # (N,), the relevance's dtype
    motion_share: torch.Tensor  # (N,), the relevance's dtype; 0 where the relevance is all zero
    total: torch.Tensor  # (N,) float64, sum|relevance|
    finite: bool  # every total and threshold is finite (else the input has NaN/Inf or overflows)


def usable_in_this_process() -> bool:
    """False in a forked child of a process that started Numba's thread pool (GNU OpenMP, its
    usual threading layer, does not survive a fork)."""
    return _launched_in is None or _launched_in == os.getpid()


def split(rel: torch.Tensor, sigma: float, replicate: bool, absolute: bool) -> Split:
    """The selective step of a 5-D float32/float64 CPU tensor ``rel`` (validated by the caller)."""
    global _launched_in
    if rel.ndim != 5 or rel.numel() == 0 or rel.device.type != "cpu" or rel.dtype not in _DTYPES:
        raise ValueError(f"the fused kernels need a non-empty 5-D float CPU tensor, got {rel.dtype} {tuple(rel.shape)}")
    r = rel.detach().contiguous().numpy()
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    block = max(1, _BLOCK_BYTES // (r[0].nbytes or 1))
    info = np.finfo(r.dtype)
    # below this std the squares of D may have underflowed: the moments' error, up to
    # count * tiny, is no longer below eps * count * std**2
    smallest = float(np.sqrt(info.tiny / info.eps))
    with _lock:
        _launched_in = os.getpid()
        numba.set_num_threads(threads)
        out = _selective(r, float(sigma), replicate, absolute, threads, block, r.dtype.type(0), smallest)
    *arrays, finite = out
    return Split(*(torch.from_numpy(a) for a in arrays), bool(finite))


@njit(cache=True)
def _require(ok, what):  # pragma: no cover - compiled
    """Refuse arrays whose shapes the loops below would not stay inside."""
    if not ok:
        raise ValueError(what)


@njit(cache=True, inline="always")
def _edge_121(a, b, replicate):  # pragma: no cover - compiled
    """``[1, 2, 1]`` at an edge voxel ``a`` with inner neighbour ``b``, in the eager order."""
    return (b + a) + (a + a) if replicate else b + (a + a)


@njit(cache=True)
def _smooth_frame(r, n, u, e, v, out, replicate):  # pragma: no cover - compiled
    """``out = [1,2,1]_W * ([1,2,1]_H * sum_c r[n, :, u])``, adding in the eager order.

    ``e`` and ``v`` are scratch planes shaped ``(H, W)`` like ``out``; called only by
    ``_derivative``, with planes it allocates and frames of its clip (an exception raised inside
    its parallel loop would be lost, so nothing is checked here).
    """
    c_count, height, width = r.shape[1], r.shape[3], r.shape[4]
    # channel after channel, as the eager _channel_sum adds them
    if c_count == 3:
        for h in range(height):
            for w in range(width):
                e[h, w] = (r[n, 0, u, h, w] + r[n, 1, u, h, w]) + r[n, 2, u, h, w]
    else:
        for h in range(height):
            for w in range(width):
                e[h, w] = r[n, 0, u, h, w]
        for c in range(1, c_count):
            for h in range(height):
                for w in range(width):
                    e[h, w] += r[n, c, u, h, w]
    # [1, 2, 1] along H; 2x is written x + x (exact, same dtype)
    if height == 1:
        for w in range(width):
            v[0, w] = (e[0, w] + e[0, w]) + (e[0, w] + e[0, w]) if replicate else e[0, w] + e[0, w]
    else:
        for h in range(1, height - 1):
            for w in range(width):
                v[h, w] = (e[h - 1, w] + e[h + 1, w]) + (e[h, w] + e[h, w])
        for w in range(width):
            v[0, w] = _edge_121(e[0, w], e[1, w], replicate)
            v[height - 1, w] = _edge_121(e[height - 1, w], e[height - 2, w], replicate)
    # [1, 2, 1] along W
    for h in range(height):
        if width == 1:
            out[h, 0] = (v[h, 0] + v[h, 0]) + (v[h, 0] + v[h, 0]) if replicate else v[h, 0] + v[h, 0]
            continue
        for w in range(1, width - 1):
            out[h, w] = (v[h, w - 1] + v[h, w + 1]) + (v[h, w] + v[h, w])
        out[h, 0] = _edge_121(v[h, 0], v[h, 1], replicate)
        out[h, width - 1] = _edge_121(v[h, width - 1], v[h, width - 2], replicate)


@njit(cache=True, fastmath=_REDUCE)
def _difference_and_moments(a, b, out, absolute, zero):  # pragma: no cover - compiled
    """``out = a - b`` (or ``|a - b|``) on flat planes; returns its sum and centred sum of squares.

    One pass over the values shifted by the first one (the shifted-data algorithm), which keeps
    the variance accurate when the values sit far from zero. Called only by ``_derivative``, on
    planes of one size.
    """
    shift = abs(a[0] - b[0]) if absolute else a[0] - b[0]
    s = zero
    q = zero
    for p in range(out.shape[0]):
        x = abs(a[p] - b[p]) if absolute else a[p] - b[p]
        out[p] = x
        y = x - shift
        s += y
        q += y * y
    count = out.shape[0]
    s64 = np.float64(s)
    m2 = max(np.float64(q) - s64 * s64 / count, 0.0)
    return s64 + np.float64(shift) * count, m2


@njit(parallel=True, cache=True)
def _derivative(r, d, chunks, replicate, absolute, frame_sum, frame_m2, zero):  # pragma: no cover
    """Pass 1: ``D`` of every frame of ``r`` into ``d``, with per-frame sum and centred sum of
    squares. Each task takes one clip's chunk of frames and smooths the frames it needs itself."""
    n_clips, _, frames, height, width = r.shape
    p_count = height * width
    _require(d.shape == (n_clips, 1, frames, height, width), "selective kernels: D must be (N, 1, T, H, W)")
    _require(frame_sum.shape[0] == n_clips * frames and frame_m2.shape[0] == n_clips * frames, "selective kernels: one moment per frame")
    _require(chunks >= 1, "selective kernels: chunks >= 1")
    length = (frames + chunks - 1) // chunks
    for task in prange(n_clips * chunks):
        n = task // chunks
        t0 = (task - n * chunks) * length
        t1 = min(t0 + length, frames)
        ring = np.empty((3, height, width), r.dtype)  # S of three consecutive frames
        e = np.empty((height, width), r.dtype)
        v = np.empty((height, width), r.dtype)
        nothing = np.zeros(p_count, r.dtype)  # zero padding outside the clip
        u_next = max(t0 - 1, 0)  # the next frame to smooth
        for t in range(t0, t1):
            while u_next <= min(t + 1, frames - 1):
                _smooth_frame(r, n, u_next, e, v, ring[u_next % 3], replicate)
                u_next += 1
            if frames == 1:  # both neighbours are the padding: they cancel under either rule
                before = nothing
                after = nothing
            else:
                if t >= 1:
                    before = ring[(t - 1) % 3].reshape(p_count)
                elif replicate:
                    before = ring[0].reshape(p_count)
                else:
                    before = nothing
                if t + 1 < frames:
                    after = ring[(t + 1) % 3].reshape(p_count)
                elif replicate:
                    after = ring[t % 3].reshape(p_count)
                else:
                    after = nothing
            s, m2 = _difference_and_moments(before, after, d[n, 0, t].reshape(p_count), absolute, zero)
            frame_sum[n * frames + t] = s
            frame_m2[n * frames + t] = m2


@njit(parallel=True, cache=True, fastmath=_REDUCE)
def _apply_mask(r, d, threshold, mask, motion, kept, total, zero):  # pragma: no cover - compiled
    """Pass 2: mask, motion part and the two L1 sums (float64, per frame) of every frame."""
    n_clips, c_count, frames, height, width = r.shape
    p_count = height * width
    flat = (n_clips, 1, frames, height, width)
    _require(d.shape == flat and mask.shape == flat and motion.shape == r.shape, "selective kernels: outputs must match R")
    _require(threshold.shape[0] == n_clips and kept.shape[0] == n_clips * frames and total.shape[0] == n_clips * frames, "selective kernels: one sum per frame")
    for f in prange(n_clips * frames):
        n = f // frames
        t = f - n * frames
        th = threshold[n]
        dd = d[n, 0, t].reshape(p_count)
        mm = mask[n, 0, t].reshape(p_count)
        if c_count == 3:  # RGB relevance: the three channels in one sweep
            r0 = r[n, 0, t].reshape(p_count)
            r1 = r[n, 1, t].reshape(p_count)
            r2 = r[n, 2, t].reshape(p_count)
            o0 = motion[n, 0, t].reshape(p_count)
            o1 = motion[n, 1, t].reshape(p_count)
            o2 = motion[n, 2, t].reshape(p_count)
            k = zero
            a = zero
            for p in range(p_count):
                keep = dd[p] > th
                mm[p] = keep
                v0 = r0[p]
                v1 = r1[p]
                v2 = r2[p]
                m = (abs(v0) + abs(v1)) + abs(v2)
                a += m
                k += m if keep else zero
                o0[p] = v0 if keep else zero
                o1[p] = v1 if keep else zero
                o2[p] = v2 if keep else zero
            kept[f] = k
            total[f] = a
            continue
        for p in range(p_count):
            mm[p] = dd[p] > th
        kept_f = 0.0
        total_f = 0.0
        for c in range(c_count):
            src = r[n, c, t].reshape(p_count)
            dst = motion[n, c, t].reshape(p_count)
            k = zero
            a = zero
            for p in range(p_count):
                x = src[p]
                keep = dd[p] > th
                dst[p] = x if keep else zero
                ax = abs(x)
                a += ax
                k += ax if keep else zero
            kept_f += k
            total_f += a
        kept[f] = kept_f
        total[f] = total_f


@njit(cache=True)
def _scaled_std(values):  # pragma: no cover - compiled
    """Unbiased std of ``values`` in float64, two-pass, after dividing by the power of two at
    their largest magnitude, so that no square underflows (as the eager ``_per_clip_std``)."""
    count = values.shape[0]
    largest = 0.0
    for x in values:
        largest = max(largest, abs(np.float64(x)))
    if count < 2 or largest == 0.0:
        return 0.0
    if not np.isfinite(largest):
        return np.inf
    scale = math.ldexp(1.0, math.frexp(largest)[1])
    mean = 0.0
    for x in values:
        mean += np.float64(x) / scale
    mean /= count
    m2 = 0.0
    for x in values:
        z = np.float64(x) / scale - mean
        m2 += z * z
    return np.sqrt(m2 / (count - 1)) * scale


@njit(cache=True)
def _selective(r, sigma, replicate, absolute, threads, block, zero, smallest):  # pragma: no cover
    """Both passes, ``block`` clips at a time (pass 2 then finds their relevance in cache).

    Returns motion, mask, ``D``, and per clip the threshold, the motion share (0 where the
    relevance is all zero) and ``sum|R|``, and whether every sum and threshold is finite. A
    clip whose std from the per-frame moments is below ``smallest`` gets it again from ``D``,
    scaled (``_scaled_std``).
    """
    n_clips, _, frames, height, width = r.shape
    p_count = height * width
    count = frames * p_count
    motion = np.empty_like(r)
    mask = np.empty((n_clips, 1, frames, height, width), np.bool_)
    d = np.empty((n_clips, 1, frames, height, width), r.dtype)
    threshold = np.empty(n_clips, r.dtype)
    kept = np.zeros(n_clips)
    total = np.zeros(n_clips)
    for b0 in range(0, n_clips, block):
        b1 = min(b0 + block, n_clips)
        nb = b1 - b0
        frame_sum = np.empty(nb * frames)
        frame_m2 = np.empty(nb * frames)
        chunks = min((threads + nb - 1) // nb, frames)  # split the frames so every thread has work
        _derivative(r[b0:b1], d[b0:b1], chunks, replicate, absolute, frame_sum, frame_m2, zero)
        for i in range(nb):
            s = 0.0
            for t in range(frames):
                s += frame_sum[i * frames + t]
            mean = s / count
            m2 = 0.0
            for t in range(frames):  # Chan et al.: within-frame plus between-frame parts
                dev = frame_sum[i * frames + t] / p_count - mean
                m2 += frame_m2[i * frames + t] + p_count * dev * dev
            std = np.sqrt(m2 / (count - 1)) if count > 1 else 0.0
            if std < smallest:  # the squares may have underflowed: again from D, scaled
                std = _scaled_std(d[b0 + i].reshape(count))
            threshold[b0 + i] = sigma * std
        kept_f = np.empty(nb * frames)
        total_f = np.empty(nb * frames)
        _apply_mask(r[b0:b1], d[b0:b1], threshold[b0:b1], mask[b0:b1], motion[b0:b1], kept_f, total_f, zero)
        for f in range(nb * frames):
            kept[b0 + f // frames] += kept_f[f]
            total[b0 + f // frames] += total_f[f]
    share = np.zeros(n_clips, r.dtype)
    finite = True
    for i in range(n_clips):
        if total[i] > 0:
            share[i] = kept[i] / total[i]
        finite = finite and np.isfinite(total[i]) and np.isfinite(threshold[i])
    return motion, mask, d, threshold, share, total, finite


__all__ = ["Split", "split", "usable_in_this_process"]
