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
zeros: :func:`sparse_columns` (from X in any layout and dtype, or from the
activations) lists, for groups of four samples, the inputs where any of the
four is nonzero with the four values (converted to the parameters' dtype),
as many groups as the lists hold (a bounded workspace, ``LIST_ENTRIES`` in
:mod:`fastmlp.inference`). Then W runs in column blocks of two or three
AVX2 registers a row (:func:`split_weights`: 16 or 24 float32, 8 or 12
float64 outputs; 784 x 96 B = 75 KB, resident in the core's L2 cache,
where the whole W is not): for each block, every listed group accumulates
its four rows of outputs in 8 or 12 registers (LLVM vectors, through the
``acc_*`` intrinsics; Numba has no vector type), one fused multiply-add per
register and listed entry, so each block row loaded serves four samples;
the biases (and a ReLU) are added as the sums leave the registers. The
lists are made with a 64-input bit mask per step (eight inputs of the four
samples per vector compare when X's columns are contiguous, :func:`nz_mask8`)
whose set bits are then visited.

The groups are made of similar samples: :func:`sort_columns` orders a
chunk's samples by the Gray code of ten key inputs (those nonzero in about
half of the samples), so samples with the same strokes share groups and the
union of their nonzero inputs is smaller. Each sample's outputs are the
same bits in any grouping (its zero inputs add exact zeros); the rows are
put back in order after the last layer (:func:`unsort_rows`).

Measured (MNIST, 60,000 images, one thread, float32, thread time inside
``predict_classes`` on the project's loaded 2-core machine): 784-100's first
layer took 90 ms with four adjacent samples a group and two-register blocks
(fill 0.39 of the dense entries), 70 ms sorted (fill 0.33) in 3 + 2 blocks
of 24 and 16 columns; 784-512's 300 / 258 ms. Narrow layers (at most 32
outputs) run :func:`dense_layer`, the same register kernel over every input,
instead of BLAS, which runs them far below its speed on wide ones.

Earlier measurements (MNIST, 784-100, one thread, float64 / float32, first
layer over 60,000 images, quieter machine): a pair kernel reading whole rows
of W from L3 for every pair of samples took 200 / 105 ms; groups of four
adjacent samples in 64-byte rows 150 / 77 ms (lists about 30 / 25 of them),
against OpenBLAS's dense product 280 / 140 ms. Groups of two with 16
registers' worth of columns (128-byte rows) ran no faster than the pair
kernel; 32-byte rows 20-40% slower than 64; three-register rows written as
one LLVM vector of 24 float32 were widened to 32 lanes and spilled
(784-512-512-10 ran 7x slower), hence one vector per register. Tried and
dropped: per-sample lists (no union of four; each entry then loads its own
row of W: about 1 multiply-add a cycle, against 1.6-1.9 for the groups),
software prefetch of the next entries' rows of W (no gain), greedy regrouping
of the sorted samples by their masks (fill 0.33 to 0.31, but it cost more
than it saved), skipping the zero inputs of a narrow layer (no gain).

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
from .codes import IDENTITY, NLL, RELU, SIGMOID, SOFTMAX, TANH

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

def bias_activate(Z, b, code):
    """In place on the first ``n = len(b)`` columns of the rows of ``Z``
    (samples x units, C-ordered; columns past ``n`` are padding and left as
    they are): add the biases ``b`` and apply activation ``code``. Returns
    how many of those entries are nonzero after a ReLU (for choosing the next
    layer's path), else -1. ``Z`` is C-ordered so that the loops over a row
    vectorise (on a strided view they run about 3x slower).

    One compiled kernel per activation, chosen here, so that a first call
    compiles only the activations its network has. Measured (first call in a
    fresh process, empty cache, float64): one kernel for all five took
    2.3-2.8 s; the softmax's and the ReLU's 1.7-2.0 s together, the other
    three 1.4-1.6 s more.
    """
    return _BIAS_ACTIVATE[code](Z, b)


@jit(fastmath=CONTRACT)
def bias_identity(Z, b):
    """:func:`bias_activate` with IDENTITY."""
    n = b.shape[0]
    for s in range(Z.shape[0]):
        z = Z[s]
        for j in range(n):
            z[j] += b[j]
    return -1


@jit(fastmath=CONTRACT)
def bias_relu(Z, b):
    """:func:`bias_activate` with RELU: returns the nonzeros."""
    n = b.shape[0]
    zero = Z.dtype.type(0)
    nnz = 0
    for s in range(Z.shape[0]):
        z = Z[s]
        for j in range(n):
            v = z[j] + b[j]
            v = zero if v < zero else v  # NaN stays NaN
            z[j] = v
            nnz += v != zero
    return nnz


@jit(fastmath=CONTRACT)
def bias_sigmoid(Z, b):
    """:func:`bias_activate` with SIGMOID. Two rows a pass: two independent
    chains of exp and division per vector step (10% faster in float32 than
    one row)."""
    rows = Z.shape[0]
    n = b.shape[0]
    one = Z.dtype.type(1)
    zero = Z.dtype.type(0)
    for s in range(0, rows, 2):
        z = Z[s]
        y = Z[min(s + 1, rows - 1)]  # (the last row twice if rows is odd: same result)
        for j in range(n):
            v = z[j] + b[j]
            u = y[j] + b[j]
            e = expneg(-abs(v))
            f = expneg(-abs(u))
            z[j] = (one if v >= zero else e) / (one + e)
            y[j] = (one if u >= zero else f) / (one + f)
    return -1


@jit(fastmath=CONTRACT)
def bias_tanh(Z, b):
    """:func:`bias_activate` with TANH."""
    n = b.shape[0]
    one = Z.dtype.type(1)
    two = Z.dtype.type(2)
    zero = Z.dtype.type(0)
    for s in range(Z.shape[0]):
        z = Z[s]
        for j in range(n):
            v = z[j] + b[j]
            a = abs(v)
            e = expneg(-two * a)
            big = (one - e) / (one + e)
            t = tanh_small(a) if a < Z.dtype.type(0.625) else big
            z[j] = t if v >= zero else -t
    return -1


@jit(fastmath=CONTRACT)
def bias_softmax(Z, b):
    """:func:`bias_activate` with SOFTMAX over each row, max-shifted."""
    n = b.shape[0]
    zero = Z.dtype.type(0)
    for s in range(Z.shape[0]):
        z = Z[s]
        mx = z[0] + b[0]
        for j in range(n):
            v = z[j] + b[j]
            z[j] = v
            if not v <= mx:  # larger, or NaN (a NaN maximum stays)
                mx = v if mx == mx else mx
        for j in range(n):
            z[j] -= mx
    for s in range(Z.shape[0]):
        z = Z[s]
        for j in range(n):
            z[j] = expneg(z[j])
        t = zero
        for j in range(n):
            t += z[j]
        for j in range(n):
            z[j] /= t
    return -1


_BIAS_ACTIVATE = {IDENTITY: bias_identity, RELU: bias_relu, SIGMOID: bias_sigmoid,
                  TANH: bias_tanh, SOFTMAX: bias_softmax}


# -- sparse products ----------------------------------------------------------

#: Samples listed together by the sparse kernels (a group), the bytes of one
#: AVX2 register, and of one row of a column block of W by default (two
#: registers: 8 float64 or 16 float32 outputs; blocks of three registers,
#: ``rows=3``, serve the wide hidden layers). A group's accumulators for one
#: block are GROUP x rows registers, which stay in registers over the whole
#: list.
GROUP = 4
VEC_BYTES = 32
ROW_BYTES = 64


def block_width(dtype, rows=2):
    """Outputs per column block of W (of ``rows`` registers) for parameters
    of ``dtype``."""
    return rows * VEC_BYTES // np.dtype(dtype).itemsize


@jit
def aligned(n, like):
    """An uninitialised vector of ``n`` of ``like``'s dtype starting on a 64-byte
    boundary (a cache line), so that each 64-byte row of a column block of W,
    or of the sparse kernel's outputs, is one line: NumPy's large arrays start
    16 bytes into one, and rows straddling two lines made the products about
    10% slower (measured, MNIST 784-100 float32)."""
    pad = ROW_BYTES // like.itemsize
    buf = np.empty(n + pad, dtype=like.dtype)
    off = (-buf.ctypes.data % ROW_BYTES) // like.itemsize
    return buf[off:off + n]


def aligned_empty(shape, dtype):
    """:func:`aligned`, C-ordered of ``shape``."""
    return aligned(int(np.prod(shape)), np.empty(0, dtype)).reshape(shape)


def block_weights(W, rows=2):
    """``W`` (inputs x outputs) as column blocks of ``rows`` registers:
    ``(blocks, inputs, width)``, C-ordered and cache-line aligned, the last
    block padded with zero columns."""
    m, n = W.shape
    bw = block_width(W.dtype, rows)
    nb = (n + bw - 1) // bw
    Wb = aligned_empty((nb, m, bw), W.dtype)
    full = n // bw
    Wb[:full] = W[:, :full * bw].reshape(m, full, bw).transpose(1, 0, 2)
    if full < nb:
        Wb[full, :, :n - full * bw] = W[:, full * bw:]
        Wb[full, :, n - full * bw:] = 0
    return Wb


def register_blocks(n, dtype):
    """``(a, b)``: column blocks of three registers and of two that cover
    ``n`` outputs of ``dtype`` with the fewest padding columns (none but the
    last register's), as many of three as can be. A group's 12 accumulators
    of a three-register block leave the fused multiply-adds more slack than
    8 (four cycles' latency, two a cycle): measured on MNIST (float32,
    784 inputs), products over 512 outputs in 3-register blocks took 0.90 of
    the time in 2-register blocks, over 100 outputs (3 x 24 + 2 x 16 columns
    against 7 x 16) 0.85."""
    return block_counts(n, np.dtype(dtype).itemsize)


@jit
def block_counts(n, itemsize):
    """:func:`register_blocks` for parameters of ``itemsize`` bytes (compiled)."""
    g = -(-n // (VEC_BYTES // itemsize))  # registers
    if g < 2:
        return 0, 1
    b = 0 if g % 3 == 0 else (2 if g % 3 == 1 else 1)
    return (g - 2 * b) // 3, b


def split_weights(W):
    """``W`` as :func:`register_blocks` covers it: blocks of three registers
    (:func:`block_weights`, ``rows=3``, all full) for its first columns, then
    of two for the rest (the last padded with zeros)."""
    a, _ = register_blocks(W.shape[1], W.dtype)
    w3 = a * block_width(W.dtype, 3)
    return block_weights(W[:, :w3], 3), block_weights(W[:, w3:], 2)


def padded_width(n, dtype):
    """The outputs, padding included, of a layer of ``n`` in split blocks."""
    a, b = register_blocks(n, dtype)
    return a * block_width(dtype, 3) + b * block_width(dtype, 2)


# Register accumulators. Numba has no vector types: these intrinsics keep a
# group's GROUP rows of one block as LLVM vectors in a stack slot, which LLVM
# promotes to registers. Each has a plain-Python twin (the function itself;
# the intrinsic is its compiled overload), so the kernels run with
# NUMBA_DISABLE_JIT=1.

def _ety(fty):
    return {types.float64: ir.DoubleType(), types.float32: ir.FloatType()}.get(fty)


def _reg(acc):
    """The LLVM vector of one register of the accumulators ``acc`` (the
    pointer type made by acc_new, to a tuple of ``rows`` dtype values: the
    registers per accumulator row)."""
    return ir.VectorType(_ety(acc.dtype.dtype), VEC_BYTES * 8 // acc.dtype.dtype.bitwidth)


def _elem_ptr(context, builder, aryty, ary, off):
    data = context.make_array(aryty)(context, builder, value=ary).data
    return builder.gep(data, [off])


def _slot(builder, p, vty, i):
    return builder.gep(builder.bitcast(p, vty.as_pointer()), [ir.Constant(ir.IntType(64), i)])


def _fma_group(context, builder, acc, p, wp, loads):
    """``acc[k] += c_k * w`` for k < GROUP: ``c_k`` loaded by ``loads[k]()``
    (a scalar, broadcast), ``w`` the ``rows`` registers at ``wp``; one
    register-sized vector each (a row of 24 float32 as one LLVM vector was
    widened to 32 and spilled)."""
    vty = _reg(acc)
    rows = acc.dtype.count
    item = vty.element.get_abi_size(context.target_data)
    wv = builder.bitcast(wp, vty.as_pointer())
    w = [builder.load(builder.gep(wv, [ir.Constant(ir.IntType(64), j)]), align=item)
         for j in range(rows)]
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty] * 3),
        f"llvm.fma.v{vty.count}{'f64' if item == 8 else 'f32'}")
    lane0 = ir.Constant(ir.IntType(32), 0)
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vty.count), None)
    for k in range(GROUP):
        c = builder.insert_element(ir.Constant(vty, ir.Undefined), loads[k](), lane0)
        c = builder.shuffle_vector(c, ir.Constant(vty, ir.Undefined), zeros)
        for j in range(rows):
            ap = _slot(builder, p, vty, k * rows + j)
            builder.store(builder.call(fma, [c, w[j], builder.load(ap)]), ap)


