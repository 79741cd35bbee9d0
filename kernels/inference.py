"""Inference kernels: the forward pass over a chunk of samples, and its tails.

Driven by :mod:`fastmlp.inference`, which splits the samples into chunks
and runs each chunk through these kernels (and BLAS) on worker threads; every
kernel here releases the GIL. Activations of a chunk are stored samples x
units (row-major), so each Linear layer is ``Z = A @ W`` with ``W`` as stored
in the flat parameter vector (inputs x outputs, row-major).

The network arrives as in the training kernels: ``sizes`` (widths, input
first), ``acts`` (activation code after each Linear layer) and the flat ``P``
(per layer W, row-major, then its biases).

Sparse inputs
-------------
A layer whose input is mostly zero (MNIST pixels; ReLU outputs) can skip the
zeros: :func:`sparse_layer` (from X in any layout and dtype, or from the
activations) lists, for groups of four adjacent samples, the inputs where
any of the four is nonzero with the four values (converted to the
parameters' dtype), as many groups as the lists hold (a bounded workspace,
``LIST_ENTRIES`` in :mod:`fastmlp.inference`). Then W runs in column blocks
of 64 bytes a row (8 float64 or 16 float32 outputs; 784 x 8 x 8 B = 50 KB,
resident in the core's L2 cache, where the whole W is not): for each block,
every listed group accumulates its 4 x 64 bytes of outputs in eight AVX2
registers (LLVM vectors, through the ``acc_*`` intrinsics; Numba has no
vector type), one fused multiply-add per register and listed entry, so
each block row loaded serves four samples. The lists are made with a
64-input bit mask per step (vectorised when X's columns are contiguous)
whose set bits are then visited.

Measured (MNIST, 784-100, one thread, float64 / float32): the earlier
pair kernel, reading whole rows of W from L3 for every pair of samples,
took 200 / 105 ms for the first layer over 60,000 images; this kernel 150 /
77 ms (lists about 30 / 25 of them), against OpenBLAS's dense product 280 /
140 ms. Groups of two with 16 registers' worth of columns (128-byte rows)
ran no faster than the pair kernel; 96-byte rows (12 accumulators) spill
registers and ran 3x slower; 32-byte rows 20-40% slower.

Vectorised activations
----------------------
Numba has no vector ``exp`` (no SVML here), so :func:`expneg` is an inlined
polynomial ``exp`` for arguments <= 0 (all sigmoid, tanh and max-shifted
softmax need): Cody-Waite reduction, a Taylor polynomial of degree 13
(float64) or 7 (float32), and the power of two built from its bits in two
factors, so that results down to the smallest subnormal are right (and
``exp(-inf) == 0``). It has no branches, so loops calling it vectorise.
Error: about 1 ulp. NaN propagates. Constants are in the argument's dtype,
so float32 never widens.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic, overload

from ._jit import jit
from .codes import IDENTITY, NLL, RELU, SIGMOID, TANH

#: fastmath flags of the activation loops: contraction to FMA only (no
#: reassociation, which would fold the polynomial's exact reduction steps,
#: and no "nnan"/"ninf", so non-finite values propagate).
CONTRACT = {"contract"}


# -- vector exp ---------------------------------------------------------------

@intrinsic
def _pow2(typingctx, k):
    """``2.0 ** k`` for an integral float ``k`` in the normal range of its type,
    built from the exponent bits without a float-to-int conversion (AVX2 has
    none for float64 vectors): ``k + 1.5 * 2**52`` holds ``k`` in its low
    mantissa bits; adding the exponent bias and shifting left by 52 leaves
    exactly the biased exponent of ``2**k`` (likewise 23 for float32)."""
    if k == types.float64:
        ity, fty, bias, shift, magic = ir.IntType(64), ir.DoubleType(), 1023, 52, 6755399441055744.0
    elif k == types.float32:
        ity, fty, bias, shift, magic = ir.IntType(32), ir.FloatType(), 127, 23, 12582912.0
    else:
        return None

    def codegen(context, builder, signature, args):
        y = builder.fadd(args[0], ir.Constant(fty, magic))
        bits = builder.add(builder.bitcast(y, ity), ir.Constant(ity, bias))
        return builder.bitcast(builder.shl(bits, ir.Constant(ity, shift)), fty)

    return k(k), codegen


def _twin(numpy_fn, choose, doc):
    """The function named as ``choose`` less its ``_`` and ``_impl``: plain
    Python (``NUMBA_DISABLE_JIT=1``) it is ``numpy_fn``; compiled, the Numba
    overload that ``choose`` picks by argument type."""
    def twin(x):
        return numpy_fn(x)

    twin.__name__ = twin.__qualname__ = choose.__name__.removeprefix("_").removesuffix("_impl")
    twin.__doc__ = doc
    overload(twin)(choose)
    return twin


def _expneg_impl(x):
    if x == types.float64:
        def impl(x):
            # Below -746, exp rounds to 0 in float64 (and so does this).
            xc = x if x >= -746.0 else -746.0  # NaN -> -746, restored below
            k = np.floor(xc * 1.4426950408889634 + 0.5)
            r = xc - k * 6.93145751953125e-1
            r = r - k * 1.42860682030941723212e-6
            # Taylor coefficients 1/i!, i = 0..13, by Estrin's scheme (short
            # dependency chains, so successive elements overlap).
            r2 = r * r
            r4 = r2 * r2
            q0 = (1.0 + r) + r2 * (0.5 + 0.16666666666666666 * r)
            q1 = (0.041666666666666664 + 0.008333333333333333 * r) \
                + r2 * (0.001388888888888889 + 0.0001984126984126984 * r)
            q2 = (2.48015873015873e-05 + 2.7557319223985893e-06 * r) \
                + r2 * (2.755731922398589e-07 + 2.505210838544172e-08 * r)
            q3 = 2.08767569878681e-09 + 1.6059043836821613e-10 * r
            p = (q0 + r4 * q1) + (r4 * r4) * (q2 + r4 * q3)
            k1 = np.floor(k * 0.5)
            e = p * _pow2(k1) * _pow2(k - k1)
            return e if x == x else x
        return impl
    if x == types.float32:
        def impl(x):
            lo = np.float32(-104.0)
            xc = x if x >= lo else lo
            k = np.floor(xc * np.float32(1.44269504) + np.float32(0.5))
            r = xc - k * np.float32(0.693359375)
            r = r - k * np.float32(-2.12194440e-4)
            r2 = r * r
            q0 = (np.float32(1.0) + r) + r2 * (np.float32(0.5) + np.float32(0.16666667) * r)
            q1 = (np.float32(4.1666668e-02) + np.float32(8.3333338e-03) * r) \
                + r2 * (np.float32(1.3888889e-03) + np.float32(1.9841270e-04) * r)
            p = q0 + (r2 * r2) * q1
            k1 = np.floor(k * np.float32(0.5))
            e = p * _pow2(k1) * _pow2(k - k1)
            return e if x == x else x
        return impl
    return None


expneg = _twin(np.exp, _expneg_impl, """``exp(x)`` for ``x <= 0`` (see the module docstring).
    Compiled, an inlined polynomial; as plain Python, NumPy's ``exp``.""")


