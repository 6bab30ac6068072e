"""Fused CPU kernels for the selective step (Numba), used by ``selective_relevance``.

The eager PyTorch version in ``selective.py`` makes about twenty passes over memory (channel
sum, three separable filters, abs, mean, norm, compare, multiply, two L1 sums). Here the same
algorithm takes two parallel passes over each block of clips (up to 32 MB of relevance, so
that the second pass can find it still in cache):

1. per clip and chunk of frames: channel sum, ``[1, 2, 1]`` in height then in width (kept in a
   ring of three frames), ``D[t] = S[t-1] - S[t+1]`` written out, and per-frame sums and
   centred sums of squares of ``D`` (combined into the per-clip std with Chan's formula);
2. per frame: ``mask = D > threshold``, ``motion = R * mask``, ``sum|R|`` and ``sum|motion|``.

The filters add in exactly the order of the eager version, so ``D`` is bit-identical to it; the
statistics are accumulated per frame and combined in float64. Used for float32/float64 CPU
tensors that do not require grad; everything else (CUDA, half precision, autograd) takes the
eager path. ``MOTION_RELEVANCE_SELECTIVE_KERNEL=torch`` forces the eager path.
"""

from __future__ import annotations

import os
import threading
from typing import NamedTuple

import numpy as np
import torch

try:  # numba is a dependency; without it (or on an odd platform) the eager path is used
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

ENV_VAR = "MOTION_RELEVANCE_SELECTIVE_KERNEL"
_DTYPES = (torch.float32, torch.float64)
# Reassociation lets the reductions vectorise; only the sums use it, never the filters.
_REDUCE = {"reassoc", "nsz"}
# clips per block: up to an L3 cache of relevance (pass 2 re-reads it), and enough work per
# parallel launch that starting the threads stays cheap
_BLOCK_BYTES = 32 << 20
_lock = threading.Lock()  # numba's workqueue layer must not be entered by two threads at once
_launched_in: int | None = None  # the process that started numba's thread pool


class Split(NamedTuple):
    """What the fused kernels return, as torch tensors (``N`` clips)."""

    motion: torch.Tensor  # like the relevance
    mask: torch.Tensor  # bool (N, 1, T, H, W)
    temporal_gradient: torch.Tensor  # (N, 1, T, H, W), the relevance's dtype
    threshold: torch.Tensor  # (N,), the relevance's dtype
    motion_share: torch.Tensor  # (N,), the relevance's dtype; 0 where the relevance is all zero
    total: torch.Tensor  # (N,) float64, sum|relevance|
    finite: bool  # every total and threshold is finite (else the input has NaN/Inf or overflows)


def usable(rel: torch.Tensor) -> bool:
    """Whether the fused kernels can compute the selective step of ``rel`` (5-D, validated)."""
    if numba is None or os.environ.get(ENV_VAR, "numba") == "torch":
        return False
    if rel.device.type != "cpu" or rel.dtype not in _DTYPES or rel.requires_grad:
        return False
    # GNU OpenMP, numba's usual threading layer, does not survive a fork once started
    return _launched_in is None or _launched_in == os.getpid()