@intrinsic
def _acc_new_intr(typingctx, like, rows):
    if _ety(like) is None or not isinstance(rows, types.IntegerLiteral):
        return None
    acc = types.CPointer(types.UniTuple(like, rows.literal_value))

    def codegen(context, builder, signature, args):
        p = cgutils.alloca_once(builder, _reg(acc), size=GROUP * rows.literal_value)
        return builder.bitcast(p, context.get_value_type(acc))

    return acc(like, rows), codegen


@intrinsic
def _acc_zero_intr(typingctx, acc):
    def codegen(context, builder, signature, args):
        vty = _reg(acc)
        for i in range(GROUP * acc.dtype.count):
            builder.store(ir.Constant(vty, None), _slot(builder, args[0], vty, i))
        return context.get_dummy_value()

    return types.void(acc), codegen


@intrinsic
def _acc_fma_intr(typingctx, acc, W, woff, C, coff):
    def codegen(context, builder, signature, args):
        item = _reg(acc).element.get_abi_size(context.target_data)
        wp = _elem_ptr(context, builder, signature.args[1], args[1], args[2])
        cp = _elem_ptr(context, builder, signature.args[3], args[3], args[4])
        loads = [lambda k=k: builder.load(builder.gep(cp, [ir.Constant(ir.IntType(64), k)]),
                                          align=item) for k in range(GROUP)]
        _fma_group(context, builder, acc, args[0], wp, loads)
        return context.get_dummy_value()

    return types.void(acc, W, types.intp, C, types.intp), codegen