def _tanh_small_impl(x):
    if x == types.float64:
        def impl(x):
            z = x * x
            p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z \
                - 1.61468768441708447952e3
            q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z \
                + 4.84406305325125486048e3
            return x + x * (z * p / q)
        return impl
    if x == types.float32:
        def impl(x):
            z = x * x
            p = np.float32(-5.70498872745e-3)
            p = p * z + np.float32(2.06390887954e-2)
            p = p * z + np.float32(-5.37397155531e-2)
            p = p * z + np.float32(1.33314422036e-1)
            p = p * z + np.float32(-3.33332819422e-1)
            return x + x * (z * p)
        return impl
    return None


tanh_small = _twin(np.tanh, _tanh_small_impl, """``tanh(x)`` for ``|x| < 0.625`` (Cephes'
    rational form compiled; as plain Python, NumPy's ``tanh``).""")


# -- bias and activation ------------------------------------------------------

@jit(fastmath=CONTRACT)
def bias_activate(Z, b, code):
    """In place on the first ``n = len(b)`` columns of the rows of ``Z``
    (samples x units, C-ordered; columns past ``n`` are padding and left as
    they are): add the biases ``b`` and apply activation ``code``. Returns
    how many of those entries are nonzero after a ReLU (for choosing the next
    layer's path), else -1. ``Z`` is C-ordered so that the loops over a row
    vectorise (on a strided view they run about 3x slower).
    """
    rows = Z.shape[0]
    n = b.shape[0]
    one = Z.dtype.type(1)
    zero = Z.dtype.type(0)
    if code == IDENTITY:
        for s in range(rows):
            z = Z[s]
            for j in range(n):
                z[j] += b[j]
    elif code == RELU:
        nnz = 0
        for s in range(rows):
            z = Z[s]
            for j in range(n):
                v = z[j] + b[j]
                v = zero if v < zero else v  # NaN stays NaN
                z[j] = v
                nnz += v != zero
        return nnz
    elif code == SIGMOID:
        for s in range(rows):
            z = Z[s]
            for j in range(n):
                v = z[j] + b[j]
                e = expneg(-abs(v))
                num = one if v >= zero else e
                z[j] = num / (one + e)
    elif code == TANH:
        two = Z.dtype.type(2)
        for s in range(rows):
            z = Z[s]
            for j in range(n):
                v = z[j] + b[j]
                a = abs(v)
                e = expneg(-two * a)
                big = (one - e) / (one + e)
                t = tanh_small(a) if a < Z.dtype.type(0.625) else big
                z[j] = t if v >= zero else -t
    else:  # SOFTMAX over each row, max-shifted
        for s in range(rows):
            z = Z[s]
            mx = z[0] + b[0]
            for j in range(n):
                v = z[j] + b[j]
                z[j] = v
                if not v <= mx:  # larger, or NaN (a NaN maximum stays)
                    mx = v if mx == mx else mx
            for j in range(n):
                z[j] -= mx
        for s in range(rows):
            z = Z[s]
            for j in range(n):
                z[j] = expneg(z[j])
            t = zero
            for j in range(n):
                t += z[j]
            for j in range(n):
                z[j] /= t
    return -1