def split(rel: torch.Tensor, sigma: float, replicate: bool, absolute: bool) -> Split:
    """Run the fused selective step on a validated 5-D CPU tensor (see ``usable``)."""
    global _launched_in
    r = rel.detach().contiguous().numpy()
    n, _, t, h, w = r.shape
    # NumPy allocates the outputs: it asks the kernel for transparent huge pages on large
    # arrays, which makes writing (and later reading) them measurably faster than torch.empty
    motion = np.empty_like(r)
    mask = np.empty((n, 1, t, h, w), dtype=np.bool_)
    d = np.empty((n, 1, t, h, w), dtype=r.dtype)
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    block = max(1, _BLOCK_BYTES // (rel[0].numel() * rel.element_size()))
    zero = r.dtype.type(0)  # a scalar of the relevance's dtype for the sums
    with _lock:
        _launched_in = os.getpid()
        numba.set_num_threads(threads)
        threshold, kept, total = _selective(
            r, d, mask, motion, float(sigma), replicate, absolute, threads, block, zero
        )
    # tiny (N,) arrays: NumPy is much cheaper here than a handful of torch calls
    finite = bool(np.isfinite(total).all() and np.isfinite(threshold).all())
    share = np.divide(kept, total, out=np.zeros_like(kept), where=total > 0).astype(threshold.dtype)
    tensors = (motion, mask, d, threshold, share, total)
    return Split(*(torch.from_numpy(a) for a in tensors), finite)


if numba is not None:

    @njit(cache=True, inline="always")
    def _edge_121(a, b, replicate):  # pragma: no cover - compiled
        """``[1, 2, 1]`` at an edge voxel ``a`` with inner neighbour ``b``, in the eager order."""
        return (b + a) + (a + a) if replicate else b + (a + a)

    @njit(cache=True)
    def _smooth_frame(r, n, t, out, e, vs, replicate):  # pragma: no cover - compiled
        """``out = [1,2,1]_W * ([1,2,1]_H * sum_c r[n, :, t])`` on flat planes, eager's order."""
        c_count, height, width = r.shape[1], r.shape[3], r.shape[4]
        p_count = height * width
        if c_count == 3:
            r0 = r[n, 0, t].reshape(p_count)
            r1 = r[n, 1, t].reshape(p_count)
            r2 = r[n, 2, t].reshape(p_count)
            for p in range(p_count):
                e[p] = (r0[p] + r1[p]) + r2[p]
        else:
            r0 = r[n, 0, t].reshape(p_count)
            for p in range(p_count):
                e[p] = r0[p]
            for c in range(1, c_count):
                rc = r[n, c, t].reshape(p_count)
                for p in range(p_count):
                    e[p] += rc[p]
        # [1, 2, 1] along H: rows are `width` apart; 2x is written x + x (exact, same dtype)
        if height == 1:
            k = 4.0 if replicate else 2.0
            for p in range(width):
                vs[p] = e[p] * k
        else:
            up = e[: p_count - 2 * width]
            mid = e[width : p_count - width]
            down = e[2 * width :]
            o = vs[width : p_count - width]
            for p in range(p_count - 2 * width):
                o[p] = (up[p] + down[p]) + (mid[p] + mid[p])
            for edge in range(2):
                h0 = 0 if edge == 0 else height - 1
                h1 = 1 if edge == 0 else height - 2
                o = vs[h0 * width : (h0 + 1) * width]
                a = e[h0 * width : (h0 + 1) * width]
                b = e[h1 * width : (h1 + 1) * width]
                for p in range(width):
                    o[p] = _edge_121(a[p], b[p], replicate)
        # [1, 2, 1] along W over the whole flat plane, then the first and last column again
        if width == 1:
            k = 4.0 if replicate else 2.0
            for p in range(p_count):
                out[p] = vs[p] * k
            return
        left = vs[: p_count - 2]
        mid = vs[1 : p_count - 1]
        right = vs[2:]
        o = out[1 : p_count - 1]
        for p in range(p_count - 2):
            o[p] = (left[p] + right[p]) + (mid[p] + mid[p])
        for row in range(height):
            i = row * width
            j = i + width - 1
            out[i] = _edge_121(vs[i], vs[i + 1], replicate)
            out[j] = _edge_121(vs[j], vs[j - 1], replicate)

    @njit(cache=True, fastmath=_REDUCE)
    def _difference_and_moments(a, b, out, absolute, zero):  # pragma: no cover - compiled
        """``out = a - b`` (or ``|a - b|``); returns the sum and centred sum of squares of out.

        One pass over the values shifted by the first one (the shifted-data algorithm), which
        keeps the variance accurate when the values sit far from zero.
        """
        shift = abs(a[0] - b[0]) if absolute else a[0] - b[0]
        s = zero
        q = zero
        for p in range(out.shape[0]):  # the compiler hoists the loop-invariant branch
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
    def _derivative(r, d, chunks, replicate, absolute, frame_sum, frame_m2, work, nothing, zero):  # pragma: no cover
        """Pass 1: ``D`` of every frame, with per-frame sum and centred sum of squares.

        ``work`` holds five frame planes per task (allocated once per call, not per task);
        ``nothing`` is an all-zero plane, the zero padding outside the clip.
        """
        n_clips, _, frames, height, width = r.shape
        p_count = height * width
        length = (frames + chunks - 1) // chunks
        if work.shape[0] < n_clips * chunks or work.shape[2] != p_count or nothing.shape[0] != p_count:
            raise ValueError("selective kernels: workspace too small")  # never unchecked writes
        for task in prange(n_clips * chunks):
            n = task // chunks
            t0 = (task - n * chunks) * length
            t1 = min(t0 + length, frames)
            if t0 >= t1:
                continue
            ring = work[task, :3]  # S of three consecutive frames
            e = work[task, 3]
            vs = work[task, 4]
            last = min(t1, frames - 1)
            for u in range(max(t0 - 1, 0), last + 2):
                if u <= last:
                    _smooth_frame(r, n, u, ring[u % 3], e, vs, replicate)
                t = u - 1  # D[t] = S[t-1] - S[t+1], and S[t+1] = S[u] is now known
                if t < t0 or t >= t1:
                    continue
                if t >= 1:
                    before = ring[(t - 1) % 3]
                elif replicate:
                    before = ring[0]
                else:
                    before = nothing
                if u <= frames - 1:
                    after = ring[u % 3]
                elif replicate:
                    after = ring[(frames - 1) % 3]
                else:
                    after = nothing
                s, m2 = _difference_and_moments(before, after, d[n, 0, t].reshape(p_count), absolute, zero)
                frame_sum[n * frames + t] = s
                frame_m2[n * frames + t] = m2

    @njit(parallel=True, cache=True, fastmath=_REDUCE)
    def _apply_mask(r, d, threshold, mask, motion, kept, total, zero):  # pragma: no cover
        """Pass 2: mask, motion part and the two L1 sums of every frame."""
        n_clips, c_count, frames, height, width = r.shape
        p_count = height * width
        for f in prange(n_clips * frames):
            n = f // frames
            t = f - n * frames
            th = threshold[n]
            dd = d[n, 0, t].reshape(p_count)
            mm = mask[n, 0, t].reshape(p_count)
            if c_count == 3:  # RGB relevance: one sweep over the three channels
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
                    v = src[p]
                    av = abs(v)
                    keep = dd[p] > th
                    dst[p] = v if keep else zero
                    k += av if keep else zero
                    a += av
                kept_f += k
                total_f += a
            kept[f] = kept_f
            total[f] = total_f

    @njit(cache=True)
    def _selective(r, d, mask, motion, sigma, replicate, absolute, threads, block, zero):  # pragma: no cover
        """Both passes, ``block`` clips at a time; returns per-clip threshold, ``sum|motion|``, ``sum|R|``.

        Finishing a few clips before starting the next ones keeps the relevance read by the
        second pass in cache.
        """
        n_clips, _, frames, height, width = r.shape
        p_count = height * width
        count = frames * p_count
        threshold = np.empty(n_clips, dtype=r.dtype)
        kept = np.zeros(n_clips)
        total = np.zeros(n_clips)
        work = np.empty((threads + block, 5, p_count), dtype=d.dtype)  # enough for any block
        nothing = np.zeros(p_count, dtype=d.dtype)
        for b0 in range(0, n_clips, block):
            b1 = min(b0 + block, n_clips)
            nb = b1 - b0
            frame_sum = np.empty(nb * frames)
            frame_m2 = np.empty(nb * frames)
            chunks = (threads + nb - 1) // nb  # split the frames so that every thread has work
            _derivative(
                r[b0:b1], d[b0:b1], chunks, replicate, absolute, frame_sum, frame_m2, work, nothing, zero
            )
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
                threshold[b0 + i] = sigma * std
            kept_f = np.empty(nb * frames)
            total_f = np.empty(nb * frames)
            _apply_mask(
                r[b0:b1], d[b0:b1], threshold[b0:b1], mask[b0:b1], motion[b0:b1], kept_f, total_f, zero
            )
            for f in range(nb * frames):
                kept[b0 + f // frames] += kept_f[f]
                total[b0 + f // frames] += total_f[f]
        return threshold, kept, total


__all__ = ["ENV_VAR", "Split", "split", "usable"]
