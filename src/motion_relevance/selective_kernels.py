"""Fused CPU kernels for the selective step (Numba), used by ``selective_relevance``.

The eager PyTorch version in ``selective.py`` makes about twenty passes over memory (channel
sum, three separable filters, abs, mean, norm, compare, multiply, two L1 sums). Here the same
algorithm takes two parallel passes over each block of clips (up to 32 MB of relevance):

1. per clip and chunk of frames: channel sum, ``[1, 2, 1]`` in height then in width (kept in a
   ring of three frames), ``D[t] = S[t-1] - S[t+1]`` written out, and per-frame sums and
   centred sums of squares of ``D`` (combined into the per-clip std with Chan's formula);
2. per frame: ``mask = D > threshold``, ``motion = R * mask``, ``sum|R|`` and ``sum|motion|``.

Where a frame's width is a whole number of 64-byte vectors (16 float32 or 8 float64, e.g. 112
or 224), pass 1 is one sweep per frame written as vector code (``_smooth_rows``): channel sums
of three rows at a time in a small ring, the width filter from neighbouring vectors in
registers, ``D`` and its moments in the same loop. Other widths take the plane-by-plane loops.
Pass 2 writes the RGB motion part with non-temporal stores on x86 (``_stream_rgb``): it is not
read again here, and bypassing the cache leaves the relevance and ``D`` in it. The outputs
start on 64-byte boundaries so that these stores cover whole cache lines.

The filters add in exactly the order of the eager version, so ``D`` is bit-identical to it; the
statistics are accumulated per frame and combined in float64. Used for float32/float64 CPU
tensors that do not require grad; everything else (CUDA, half precision, autograd) takes the
eager path. ``MOTION_RELEVANCE_SELECTIVE_KERNEL=torch`` forces the eager path.
"""

from __future__ import annotations

import math
import os
import platform
import threading
from typing import NamedTuple

import numpy as np
import torch

try:  # numba is a dependency; without it (or on an odd platform) the eager path is used
    import numba
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