# -- sparse products ----------------------------------------------------------

#: Samples listed together by the sparse kernels (a group), and the bytes of
#: one row of a column block of W (two AVX2 registers: 8 float64 or 16
#: float32 outputs). A group's accumulators for one block are GROUP x 2
#: registers, which stay in registers over the whole list.
GROUP = 4
ROW_BYTES = 64


def block_width(dtype):
    """Outputs per column block of W for parameters of ``dtype``."""
    return ROW_BYTES // np.dtype(dtype).itemsize


def block_weights(W):
    """``W`` (inputs x outputs) as column blocks: ``(blocks, inputs, width)``,
    C-ordered, the last block padded with zero columns."""
    m, n = W.shape
    bw = block_width(W.dtype)
    nb = (n + bw - 1) // bw
    Wb = np.zeros((nb, m, bw), W.dtype)
    for k in range(nb):
        Wb[k, :, :min(bw, n - k * bw)] = W[:, k * bw:(k + 1) * bw]
    return Wb


# Register accumulators. Numba has no vector types: these intrinsics keep a
# group's GROUP rows of one block as LLVM vectors in a stack slot, which LLVM
# promotes to registers. Each has a plain-Python twin (the function itself;
# the intrinsic is its compiled overload), so the kernels run with
# NUMBA_DISABLE_JIT=1.