@intrinsic
def _acc_store_intr(typingctx, acc, Z, off, stride, b, boff, relu):
    def codegen(context, builder, signature, args):
        vty = _reg(acc)
        rows = acc.dtype.count
        item = vty.element.get_abi_size(context.target_data)
        bp = builder.bitcast(_elem_ptr(context, builder, signature.args[4], args[4], args[5]),
                             vty.as_pointer())
        bias = [builder.load(builder.gep(bp, [ir.Constant(ir.IntType(64), j)]), align=item)
                for j in range(rows)]
        zero = ir.Constant(vty, None)
        for k in range(GROUP):
            o = builder.add(args[2], builder.mul(args[3], ir.Constant(ir.IntType(64), k)))
            zp = builder.bitcast(_elem_ptr(context, builder, signature.args[1], args[1], o),
                                 vty.as_pointer())
            for j in range(rows):
                v = builder.fadd(builder.load(_slot(builder, args[0], vty, k * rows + j)), bias[j])
                relu = builder.select(builder.fcmp_ordered("<", v, zero), zero, v)  # NaN stays
                v = builder.select(args[6], relu, v)
                builder.store(v, builder.gep(zp, [ir.Constant(ir.IntType(64), j)]), align=item)
        return context.get_dummy_value()

    return types.void(acc, Z, types.intp, types.intp, b, types.intp, types.boolean), codegen