ENV_VAR = "MOTION_RELEVANCE_SELECTIVE_KERNEL"
_DTYPES = (torch.float32, torch.float64)
# Reassociation lets the reductions vectorise; only the sums use it, never the filters.
_REDUCE = {"reassoc", "nsz"}
# clips per block: up to an L3 cache of relevance (pass 2 re-reads it), and enough work per
# parallel launch that starting the threads stays cheap
_BLOCK_BYTES = 32 << 20
# Bytes per cache line and vector store: outputs start on this boundary, and the motion part
# is written with non-temporal stores of whole lines where the three channels line up with it.
_ALIGN = 64
# Non-temporal stores (which bypass the cache, so that the relevance and D stay in it) are an
# x86 instruction; elsewhere the same aligned stores are ordinary ones.
_X86 = platform.machine().lower() in ("x86_64", "amd64")
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
    motion = _aligned_empty(r.shape, r.dtype)
    mask = _aligned_empty((n, 1, t, h, w), np.bool_)
    d = _aligned_empty((n, 1, t, h, w), r.dtype)
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    block = max(1, _BLOCK_BYTES // (r[0].nbytes or 1))
    work = _aligned_empty((threads + block, 5, h * w), r.dtype)  # enough for any block
    zero = r.dtype.type(0)  # a scalar of the relevance's dtype for the sums
    with _lock:
        _launched_in = os.getpid()
        numba.set_num_threads(threads)
        threshold, share, total, finite = _selective(
            r, d, mask, motion, float(sigma), replicate, absolute, threads, block, work, zero, _smallest_std(r.dtype)
        )
    tensors = (motion, mask, d, threshold, share, total)
    return Split(*(torch.from_numpy(a) for a in tensors), finite)


def _smallest_std(dtype: np.dtype) -> float:
    """Below this std, squares of the derivative in ``dtype`` may have underflowed: the error of
    the per-frame moments, at most ``count * tiny``, is then no longer below ``eps * count * std**2``."""
    info = np.finfo(dtype)
    return float(np.sqrt(info.tiny / info.eps))


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` starting on a 64-byte boundary (NumPy itself gives 16).

    Aligned outputs keep every vector load and store within one cache line, and allow the
    non-temporal stores of the motion part.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    start = -raw.__array_interface__["data"][0] % _ALIGN
    return raw[start : start + nbytes].view(dtype).reshape(shape)


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

    def _vector_of(context, dtype):  # pragma: no cover - runs while compiling
        """LLVM element type, its bytes, lanes per 64-byte vector, and the vector type."""
        item = context.get_value_type(dtype)
        size = 4 if isinstance(item, ir.FloatType) else 8
        lanes = _ALIGN // size
        return item, size, lanes, ir.VectorType(item, lanes)

    def _sum_lanes(builder, vector, lanes):  # pragma: no cover - runs while compiling
        """The lanes of a float vector added one after the other, in float64."""
        f64 = ir.DoubleType()
        total = ir.Constant(f64, 0.0)
        for i in range(lanes):
            lane = builder.extract_element(vector, ir.Constant(ir.IntType(32), i))
            total = builder.fadd(total, lane if isinstance(lane.type, ir.DoubleType) else builder.fpext(lane, f64))
        return total

    @intrinsic
    def _smooth_rows(typingctx, r, n, u, erow, out, before, d, nothing, want, replicate, absolute):  # pragma: no cover
        """``S[u]`` of clip ``n`` into ``out`` and, if ``want``, ``D = before - S[u]`` into ``d``.

        One sweep, for widths that are a whole number of 64-byte vectors: the channel sums of
        three rows at a time stay in ``erow`` (a small ring), the ``[1, 2, 1]`` in height is
        taken from it and the one in width from neighbouring vectors in registers, in exactly
        the eager order. ``nothing`` is a zero row (zero padding). Returns the sum and the sum
        of squares of ``D - shift`` and the shift (``D`` at the first voxel), all float64.
        """
        sig = types.UniTuple(types.float64, 3)(r, n, u, erow, out, before, d, nothing, want, replicate, absolute)

        def codegen(context, builder, signature, args):
            r_ty = signature.args[0]
            item, size, lanes, vec = _vector_of(context, r_ty.dtype)
            bits = ir.VectorType(ir.IntType(size * 8), lanes)
            i32 = ir.IntType(32)
            f64 = ir.DoubleType()
            r_arr = context.make_array(r_ty)(context, builder, args[0])
            erow_p, out_p, before_p, d_p, nothing_p = (
                context.make_array(ty)(context, builder, val).data
                for ty, val in zip(signature.args[3:8], args[3:8], strict=True)
            )
            n_v, u_v = args[1], args[2]
            want_v, replicate_v, absolute_v = args[8:]
            _, c_count, frames, height, width = cgutils.unpack_tuple(builder, r_arr.shape, 5)
            intp = width.type
            plane = builder.mul(height, width)
            vectors = builder.udiv(width, ir.Constant(intp, lanes))
            one = ir.Constant(intp, 1)
            zero_i = ir.Constant(intp, 0)
            zero = ir.Constant(vec, None)
            contract = ("contract",)
            # |x| for "abs", x for "signed": one AND with a mask chosen once
            sign_off = ir.Constant(bits, [(1 << (size * 8 - 1)) - 1] * lanes)
            keep_all = ir.Constant(bits, [(1 << (size * 8)) - 1] * lanes)
            abs_mask = builder.select(absolute_v, sign_off, keep_all)
            clip_first = builder.mul(n_v, c_count)

            def offset_of(row, k):
                return builder.add(builder.mul(row, width), k)

            def load(ptr, offset):
                return builder.load(builder.bitcast(builder.gep(ptr, [offset]), vec.as_pointer()), align=size)

            def store(value, ptr, offset):
                builder.store(value, builder.bitcast(builder.gep(ptr, [offset]), vec.as_pointer()), align=size)

            def lanes_of(a, b, first):  # lanes first .. first + lanes - 1 of a ++ b
                picks = ir.Constant(ir.VectorType(i32, lanes), list(range(first, first + lanes)))
                return builder.shuffle_vector(a, b, picks)

            def splat(a, lane):
                return builder.shuffle_vector(a, a, ir.Constant(ir.VectorType(i32, lanes), [lane] * lanes))

            def row_ptr(row):
                return builder.gep(erow_p, [builder.mul(builder.urem(row, ir.Constant(intp, 3)), width)])

            def channel_plane(c):
                index = builder.add(builder.mul(builder.add(clip_first, c), frames), u_v)
                return builder.gep(r_arr.data, [builder.mul(index, plane)])

            rgb = [channel_plane(ir.Constant(intp, c)) for c in range(3)]  # used only when C == 3
            is_rgb = builder.icmp_unsigned("==", c_count, ir.Constant(intp, 3))

            def fill_row(row):  # erow[row % 3] = sum_c R[n, c, u, row], channel after channel
                slot = row_ptr(row)
                with builder.if_else(is_rgb) as (three, other):
                    with three, cgutils.for_range(builder, vectors) as k_loop:
                        at = builder.mul(k_loop.index, ir.Constant(intp, lanes))
                        offset = offset_of(row, at)
                        total = builder.fadd(load(rgb[0], offset), load(rgb[1], offset))
                        store(builder.fadd(total, load(rgb[2], offset)), slot, at)
                    with other, cgutils.for_range(builder, vectors) as k_loop:
                        at = builder.mul(k_loop.index, ir.Constant(intp, lanes))
                        offset = offset_of(row, at)
                        acc = cgutils.alloca_once_value(builder, zero)
                        with cgutils.for_range(builder, c_count) as c_loop:
                            value = load(channel_plane(c_loop.index), offset)
                            first = builder.icmp_unsigned("==", c_loop.index, zero_i)
                            builder.store(builder.select(first, value, builder.fadd(builder.load(acc), value)), acc)
                        store(builder.load(acc), slot, at)

            def rows_of(h):  # erow rows above, at and below h (the padding at the edges)
                mid = row_ptr(h)
                edge = builder.select(replicate_v, mid, nothing_p)
                has_above = builder.icmp_unsigned(">", h, zero_i)
                up = builder.select(has_above, row_ptr(builder.select(has_above, builder.sub(h, one), h)), edge)
                below = builder.add(h, one)
                has_below = builder.icmp_unsigned("<", below, height)
                down = builder.select(has_below, row_ptr(builder.select(has_below, below, h)), edge)
                return up, mid, down

            def vertical(rows, k):  # k: vector index
                up, mid, down = rows
                at = builder.mul(k, ir.Constant(intp, lanes))
                m = load(mid, at)
                return builder.fadd(builder.fadd(load(up, at), load(down, at)), builder.fadd(m, m))

            def smooth(prev, cur, following):
                left = lanes_of(prev, cur, lanes - 1)
                right = lanes_of(cur, following, 1)
                return builder.fadd(builder.fadd(left, right), builder.fadd(cur, cur))

            def edge_before(cur):
                return builder.select(replicate_v, splat(cur, 0), zero)

            def edge_after(cur):
                return builder.select(replicate_v, splat(cur, lanes - 1), zero)

            def derivative(smoothed, offset):  # D = before - S, or its magnitude
                x = builder.fsub(load(before_p, offset), smoothed)
                return builder.bitcast(builder.and_(builder.bitcast(x, bits), abs_mask), vec)

            def difference(smoothed, offset, shift_vec, s_acc, q_acc):
                x = derivative(smoothed, offset)
                store(x, d_p, offset)
                y = builder.fsub(x, shift_vec)
                builder.store(builder.fadd(builder.load(s_acc), y), s_acc)
                builder.store(builder.fadd(builder.load(q_acc), builder.fmul(y, y, flags=contract), flags=contract), q_acc)
                return x

            def sweep(with_d, shift_vec, s_acc, q_acc):
                with cgutils.for_range(builder, height) as h_loop:
                    h = h_loop.index
                    below = builder.add(h, one)
                    with builder.if_then(builder.and_(builder.icmp_unsigned(">=", h, one), builder.icmp_unsigned("<", below, height))):
                        fill_row(below)
                    rows = rows_of(h)
                    first = vertical(rows, zero_i)
                    prev = cgutils.alloca_once_value(builder, edge_before(first))
                    cur = cgutils.alloca_once_value(builder, first)
                    last = builder.sub(vectors, one)
                    with cgutils.for_range(builder, last) as k_loop:  # every vector but the last
                        following = vertical(rows, builder.add(k_loop.index, one))
                        c = builder.load(cur)
                        smoothed = smooth(builder.load(prev), c, following)
                        offset = offset_of(h, builder.mul(k_loop.index, ir.Constant(intp, lanes)))
                        store(smoothed, out_p, offset)
                        if with_d:
                            difference(smoothed, offset, shift_vec, s_acc, q_acc)
                        builder.store(c, prev)
                        builder.store(following, cur)
                    c = builder.load(cur)
                    smoothed = smooth(builder.load(prev), c, edge_after(c))
                    offset = offset_of(h, builder.mul(last, ir.Constant(intp, lanes)))
                    store(smoothed, out_p, offset)
                    if with_d:
                        difference(smoothed, offset, shift_vec, s_acc, q_acc)

            s_acc = cgutils.alloca_once_value(builder, zero)
            q_acc = cgutils.alloca_once_value(builder, zero)
            shift = cgutils.alloca_once_value(builder, ir.Constant(item, 0.0))
            fill_row(zero_i)
            with builder.if_then(builder.icmp_unsigned(">", height, one)):
                fill_row(one)
            with builder.if_else(want_v) as (with_d, without_d):
                with with_d:
                    # the shift: D at the first voxel, from the first vector of row 0
                    rows = rows_of(zero_i)
                    first = vertical(rows, zero_i)
                    several = builder.icmp_unsigned(">", vectors, one)
                    second = vertical(rows, builder.select(several, one, zero_i))
                    s0 = smooth(edge_before(first), first, builder.select(several, second, edge_after(first)))
                    x0 = derivative(s0, zero_i)
                    builder.store(builder.extract_element(x0, ir.Constant(i32, 0)), shift)
                    sweep(True, splat(x0, 0), s_acc, q_acc)
                with without_d:
                    sweep(False, None, s_acc, q_acc)
            sums = [_sum_lanes(builder, builder.load(acc), lanes) for acc in (s_acc, q_acc)]
            sh = builder.load(shift)
            sums.append(builder.fpext(sh, f64) if size == 4 else sh)
            return context.make_tuple(builder, signature.return_type, sums)

        return sig, codegen

    @njit(parallel=True, cache=True)
    def _derivative(r, d, chunks, replicate, absolute, frame_sum, frame_m2, work, nothing, zero):  # pragma: no cover
        """Pass 1: ``D`` of every frame, with per-frame sum and centred sum of squares.

        ``work`` holds five frame planes per task (allocated once per call, not per task);
        ``nothing`` is an all-zero plane, the zero padding outside the clip.
        """
        n_clips, _, frames, height, width = r.shape
        p_count = height * width
        # the one-sweep kernel addresses the relevance by its shape: C order, whole-vector rows
        one_sweep = width % (64 // r.itemsize) == 0 and r.flags.c_contiguous
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
                t = u - 1  # D[t] = S[t-1] - S[t+1], and S[t+1] = S[u] is computed now
                want = t >= t0 and t < t1
                if t >= 1:
                    before = ring[(t - 1) % 3]
                elif replicate:
                    before = ring[0]
                else:
                    before = nothing
                if u <= last and one_sweep:  # S[u] and D[u-1] in one sweep
                    dd = d[n, 0, max(t, 0)].reshape(p_count)
                    s, q, shift = _smooth_rows(r, n, u, e, ring[u % 3], before, dd, nothing, want, replicate, absolute)
                    if want:
                        frame_sum[n * frames + t] = s + shift * p_count
                        frame_m2[n * frames + t] = max(q - s * s / p_count, 0.0)
                    continue
                if u <= last:
                    _smooth_frame(r, n, u, ring[u % 3], e, vs, replicate)
                if not want:
                    continue
                if u <= frames - 1:
                    after = ring[u % 3]
                elif replicate:
                    after = ring[(frames - 1) % 3]
                else:
                    after = nothing
                s, m2 = _difference_and_moments(before, after, d[n, 0, t].reshape(p_count), absolute, zero)
                frame_sum[n * frames + t] = s
                frame_m2[n * frames + t] = m2

    @njit(cache=True, fastmath=_REDUCE)
    def _mask_rgb(dd, th, mm, r0, r1, r2, o0, o1, o2, start, stop, zero):  # pragma: no cover
        """Mask and motion part of positions ``[start, stop)`` of one RGB frame; ``sum|motion|``, ``sum|R|``."""
        k = zero
        a = zero
        for p in range(start, stop):
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
        return k, a

    @intrinsic
    def _stream_rgb(typingctx, dd, mm, r0, r1, r2, o0, o1, o2, start, stop, th):  # pragma: no cover
        """``_mask_rgb`` over ``[start, stop)`` in whole vectors, storing the motion part past the cache.

        The caller guarantees that ``o0``, ``o1``, ``o2`` start a cache line at ``start`` and that
        ``stop - start`` is a multiple of the vector length (64 bytes). On x86 the motion part is
        written with non-temporal stores (it is not read again here; the relevance and ``D`` keep
        the cache), followed by a store fence. Returns ``sum|motion|``, ``sum|R|`` in float64.
        """
        sig = types.UniTuple(types.float64, 2)(dd, mm, r0, r1, r2, o0, o1, o2, start, stop, th)

        def codegen(context, builder, signature, args):
            _, size, lanes, vec = _vector_of(context, signature.args[0].dtype)
            byte_vec = ir.VectorType(ir.IntType(8), lanes)
            dd_p, mm_p, r0_p, r1_p, r2_p, o0_p, o1_p, o2_p = (
                context.make_array(ty)(context, builder, val).data
                for ty, val in zip(signature.args[:8], args[:8], strict=True)
            )
            start_v, stop_v, th_v = args[8:]
            zero = ir.Constant(vec, None)
            limit = zero
            for i in range(lanes):
                limit = builder.insert_element(limit, th_v, ir.Constant(ir.IntType(32), i))
            fabs = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec]), f"llvm.fabs.v{lanes}f{size * 8}"
            )
            kept_acc = cgutils.alloca_once_value(builder, zero)
            total_acc = cgutils.alloca_once_value(builder, zero)
            nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
            step = ir.Constant(start_v.type, lanes)
            with cgutils.for_range_slice(builder, start_v, stop_v, step) as (idx, _):

                def at(ptr, ty):
                    return builder.bitcast(builder.gep(ptr, [idx]), ty.as_pointer())

                keep = builder.fcmp_ordered(">", builder.load(at(dd_p, vec), align=size), limit)
                builder.store(builder.zext(keep, byte_vec), at(mm_p, byte_vec), align=1)
                magnitude = None
                for src, dst in ((r0_p, o0_p), (r1_p, o1_p), (r2_p, o2_p)):
                    v = builder.load(at(src, vec), align=size)
                    store = builder.store(builder.select(keep, v, zero), at(dst, vec), align=_ALIGN)
                    if _X86:
                        store.set_metadata("nontemporal", nontemporal)
                    av = builder.call(fabs, [v])
                    magnitude = av if magnitude is None else builder.fadd(magnitude, av)
                builder.store(builder.fadd(builder.load(total_acc), magnitude), total_acc)
                kept_v = builder.select(keep, magnitude, zero)
                builder.store(builder.fadd(builder.load(kept_acc), kept_v), kept_acc)
            if _X86:  # make the non-temporal stores visible before anyone reads the motion part
                fence = ir.FunctionType(ir.VoidType(), [])
                builder.call(cgutils.get_or_insert_function(builder.module, fence, "llvm.x86.sse.sfence"), [])
            sums = [_sum_lanes(builder, builder.load(acc), lanes) for acc in (kept_acc, total_acc)]
            return context.make_tuple(builder, signature.return_type, sums)

        return sig, codegen

    @njit(parallel=True, cache=True, fastmath=_REDUCE)
    def _apply_mask(r, d, threshold, mask, motion, kept, total, zero):  # pragma: no cover
        """Pass 2: mask, motion part and the two L1 sums of every frame."""
        n_clips, c_count, frames, height, width = r.shape
        p_count = height * width
        lanes = 64 // motion.itemsize
        # whole-line stores need the three channels of a frame to share their alignment
        stream = (frames * p_count) % lanes == 0
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
                head, stop = 0, 0  # [head, stop): whole cache lines of all three outputs
                if stream:
                    head = min(-o0.ctypes.data % 64 // o0.itemsize, p_count)
                    stop = head + (p_count - head) // lanes * lanes
                k0, a0 = _mask_rgb(dd, th, mm, r0, r1, r2, o0, o1, o2, 0, head, zero)
                k1, a1 = _mask_rgb(dd, th, mm, r0, r1, r2, o0, o1, o2, max(stop, head), p_count, zero)
                k2, a2 = _stream_rgb(dd, mm, r0, r1, r2, o0, o1, o2, head, stop, th)
                kept[f] = (np.float64(k0) + np.float64(k1)) + k2
                total[f] = (np.float64(a0) + np.float64(a1)) + a2
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
    def _scaled_std(values):  # pragma: no cover - compiled
        """Unbiased std of ``values`` in float64, two-pass, after dividing by the power of two at
        their largest magnitude, so that no square underflows (the eager ``_per_clip_std``)."""
        count = values.shape[0]
        largest = 0.0
        for v in values:
            largest = max(largest, abs(np.float64(v)))
        if count < 2 or largest == 0.0:
            return 0.0
        if not np.isfinite(largest):
            return np.inf
        scale = math.ldexp(1.0, math.frexp(largest)[1])
        mean = 0.0
        for v in values:
            mean += np.float64(v) / scale
        mean /= count
        m2 = 0.0
        for v in values:
            z = np.float64(v) / scale - mean
            m2 += z * z
        return np.sqrt(m2 / (count - 1)) * scale

    @njit(cache=True)
    def _selective(r, d, mask, motion, sigma, replicate, absolute, threads, block, work, zero, smallest):  # pragma: no cover
        """Both passes, ``block`` clips at a time.

        Returns per clip the threshold, the motion share (0 where the relevance is all zero) and
        ``sum|R|``, and whether every sum and threshold is finite. A clip whose std from the
        per-frame moments is below ``smallest`` gets it again from ``D`` (see ``_scaled_std``).

        Finishing a few clips before starting the next ones keeps the relevance read by the
        second pass in cache.
        """
        n_clips, _, frames, height, width = r.shape
        p_count = height * width
        count = frames * p_count
        threshold = np.empty(n_clips, dtype=r.dtype)
        kept = np.zeros(n_clips)
        total = np.zeros(n_clips)
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
                if std < smallest:  # the squares may have underflowed: redo it from D, scaled
                    std = _scaled_std(d[b0 + i].reshape(count))
                threshold[b0 + i] = sigma * std
            kept_f = np.empty(nb * frames)
            total_f = np.empty(nb * frames)
            _apply_mask(
                r[b0:b1], d[b0:b1], threshold[b0:b1], mask[b0:b1], motion[b0:b1], kept_f, total_f, zero
            )
            for f in range(nb * frames):
                kept[b0 + f // frames] += kept_f[f]
                total[b0 + f // frames] += total_f[f]
        share = np.zeros(n_clips, dtype=r.dtype)
        finite = True
        for i in range(n_clips):
            if total[i] > 0:
                share[i] = kept[i] / total[i]
            finite = finite and np.isfinite(total[i]) and np.isfinite(threshold[i])
        return threshold, share, total, finite


__all__ = ["ENV_VAR", "Split", "split", "usable"]