def _ety(fty):
    return {types.float64: ir.DoubleType(), types.float32: ir.FloatType()}.get(fty)


def _vty(fty):
    return ir.VectorType(_ety(fty), ROW_BYTES // (8 if fty == types.float64 else 4))


def _elem_ptr(context, builder, aryty, ary, off):
    data = context.make_array(aryty)(context, builder, value=ary).data
    return builder.gep(data, [off])


def _acc_row(builder, p, vty, k):
    return builder.gep(builder.bitcast(p, vty.as_pointer()), [ir.Constant(ir.IntType(64), k)])


@intrinsic
def _acc_new_intr(typingctx, like):
    if _ety(like) is None:
        return None

    def codegen(context, builder, signature, args):
        p = cgutils.alloca_once(builder, _vty(like), size=GROUP)
        return builder.bitcast(p, _ety(like).as_pointer())

    return types.CPointer(like)(like), codegen


@intrinsic
def _acc_zero_intr(typingctx, acc):
    def codegen(context, builder, signature, args):
        vty = _vty(acc.dtype)
        for k in range(GROUP):
            builder.store(ir.Constant(vty, None), _acc_row(builder, args[0], vty, k))
        return context.get_dummy_value()

    return types.void(acc), codegen


@intrinsic
def _acc_fma_intr(typingctx, acc, W, woff, C, coff):
    def codegen(context, builder, signature, args):
        vty = _vty(acc.dtype)
        item = _ety(acc.dtype).get_abi_size(context.target_data)
        wp = _elem_ptr(context, builder, signature.args[1], args[1], args[2])
        w = builder.load(builder.bitcast(wp, vty.as_pointer()), align=item)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty] * 3),
            f"llvm.fma.v{vty.count}{'f64' if item == 8 else 'f32'}")
        cp = _elem_ptr(context, builder, signature.args[3], args[3], args[4])
        lane0 = ir.Constant(ir.IntType(32), 0)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), vty.count), None)
        for k in range(GROUP):
            c = builder.load(builder.gep(cp, [ir.Constant(ir.IntType(64), k)]), align=item)
            c = builder.insert_element(ir.Constant(vty, ir.Undefined), c, lane0)
            c = builder.shuffle_vector(c, ir.Constant(vty, ir.Undefined), zeros)
            ap = _acc_row(builder, args[0], vty, k)
            builder.store(builder.call(fma, [c, w, builder.load(ap)]), ap)
        return context.get_dummy_value()

    return types.void(acc, W, types.intp, C, types.intp), codegen


@intrinsic
def _acc_store_intr(typingctx, acc, Z, off, stride):
    def codegen(context, builder, signature, args):
        vty = _vty(acc.dtype)
        item = _ety(acc.dtype).get_abi_size(context.target_data)
        for k in range(GROUP):
            o = builder.add(args[2], builder.mul(args[3], ir.Constant(ir.IntType(64), k)))
            zp = _elem_ptr(context, builder, signature.args[1], args[1], o)
            builder.store(builder.load(_acc_row(builder, args[0], vty, k)),
                          builder.bitcast(zp, vty.as_pointer()), align=item)
        return context.get_dummy_value()

    return types.void(acc, Z, types.intp, types.intp), codegen


def acc_new(like):
    """GROUP accumulator rows of one block (registers; as Python, an array)."""
    dt = np.asarray(like).dtype
    return np.zeros((GROUP, block_width(dt)), dt)


def acc_zero(acc):
    """Set the accumulators to zero."""
    acc[...] = 0


def acc_fma(acc, W, woff, C, coff):
    """``acc[k] += C[coff + k] * W[woff:woff + width]`` for each k < GROUP
    (fused multiply-adds, in the accumulators' dtype)."""
    w = W[woff:woff + acc.shape[1]]
    for k in range(GROUP):
        acc[k] += C[coff + k] * w


