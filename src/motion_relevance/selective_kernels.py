"""Fused CPU kernels for the selective step, in plain Numba loops; used by ``selective_relevance``.

``selective.py`` imports this module (and with it Numba) only when the fused path is first
used. The eager PyTorch version there makes about twenty passes over memory (channel sum,
three separable filters, abs, mean, norm, compare, multiply, two L1 sums); here each clip takes
two passes:

1. per frame: channel sum, ``[1, 2, 1]`` in height then in width (a ring of three smoothed
   frames), ``D[t] = S[t-1] - S[t+1]`` (or its magnitude) written out, and the frame's sum and
   centred sum of squares of ``D``, combined into the clip's std (Chan et al.);
2. per frame: ``mask = D > threshold``, ``motion = R * mask``, ``sum|R|`` and ``sum|motion|``.

When the clips divide evenly among the threads, each thread takes whole clips through both
passes (one parallel region, and a clip's relevance is still in cache for pass 2). Otherwise
(a single clip, say) the frames are shared out instead: pass 1 over chunks of frames, then
pass 2 over frames, each its own parallel region.

The filters add in exactly the order of the eager version, so ``D`` is bit-identical to it.
Every array is allocated here, or checked against the relevance's shape before a parallel loop
(an exception raised inside one would be lost); Numba itself does not check indices.
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
    """The selective step of a non-empty 5-D float32/float64 CPU tensor ``rel``."""
    global _launched_in
    if rel.ndim != 5 or rel.numel() == 0 or rel.device.type != "cpu" or rel.dtype not in _DTYPES:
        raise ValueError(
            f"the fused kernels need a non-empty 5-D float CPU tensor, got {rel.dtype} {tuple(rel.shape)}"
        )
    r = rel.detach().contiguous().numpy()
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    info = np.finfo(r.dtype)
    # below this std the squares of D may have underflowed: the moments' error, up to
    # count * tiny, is no longer below eps * count * std**2
    smallest = float(np.sqrt(info.tiny / info.eps))
    torch_threads = torch.get_num_threads()
    with _lock:
        _launched_in = os.getpid()
        numba.set_num_threads(threads)
        *arrays, finite = _selective(r, float(sigma), replicate, absolute, threads, r.dtype.type(0), smallest)
    if torch.get_num_threads() != torch_threads:
        # starting Numba's OpenMP pool resets the process-wide OpenMP thread count that torch reads:
        # a model limited to one thread (batch --threads, a decode worker beside it) would get all
        torch.set_num_threads(torch_threads)
    return Split(*(torch.from_numpy(a) for a in arrays), bool(finite))


@njit(cache=True)
def _selective(r, sigma, replicate, absolute, threads, zero, smallest):  # pragma: no cover - compiled
    """Both passes over every clip. Returns motion, mask, ``D``, and per clip the threshold,
    the motion share (0 where the relevance is all zero) and ``sum|R|``, and whether every sum
    and threshold is finite."""
    n_clips, _, frames, height, width = r.shape
    motion = np.empty_like(r)
    mask = np.empty((n_clips, 1, frames, height, width), np.bool_)
    d = np.empty((n_clips, 1, frames, height, width), r.dtype)
    threshold = np.empty(n_clips, r.dtype)
    kept = np.empty(n_clips)
    total = np.empty(n_clips)
    if n_clips % threads == 0:
        _by_clip(r, d, mask, motion, threshold, kept, total, sigma, replicate, absolute, zero, smallest)
    else:
        _by_frame(r, d, mask, motion, threshold, kept, total, sigma, replicate, absolute, zero, smallest, threads)
    share = np.zeros(n_clips, r.dtype)
    finite = True
    for n in range(n_clips):
        if total[n] > 0:
            share[n] = kept[n] / total[n]
        finite = finite and np.isfinite(total[n]) and np.isfinite(threshold[n])
    return motion, mask, d, threshold, share, total, finite


@njit(cache=True)
def _check(r, d, mask, motion, threshold, kept, total):  # pragma: no cover - compiled
    """Refuse outputs that the loops, which index them by the relevance's shape, would overrun."""
    n_clips, _, frames, height, width = r.shape
    one_channel = (n_clips, 1, frames, height, width)
    if d.shape != one_channel or mask.shape != one_channel or motion.shape != r.shape:
        raise ValueError("selective kernels: D and the mask must be (N, 1, T, H, W), motion like R")
    if threshold.shape[0] != n_clips or kept.shape[0] != n_clips or total.shape[0] != n_clips:
        raise ValueError("selective kernels: one threshold and one sum per clip")


@njit(parallel=True, cache=True)
def _by_clip(r, d, mask, motion, threshold, kept, total, sigma, replicate, absolute, zero, smallest):  # pragma: no cover
    """Both passes, whole clips per task, in one parallel region."""
    _check(r, d, mask, motion, threshold, kept, total)
    frames = r.shape[2]
    for n in prange(r.shape[0]):
        frame_sum = np.empty(frames)
        frame_m2 = np.empty(frames)
        _clip_derivative(r, d, n, 0, frames, replicate, absolute, frame_sum, frame_m2, zero)
        threshold[n] = _clip_threshold(d[n], frame_sum, frame_m2, sigma, smallest)
        kept[n] = 0.0
        total[n] = 0.0
        for t in range(frames):
            k, a = _mask_frame(r, d, n, t, threshold[n], mask, motion, zero)
            kept[n] += k
            total[n] += a