@intrinsic
def _acc_fma_rows_intr(typingctx, acc, W, woff, A, s0, s1, s2, s3, r):
    def codegen(context, builder, signature, args):
        item = _reg(acc).element.get_abi_size(context.target_data)
        wp = _elem_ptr(context, builder, signature.args[1], args[1], args[2])
        loads = [lambda k=k: builder.load(_item_ptr(context, builder, signature.args[3], args[3],
                                                    args[4 + k], args[8]), align=item)
                 for k in range(GROUP)]
        _fma_group(context, builder, acc, args[0], wp, loads)
        return context.get_dummy_value()

    return types.void(acc, W, types.intp, A, types.intp, types.intp, types.intp, types.intp,
                      types.intp), codegen


def acc_new(like, rows):
    """GROUP accumulator rows of one block of ``rows`` registers (a constant;
    compiled, registers; as Python, an array)."""
    dt = np.asarray(like).dtype
    return np.zeros((GROUP, block_width(dt, rows)), dt)


def acc_zero(acc):
    """Set the accumulators to zero."""
    acc[...] = 0


def acc_fma(acc, W, woff, C, coff):
    """``acc[k] += C[coff + k] * W[woff:woff + width]`` for each k < GROUP
    (fused multiply-adds, in the accumulators' dtype)."""
    w = W[woff:woff + acc.shape[1]]
    for k in range(GROUP):
        acc[k] += C[coff + k] * w


def acc_store(acc, Z, off, stride, b, boff, relu):
    """``Z[off + k * stride:][:width] = acc[k] + b[boff:boff + width]`` for
    each k < GROUP, negative sums set to zero if ``relu`` (NaN kept)."""
    bw = acc.shape[1]
    for k in range(GROUP):
        v = acc[k] + b[boff:boff + bw]
        Z[off + k * stride:off + k * stride + bw] = np.where(relu & (v < 0), 0, v)


def acc_fma_rows(acc, W, woff, A, s0, s1, s2, s3, r):
    """``acc[k] += A[s_k, r] * W[woff:woff + width]`` for k < GROUP (rows
    ``s0..s3`` of A, in A's dtype, which is the accumulators')."""
    w = W[woff:woff + acc.shape[1]]
    for k, s in enumerate((s0, s1, s2, s3)):
        acc[k] += A[s, r] * w


def ctz(word):
    """The index of the lowest set bit of a nonzero unsigned 64-bit ``word``."""
    w = int(word)
    return (w & -w).bit_length() - 1


@overload(acc_new)
def _acc_new_ol(like, rows):
    return lambda like, rows: _acc_new_intr(like, rows)


@overload(acc_zero)
def _acc_zero_ol(acc):
    return lambda acc: _acc_zero_intr(acc)


@overload(acc_fma)
def _acc_fma_ol(acc, W, woff, C, coff):
    return lambda acc, W, woff, C, coff: _acc_fma_intr(acc, W, woff, C, coff)


@overload(acc_store)
def _acc_store_ol(acc, Z, off, stride, b, boff, relu):
    return lambda acc, Z, off, stride, b, boff, relu: _acc_store_intr(acc, Z, off, stride, b,
                                                                     boff, relu)