def acc_store(acc, Z, off, stride):
    """``Z[off + k * stride:][:width] = acc[k]`` for each k < GROUP."""
    bw = acc.shape[1]
    for k in range(GROUP):
        Z[off + k * stride:off + k * stride + bw] = acc[k]


def ctz(word):
    """The index of the lowest set bit of a nonzero unsigned 64-bit ``word``."""
    w = int(word)
    return (w & -w).bit_length() - 1


@overload(acc_new)
def _acc_new_ol(like):
    return lambda like: _acc_new_intr(like)


@overload(acc_zero)
def _acc_zero_ol(acc):
    return lambda acc: _acc_zero_intr(acc)


@overload(acc_fma)
def _acc_fma_ol(acc, W, woff, C, coff):
    return lambda acc, W, woff, C, coff: _acc_fma_intr(acc, W, woff, C, coff)


@overload(acc_store)
def _acc_store_ol(acc, Z, off, stride):
    return lambda acc, Z, off, stride: _acc_store_intr(acc, Z, off, stride)


@overload(ctz)
def _ctz_ol(word):
    return lambda word: trailing_zeros(word)


@jit
def list_group(X, m, s0, s1, s2, s3, k1, k2, k3, bw, idx, cc, e):
    """List one group (samples ``s0..s3`` of X; ``k1..k3`` are 1, or 0 for a
    padding twin) from entry ``e`` on: the inputs ``r < m`` where any of the
    four is nonzero (or NaN), as ``idx[e] = r * bw`` (the row's offset in a
    column block of W) and the four values, converted to the lists' dtype, in
    ``cc[e]``. Returns the entry after the last.

    The nonzero test runs 64 inputs at a time into a bit mask (vectorised
    when X's columns are contiguous), then the set bits are visited."""
    t = cc.dtype.type
    one = np.uint64(1)
    for g in range(0, m, 64):
        word = np.uint64(0)
        for r in range(g, min(g + 64, m)):
            nz = (X[r, s0] != 0) | (X[r, s1] != 0) | (X[r, s2] != 0) | (X[r, s3] != 0)
            word |= np.uint64(nz) << np.uint64(r - g)
        while word:
            r = g + ctz(word)
            word &= word - one
            idx[e] = r * bw
            cc[e, 0] = t(X[r, s0])
            cc[e, 1] = t(X[r, s1]) * k1
            cc[e, 2] = t(X[r, s2]) * k2
            cc[e, 3] = t(X[r, s3]) * k3
            e += 1
    return e


@jit
def list_groups(X, m, lo, hi, g0, idx, cc, starts):
    """List groups ``g0, g0 + 1, ...`` of samples ``lo:hi`` of X (group g:
    samples ``lo + 4g`` to ``lo + 4g + 3``, those past ``hi`` zero twins)
    while they fit (:func:`list_group`); group k's entries are
    ``starts[k]:starts[k + 1]``. Returns the number of groups listed."""
    t = cc.dtype.type
    bw = ROW_BYTES // cc.itemsize
    cap = idx.shape[0]
    total = (hi - lo + GROUP - 1) // GROUP
    e = 0
    k = 0
    while g0 + k < total and k < starts.shape[0] - 1 and e + m <= cap:
        starts[k] = e
        s0 = lo + GROUP * (g0 + k)
        e = list_group(X, m, s0, min(s0 + 1, hi - 1), min(s0 + 2, hi - 1), min(s0 + 3, hi - 1),
                       t(s0 + 1 < hi), t(s0 + 2 < hi), t(s0 + 3 < hi), bw, idx, cc, e)
        k += 1
    starts[k] = e
    return k