@njit(cache=True)
def _by_frame(r, d, mask, motion, threshold, kept, total, sigma, replicate, absolute, zero, smallest, threads):  # pragma: no cover
    """Both passes with the frames shared out: for fewer clips than threads, or uneven counts."""
    _check(r, d, mask, motion, threshold, kept, total)
    n_clips, frames = r.shape[0], r.shape[2]
    chunks = min((threads + n_clips - 1) // n_clips, frames)  # enough tasks for every thread
    frame_sum = np.empty(n_clips * frames)
    frame_m2 = np.empty(n_clips * frames)
    _derivative_by_chunk(r, d, chunks, replicate, absolute, frame_sum, frame_m2, zero)
    for n in range(n_clips):
        at = slice(n * frames, (n + 1) * frames)
        threshold[n] = _clip_threshold(d[n], frame_sum[at], frame_m2[at], sigma, smallest)
    kept_f = np.empty(n_clips * frames)
    total_f = np.empty(n_clips * frames)
    _mask_by_frame(r, d, threshold, mask, motion, kept_f, total_f, zero)
    for n in range(n_clips):
        kept[n] = kept_f[n * frames : (n + 1) * frames].sum()
        total[n] = total_f[n * frames : (n + 1) * frames].sum()


@njit(parallel=True, cache=True)
def _derivative_by_chunk(r, d, chunks, replicate, absolute, frame_sum, frame_m2, zero):  # pragma: no cover
    """Pass 1 over every clip, split into ``chunks`` chunks of frames per clip."""
    n_clips, _, frames, height, width = r.shape
    if d.shape != (n_clips, 1, frames, height, width) or chunks < 1:
        raise ValueError("selective kernels: D must be (N, 1, T, H, W), chunks >= 1")
    if frame_sum.shape[0] != n_clips * frames or frame_m2.shape[0] != n_clips * frames:
        raise ValueError("selective kernels: one moment per frame")
    length = (frames + chunks - 1) // chunks
    for task in prange(n_clips * chunks):
        n = task // chunks
        t0 = (task - n * chunks) * length
        t1 = min(t0 + length, frames)
        at = slice(n * frames, (n + 1) * frames)
        _clip_derivative(r, d, n, t0, t1, replicate, absolute, frame_sum[at], frame_m2[at], zero)


@njit(parallel=True, cache=True)
def _mask_by_frame(r, d, threshold, mask, motion, kept, total, zero):  # pragma: no cover - compiled
    """Pass 2 over every frame of every clip; ``kept`` and ``total`` get one sum per frame."""
    n_clips, _, frames = r.shape[:3]
    _check(r, d, mask, motion, threshold, threshold, threshold)
    if kept.shape[0] != n_clips * frames or total.shape[0] != n_clips * frames:
        raise ValueError("selective kernels: one sum per frame")
    for f in prange(n_clips * frames):
        n = f // frames
        kept[f], total[f] = _mask_frame(r, d, n, f - n * frames, threshold[n], mask, motion, zero)


# ------------------------------------------------------------------------------------------------
# the work itself: called by the functions above, inside their parallel loops, with arrays they
# allocated or checked (an exception raised here would be lost, so nothing is checked again)
# ------------------------------------------------------------------------------------------------


@njit(cache=True)
def _clip_derivative(r, d, n, t0, t1, replicate, absolute, frame_sum, frame_m2, zero):  # pragma: no cover
    """``D`` of frames ``[t0, t1)`` of clip ``n``, with each frame's sum and centred sum of
    squares (indexed by frame). Smooths the frames it needs itself, each once."""
    _, _, frames, height, width = r.shape
    p_count = height * width
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
        frame_sum[t], frame_m2[t] = _difference_and_moments(
            before, after, d[n, 0, t].reshape(p_count), absolute, zero
        )


@njit(cache=True, inline="always")
def _edge_121(a, b, replicate):  # pragma: no cover - compiled
    """``[1, 2, 1]`` at an edge voxel ``a`` with inner neighbour ``b``, in the eager order."""
    return (b + a) + (a + a) if replicate else b + (a + a)


@njit(cache=True)
def _smooth_frame(r, n, u, e, v, out, replicate):  # pragma: no cover - compiled
    """``out = [1,2,1]_W * ([1,2,1]_H * sum_c r[n, :, u])``, adding in the eager order.

    ``e`` and ``v`` are scratch planes shaped ``(H, W)`` like ``out``.
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
    the variance accurate when the values sit far from zero.
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


@njit(cache=True)
def _clip_threshold(d, frame_sum, frame_m2, sigma, smallest):  # pragma: no cover - compiled
    """``sigma * std(d)`` of one clip's ``D``, from its per-frame moments (Chan et al.: the
    within-frame plus the between-frame parts). Below ``smallest`` the squares may have
    underflowed: the std is then taken again from ``D``, scaled (``_scaled_std``)."""
    frames = d.shape[1]
    p_count = d.shape[2] * d.shape[3]
    count = frames * p_count
    mean = frame_sum.sum() / count
    m2 = 0.0
    for t in range(frames):
        dev = frame_sum[t] / p_count - mean
        m2 += frame_m2[t] + p_count * dev * dev
    std = np.sqrt(m2 / (count - 1)) if count > 1 else 0.0
    if std < smallest:
        std = _scaled_std(d.reshape(count))
    return sigma * std


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


@njit(cache=True, fastmath=_REDUCE)
def _mask_frame(r, d, n, t, th, mask, motion, zero):  # pragma: no cover - compiled
    """Mask and motion part of frame ``t`` of clip ``n``; returns ``sum|motion|``, ``sum|R|``."""
    c_count, height, width = r.shape[1], r.shape[3], r.shape[4]
    p_count = height * width
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
        return np.float64(k), np.float64(a)
    for p in range(p_count):
        mm[p] = dd[p] > th
    kept = 0.0
    total = 0.0
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
        kept += k
        total += a
    return kept, total


__all__ = ["Split", "split", "usable_in_this_process"]