@overload(acc_fma_rows)
def _acc_fma_rows_ol(acc, W, woff, A, s0, s1, s2, s3, r):
    return lambda acc, W, woff, A, s0, s1, s2, s3, r: _acc_fma_rows_intr(
        acc, W, woff, A, s0, s1, s2, s3, r)


@overload(ctz)
def _ctz_ol(word):
    return lambda word: trailing_zeros(word)


# Nonzero masks and list entries straight from X. Numba's indexing tests
# every index for wrap-around; these intrinsics address ``X[r, s]`` from X's
# strides without that test, and compare eight rows of four columns at once
# (one vector compare per column, the lanes packed into a byte: vmovmskps).
# Measured (MNIST, a chunk of 2,048, float32, first layer): the masks took
# 0.23 ms with scalar tests, 0.13 ms with these; the whole lists 0.57 ms
# with scalar tests and copies, 0.45 ms with these.

def _item_ptr(context, builder, aryty, ary, r, s):
    a = context.make_array(aryty)(context, builder, value=ary)
    return cgutils.get_item_pointer(context, builder, aryty, a, [r, s])


@intrinsic
def _nz_mask8_intr(typingctx, X, r, s0, s1, s2, s3):
    if not isinstance(X, types.Array) or X.ndim != 2 or _ety(X.dtype) is None:
        return None

    def codegen(context, builder, signature, args):
        ety = _ety(X.dtype)
        vty = ir.VectorType(ety, 8)
        item = ety.get_abi_size(context.target_data)
        anynz = None
        for k in range(GROUP):
            p = _item_ptr(context, builder, signature.args[0], args[0], args[1], args[2 + k])
            v = builder.load(builder.bitcast(p, vty.as_pointer()), align=item)
            nz = builder.fcmp_unordered("!=", v, ir.Constant(vty, None))  # NaN: nonzero
            anynz = nz if anynz is None else builder.or_(anynz, nz)
        return builder.zext(builder.bitcast(anynz, ir.IntType(8)), ir.IntType(64))

    return types.uint64(X, types.intp, types.intp, types.intp, types.intp, types.intp), codegen


@intrinsic
def _put4_intr(typingctx, cc, e, X, r, s0, s1, s2, s3):
    if _ety(cc.dtype) is None or _ety(X.dtype) is None:
        return None

    def codegen(context, builder, signature, args):
        ety = _ety(cc.dtype)
        vty = ir.VectorType(ety, GROUP)
        vec = ir.Constant(vty, ir.Undefined)
        for k in range(GROUP):
            p = _item_ptr(context, builder, signature.args[2], args[2], args[3], args[4 + k])
            x = context.cast(builder, builder.load(p), X.dtype, cc.dtype)
            vec = builder.insert_element(vec, x, ir.Constant(ir.IntType(32), k))
        dst = _item_ptr(context, builder, signature.args[0], args[0], args[1],
                        ir.Constant(ir.IntType(64), 0))
        builder.store(vec, builder.bitcast(dst, vty.as_pointer()),
                      align=ety.get_abi_size(context.target_data))
        return context.get_dummy_value()

    return types.void(cc, types.intp, X, types.intp, types.intp, types.intp, types.intp,
                      types.intp), codegen


@intrinsic
def _popcount_intr(typingctx, word):
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(64), [ir.IntType(64)]), "llvm.ctpop.i64")
        return builder.call(fn, [args[0]])

    return types.intp(types.uint64), codegen


def nz_mask8(X, r, s0, s1, s2, s3):
    """Bit j (j < 8) set where any of ``X[r + j, s0]``, ..., ``X[r + j, s3]``
    is nonzero (or NaN). Rows ``r:r + 8`` of X must exist and be contiguous."""
    nz = (X[r:r + 8, s0] != 0) | (X[r:r + 8, s1] != 0) | (X[r:r + 8, s2] != 0) \
        | (X[r:r + 8, s3] != 0)
    return np.uint64(sum(int(v) << j for j, v in enumerate(nz)))


def put4(cc, e, X, r, s0, s1, s2, s3):
    """``cc[e, k] = X[r, s_k]`` for k < 4, converted to cc's dtype."""
    cc[e] = (X[r, s0], X[r, s1], X[r, s2], X[r, s3])


def popcount(word):
    """The number of set bits of an unsigned 64-bit ``word``."""
    return bin(int(word)).count("1")


@overload(nz_mask8)
def _nz_mask8_ol(X, r, s0, s1, s2, s3):
    return lambda X, r, s0, s1, s2, s3: _nz_mask8_intr(X, r, s0, s1, s2, s3)


@overload(put4)
def _put4_ol(cc, e, X, r, s0, s1, s2, s3):
    return lambda cc, e, X, r, s0, s1, s2, s3: _put4_intr(cc, e, X, r, s0, s1, s2, s3)


@overload(popcount)
def _popcount_ol(word):
    return lambda word: _popcount_intr(word)