@jit
def count_column_groups(X, m, cols, g0, g1):
    """The entries :func:`list_column_groups` makes for groups ``g0:g1`` of
    the columns ``cols`` of X (group g: ``cols[4g:4g + 4]``)."""
    n = cols.shape[0]
    e = 0
    for g in range(g0, g1):
        q = GROUP * g
        s0, s1 = cols[q], cols[min(q + 1, n - 1)]
        s2, s3 = cols[min(q + 2, n - 1)], cols[min(q + 3, n - 1)]
        for r in range(m):
            e += (X[r, s0] != 0) | (X[r, s1] != 0) | (X[r, s2] != 0) | (X[r, s3] != 0)
    return e


@jit
def list_column_groups(X, m, cols, g0, g1, idx, cc, starts):
    """List groups ``g0:g1`` of the columns ``cols`` of X (group g: samples
    ``cols[4g:4g + 4]``, the last group's missing ones zero twins) with
    :func:`list_group`, from entry ``starts[g0]`` on; sets ``starts[g0 + 1:
    g1 + 1]``. The lists must hold :func:`count_column_groups` entries."""
    t = cc.dtype.type
    bw = ROW_BYTES // cc.itemsize
    n = cols.shape[0]
    e = starts[g0]
    for g in range(g0, g1):
        q = GROUP * g
        e = list_group(X, m, cols[q], cols[min(q + 1, n - 1)], cols[min(q + 2, n - 1)],
                       cols[min(q + 3, n - 1)], t(q + 1 < n), t(q + 2 < n), t(q + 3 < n),
                       bw, idx, cc, e)
        starts[g + 1] = e


@jit
def group_block(Wf, woff, idx, ccf, starts, k, Zf, zoff, zstride):
    """For listed groups ``0:k``, one column block of their outputs: block
    rows start at ``woff`` in ``Wf`` (flat), group h's GROUP output rows at
    ``zoff + GROUP * h * zstride`` in ``Zf`` (flat, row stride ``zstride``).
    Sums in list order (one fused multiply-add per entry and output)."""
    acc = acc_new(Wf[0])
    for h in range(k):
        acc_zero(acc)
        for q in range(starts[h], starts[h + 1]):
            acc_fma(acc, Wf, woff + idx[q], ccf, GROUP * q)
        acc_store(acc, Zf, zoff + GROUP * h * zstride, zstride)


@jit
def group_layer(Wb, idx, ccf, starts, k, Z, cap):
    """Rows ``0:4k`` of ``Z`` (C-ordered, ``Wb``'s padded width) from the
    listed groups ``0:k`` (entries ``starts[h]:starts[h + 1]`` of ``idx``
    and of ``ccf``, the flat four values an entry): for runs of groups
    holding at most ``cap`` entries (so that a run's lists stay in the
    core's L2 cache), each column block of ``Wb``, small enough to stay there
    too, serves the whole run (:func:`group_block`)."""
    nb, mw, bw = Wb.shape
    Wf = Wb.reshape(-1)
    Zf = Z.reshape(-1)
    zs = Z.shape[1]
    h0 = 0
    while h0 < k:
        h1 = h0 + 1
        while h1 < k and starts[h1 + 1] - starts[h0] <= cap:
            h1 += 1
        for blk in range(nb):
            group_block(Wf, blk * mw * bw, idx, ccf, starts[h0:], h1 - h0, Zf,
                        GROUP * h0 * zs + blk * bw, zs)
        h0 = h1


@jit
def sparse_layer(X, m, lo, hi, Wb, Z, idx, cc, starts):
    """``Z[s - lo, :] = X[:m, s] @ W`` for samples ``lo:hi`` of X (inputs x
    samples, any layout and float dtype), over the nonzeros only. Returns
    the number of listed entries.

    ``Wb`` is W in column blocks (:func:`block_weights`); ``Z`` (C-ordered)
    has at least ``hi - lo`` rows rounded up to GROUP and ``Wb``'s padded
    width, and its padding columns receive the padding's products. The
    samples are listed in groups of four (:func:`list_groups`), as many
    groups as the lists ``idx``, ``cc`` (length at least ``m``) and
    ``starts`` hold; then :func:`group_layer` runs them.
    """
    total = (hi - lo + GROUP - 1) // GROUP
    ccf = cc.reshape(-1)
    listed = 0
    g0 = 0
    while g0 < total:
        k = list_groups(X, m, lo, hi, g0, idx, cc, starts)
        group_layer(Wb, idx, ccf, starts, k, Z[GROUP * g0:], idx.shape[0])
        listed += starts[k]
        g0 += k
    return listed


@jit
def density_sample(X, cols):
    """The fraction of nonzeros in columns ``cols`` of X, and the fill of
    their group lists (entries listed by :func:`list_groups` over the dense
    size), counted over consecutive groups of four of the given columns."""
    m = X.shape[0]
    nnz = 0
    fill = 0
    k = cols.shape[0] // GROUP
    for p in range(k):
        s0, s1, s2, s3 = cols[4 * p], cols[4 * p + 1], cols[4 * p + 2], cols[4 * p + 3]
        for i in range(m):
            a, b, c, d = X[i, s0] != 0, X[i, s1] != 0, X[i, s2] != 0, X[i, s3] != 0
            nnz += a + b + c + d
            fill += a | b | c | d
    total = max(1, k * m)
    return nnz / (GROUP * total), fill / total


# -- tails ---------------------------------------------------------------------

@jit
def argmax_row(a):
    """Index of the largest entry (the first, or the first NaN, as np.argmax)."""
    best = 0
    for j in range(a.shape[0]):
        v = a[j]
        if v != v:
            return j
        if v > a[best]:
            best = j
    return best


@jit
def argmax_col(Y, s):
    """np.argmax of column ``s`` of Y."""
    best = 0
    for j in range(Y.shape[0]):
        v = Y[j, s]
        if v != v:
            return j
        if v > Y[best, s]:
            best = j
    return best


@jit
def write_columns(A, out, lo):
    """``out[:, lo:lo + rows] = A.T`` (A: rows x units; out: any layout)."""
    rows, n = A.shape
    if abs(out.strides[0]) <= abs(out.strides[1]):
        for s in range(rows):
            a = A[s]
            for j in range(n):
                out[j, lo + s] = a[j]
    else:
        for j in range(n):
            for s in range(rows):
                out[j, lo + s] = A[s, j]


@jit
def write_classes(A, classes, lo):
    """``classes[lo + s] = argmax(A[s])`` for each row s."""
    for s in range(A.shape[0]):
        classes[lo + s] = argmax_row(A[s])


@jit
def class_hits(A, labels, lo):
    """How many rows s of ``A`` (rows x units) have their largest entry (as
    np.argmax) at ``labels[lo + s]``."""
    hits = 0
    for s in range(A.shape[0]):
        hits += argmax_row(A[s]) == labels[lo + s]
    return hits


@jit
def score_rows(A, Y, lo, loss):
    """(summed loss, hits) of outputs ``A`` (rows x units) against columns
    ``lo:lo + rows`` of ``Y`` (units x samples, any layout and float dtype).

    NLL: ``-sum y * log(max(a, eps))`` with eps of A's dtype; MSE: ``sum (a -
    y)**2``. Summed in float64. A hit is a sample whose largest output is
    where its target is largest (first maxima, as np.argmax).
    """
    rows, n = A.shape
    eps = np.finfo(A.dtype).eps
    total = 0.0
    hits = 0
    for s in range(rows):
        a = A[s]
        t = A.dtype.type(0)
        if loss == NLL:
            for j in range(n):
                p = a[j]
                p = eps if p < eps else p  # NaN stays
                t += A.dtype.type(Y[j, lo + s]) * np.log(p)
            total -= t
        else:
            for j in range(n):
                d = a[j] - A.dtype.type(Y[j, lo + s])
                t += d * d
            total += t
        hits += argmax_row(a) == argmax_col(Y, lo + s)
    return total, hits