@jit
def group_word(X, g, n, s0, s1, s2, s3):
    """Bit j (j < n <= 64) set where any of ``X[g + j, s_k]`` (k < 4) is
    nonzero (or NaN): eight rows a step when X's rows are contiguous."""
    word = np.uint64(0)
    j = 0
    if X.strides[0] == X.itemsize:
        while j + 8 <= n:
            word |= nz_mask8(X, g + j, s0, s1, s2, s3) << np.uint64(j)
            j += 8
    for r in range(g + j, g + n):
        nz = (X[r, s0] != 0) | (X[r, s1] != 0) | (X[r, s2] != 0) | (X[r, s3] != 0)
        word |= np.uint64(nz) << np.uint64(r - g)
    return word


def bits_row(bits, g):
    """Row ``g`` of ``bits``, or None if ``bits`` is None (compiled: decided
    when the caller is typed)."""
    return None if bits is None else bits[g]


@overload(bits_row)
def _bits_row_ol(bits, g):
    if isinstance(bits, types.NoneType):
        return lambda bits, g: None
    return lambda bits, g: bits[g]


@jit
def list_group(X, m, s0, s1, s2, s3, k1, k2, k3, idx, cc, e, bits):
    """List one group (samples ``s0..s3`` of X; ``k1..k3`` are 1, or 0 for a
    padding twin) from entry ``e`` on: the inputs ``r < m`` where any of the
    four is nonzero (or NaN), as ``idx[e] = r`` and the four values,
    converted to the lists' dtype, in
    ``cc[e]``. Returns the entry after the last.

    The nonzero test runs 64 inputs at a time into a bit mask
    (:func:`group_word`), then the set bits are visited; or the masks come
    made: ``bits[r // 64]`` (None: make them), as the mini-batch kernel's
    gate makes them while counting (:func:`fastmlp.kernels.minibatch.row_work`)."""
    t = cc.dtype.type
    one = np.uint64(1)
    whole = k1 == 1 and k2 == 1 and k3 == 1  # no twins: copy with put4
    for g in range(0, m, 64):
        if bits is None:
            word = group_word(X, g, min(64, m - g), s0, s1, s2, s3)
        else:
            word = bits[g // 64]
        while word:
            r = g + ctz(word)
            word &= word - one
            idx[e] = r
            if whole:
                put4(cc, e, X, r, s0, s1, s2, s3)
            else:
                cc[e, 0] = t(X[r, s0])
                cc[e, 1] = t(X[r, s1]) * k1
                cc[e, 2] = t(X[r, s2]) * k2
                cc[e, 3] = t(X[r, s3]) * k3
            e += 1
    return e


@jit
def list_groups(X, m, cols, g0, idx, cc, starts, bits):
    """List groups ``g0, g0 + 1, ...`` of the columns ``cols`` of X (group g:
    ``cols[4g:4g + 4]``, the last group's missing ones zero twins) while they
    fit (:func:`list_group`; group g's masks ``bits[g]``, or None to make
    them); group k's entries are ``starts[k]:starts[k + 1]``. Returns the
    number of groups listed."""
    t = cc.dtype.type
    cap = idx.shape[0]
    n = cols.shape[0]
    total = (n + GROUP - 1) // GROUP
    e = 0
    k = 0
    while g0 + k < total and k < starts.shape[0] - 1 and e + m <= cap:
        starts[k] = e
        q = GROUP * (g0 + k)
        e = list_group(X, m, cols[q], cols[min(q + 1, n - 1)], cols[min(q + 2, n - 1)],
                       cols[min(q + 3, n - 1)], t(q + 1 < n), t(q + 2 < n), t(q + 3 < n),
                       idx, cc, e, bits_row(bits, g0 + k))
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
        for r in range(0, m, 64):
            e += popcount(group_word(X, r, min(64, m - r), s0, s1, s2, s3))
    return e


@jit
def strided_fill(X, m, n, step):
    """The fill (listed entries over dense ones) of every ``step``-th group
    of four of the columns ``0:n`` of X: a cheap estimate of the whole."""
    e = 0
    k = 0
    for q in range(0, n, GROUP * step):
        s1, s2, s3 = min(q + 1, n - 1), min(q + 2, n - 1), min(q + 3, n - 1)
        for r in range(0, m, 64):
            e += popcount(group_word(X, r, min(64, m - r), q, s1, s2, s3))
        k += 1
    return e / max(1, k * m)


@jit
def list_column_groups(X, m, cols, g0, g1, idx, cc, starts):
    """List groups ``g0:g1`` of the columns ``cols`` of X (group g: samples
    ``cols[4g:4g + 4]``, the last group's missing ones zero twins) with
    :func:`list_group`, from entry ``starts[g0]`` on; sets ``starts[g0 + 1:
    g1 + 1]``. The lists must hold :func:`count_column_groups` entries."""
    t = cc.dtype.type
    n = cols.shape[0]
    e = starts[g0]
    for g in range(g0, g1):
        q = GROUP * g
        e = list_group(X, m, cols[q], cols[min(q + 1, n - 1)], cols[min(q + 2, n - 1)],
                       cols[min(q + 3, n - 1)], t(q + 1 < n), t(q + 2 < n), t(q + 3 < n),
                       idx, cc, e, None)
        starts[g + 1] = e


@jit
def group_block(Wf, woff, wstride, idx, ccf, starts, k, Zf, zoff, zstride, b, boff, relu, rows):
    """For listed groups ``0:k``, one column block (of ``rows`` registers, a
    constant) of their outputs: the block's row r starts at ``woff + r *
    wstride`` in ``Wf`` (flat: ``wstride`` is the block's width for W in
    column blocks, W's width for W row-major), group h's GROUP output rows
    at ``zoff + GROUP * h * zstride`` in ``Zf`` (flat, row stride
    ``zstride``), plus the biases ``b[boff:]`` (then the ReLU if ``relu``).
    Sums in list order (one fused multiply-add per entry and output)."""
    acc = acc_new(Wf[0], rows)
    for h in range(k):
        acc_zero(acc)
        for q in range(starts[h], starts[h + 1]):
            acc_fma(acc, Wf, woff + idx[q] * wstride, ccf, GROUP * q)
        acc_store(acc, Zf, zoff + GROUP * h * zstride, zstride, b, boff, relu)


@jit(inline="always")
def run_end(starts, k, cap, h0):
    """The end of the run of groups from ``h0`` holding at most ``cap``
    entries (at least one group)."""
    h1 = h0 + 1
    while h1 < k and starts[h1 + 1] - starts[h0] <= cap:
        h1 += 1
    return h1


@jit
def group_layer(W3, W2, idx, ccf, starts, k, Z, cap, b, relu):
    """Rows ``0:4k`` of ``Z`` (C-ordered, the blocks' padded width) from the
    listed groups ``0:k`` (entries ``starts[h]:starts[h + 1]`` of ``idx``
    and of ``ccf``, the flat four values an entry), plus the biases ``b``
    (padded as the blocks; then the ReLU if ``relu``). W arrives as column
    blocks of three registers ``W3`` then of two ``W2`` (:func:`split_weights`;
    either may hold none; ``W3`` may be None, and then the three-register
    kernel is not compiled: :func:`sparse_layer`). For runs of groups holding at most ``cap``
    entries (so that a run's lists stay in the core's L2 cache), each block,
    small enough to stay there too, serves the whole run
    (:func:`group_block`). Adding the bias and the ReLU as the outputs leave
    the registers saves a pass over them (0.2 ms of a chunk of 2,048 x 512
    float32, 2% of 784-512-512-10)."""
    n2, m2, bw2 = W2.shape
    W2f = W2.reshape(-1)
    Zf = Z.reshape(-1)
    zs = Z.shape[1]
    c2 = 0  # the first column of the two-register blocks
    if W3 is not None:
        c2 = W3.shape[0] * W3.shape[2]
    h0 = 0
    while h0 < k:
        h1 = run_end(starts, k, cap, h0)
        z0 = GROUP * h0 * zs
        if W3 is not None:
            n3, m3, bw3 = W3.shape
            W3f = W3.reshape(-1)
            for blk in range(n3):
                group_block(W3f, blk * m3 * bw3, bw3, idx, ccf, starts[h0:], h1 - h0, Zf,
                            z0 + blk * bw3, zs, b, blk * bw3, relu, 3)
        for blk in range(n2):
            group_block(W2f, blk * m2 * bw2, bw2, idx, ccf, starts[h0:], h1 - h0, Zf,
                        z0 + c2 + blk * bw2, zs, b, c2 + blk * bw2, relu, 2)
        h0 = h1


@jit
def sparse_columns(X, m, cols, W3, W2, Z, idx, cc, starts, b, relu, bits):
    """``Z[i, :] = X[:m, cols[i]] @ W + b`` (then the ReLU if ``relu``) for
    the columns ``cols`` of X (inputs x samples, any layout and float dtype),
    over the nonzeros only. Returns the number of listed entries.

    ``W3``, ``W2`` are W in column blocks (:func:`split_weights`); ``b`` the
    biases padded as the outputs are;
    ``Z`` (C-ordered) has at least ``len(cols)`` rows rounded up to GROUP
    and the blocks' padded width, and its padding columns receive the
    padding's products. The columns are listed in groups of four
    (:func:`list_groups`; ``bits``: the groups' nonzero masks, made by the
    caller, or None), as many groups as the lists ``idx``, ``cc`` (length at
    least ``m``) and ``starts`` hold; then :func:`group_layer` runs them.
    """
    total = (cols.shape[0] + GROUP - 1) // GROUP
    ccf = cc.reshape(-1)
    listed = 0
    g0 = 0
    while g0 < total:
        k = list_groups(X, m, cols, g0, idx, cc, starts, bits)
        group_layer(W3, W2, idx, ccf, starts, k, Z[GROUP * g0:], idx.shape[0], b, relu)
        listed += starts[k]
        g0 += k
    return listed


@jit
def sparse_layer(X, m, lo, hi, Wb, Z, idx, cc, starts):
    """:func:`sparse_columns` of the samples ``lo:hi`` of X, in order, with
    W in two-register blocks only (:func:`block_weights`) and no biases:
    ``Z[s - lo, :] = X[:m, s] @ W``."""
    zero = np.zeros(Wb.shape[0] * Wb.shape[2], Wb.dtype)
    return sparse_columns(X, m, np.arange(lo, hi), None, Wb, Z, idx, cc, starts, zero, False,
                          None)


@jit
def sort_columns(X, lo, hi, keys, cols, counts, ranks):
    """``cols[:hi - lo]``: the samples ``lo:hi`` of X ordered by the
    reflected Gray code of their key bits (bit i: ``X[keys[i], s] != 0``,
    ``keys[0]`` the most significant), a stable counting sort (``counts``
    holds ``2**len(keys) + 1`` entries, ``ranks`` ``hi - lo``).

    Samples whose nonzeros fall on the same key inputs then share groups of
    four, so the groups' lists (the union of their nonzero inputs) are
    shorter, and each sample's outputs are the same bits as in any other
    grouping (its zero inputs add exact zeros). On MNIST, with the ten inputs
    nonzero closest to half the time as keys: fill 0.39 to 0.33 for the
    first layer and 0.81 to 0.75 for the ReLU outputs after it (784-512)."""
    n = hi - lo
    ranks[:n] = 0
    for j in range(keys.shape[0]):  # one key over all samples: a constant stride
        x = X[keys[j]]
        for i in range(n):
            r = ranks[i]
            bit = (r & 1) ^ (x[lo + i] != 0)  # Gray code to binary, most significant first
            ranks[i] = 2 * r + bit
    counts[:] = 0
    for i in range(n):
        counts[ranks[i] + 1] += 1
    for j in range(1, counts.shape[0]):
        counts[j] += counts[j - 1]
    for i in range(n):
        cols[counts[ranks[i]]] = lo + i
        counts[ranks[i]] += 1


@jit
def unsort_rows(A, cols, lo, out):
    """``out[cols[i] - lo, :] = A[i, :n]`` for every row i of A, n the width
    of ``out``: rows of samples in :func:`sort_columns` order back in place."""
    n = out.shape[1]
    for i in range(A.shape[0]):
        o = out[cols[i] - lo]
        a = A[i]
        for j in range(n):
            o[j] = a[j]


@jit
def dense_layer(A, m, Wb, Z, b, relu):
    """``Z[i, :] = A[i, :m] @ W + b`` (then the ReLU if ``relu``) for every
    row i of A, with W in two-register column blocks (:func:`block_weights`)
    and ``b`` and ``Z`` as for :func:`sparse_columns`. For narrow layers
    (the 10 outputs of a classifier), where BLAS runs far below its speed on
    wide ones: groups of four rows accumulate one block in registers over
    every input, as the sparse kernel does over the listed ones (no lists to
    make); the last group's missing rows repeat its last (their outputs land
    in Z's padding rows). Measured (one thread, 2,048 rows, time over
    OpenBLAS's): 0.76 / 0.73 for 512 inputs to 10 outputs (float32 /
    float64), 0.86 / 0.77 for 100 to 10, 0.81 / 0.78 for 512 to 32, 0.98 /
    1.05 for 512 to 64. (Skipping the inputs zero in all four rows after a
    ReLU, as the lists do, measured no faster for 512 to 10.)
    """
    nb, mw, bw = Wb.shape
    Wf = Wb.reshape(-1)
    Zf = Z.reshape(-1)
    zs = Z.shape[1]
    rows = A.shape[0]
    acc = acc_new(Wf[0], 2)
    for blk in range(nb):
        woff = blk * mw * bw
        for h in range((rows + GROUP - 1) // GROUP):
            s0 = GROUP * h
            s1, s2, s3 = min(s0 + 1, rows - 1), min(s0 + 2, rows - 1), min(s0 + 3, rows - 1)
            acc_zero(acc)
            for r in range(m):
                acc_fma_rows(acc, Wf, woff + r * bw, A, s0, s1, s2, s3, r)
            acc_store(acc, Zf, s0 * zs + blk * bw, zs, b, blk * bw, relu)


@jit
def nonzero_counts(X, cols, counts):
    """``counts[r]``: in how many of the columns ``cols`` of X input r is
    nonzero (or NaN)."""
    counts[:] = 0
    for s in cols:
        for r in range(X.shape[0]):
            counts[r] += X[r, s] != 0


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
