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
zeros: :func:`sparse_layer` (from X, any layout and dtype) and
:func:`sparse_rows` (from activations) list, branch-free and for two samples
at a time, the inputs where either is nonzero with both samples' values
(converted to the parameters' dtype), then :func:`pair_product` forms both
samples' outputs, loading each listed row of W once for the two. The lists
are one pair's (length ``m``, reused while in L1), so the workspace is
``O(m)`` whatever the data.

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
from numba.extending import intrinsic, overload

from ._jit import REASSOC, jit
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


def expneg(x):
    """``exp(x)`` for ``x <= 0`` (see the module docstring); a Numba overload.
    Called as plain Python (``NUMBA_DISABLE_JIT=1``) it is NumPy's ``exp``."""
    return np.exp(x)


@overload(expneg)
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


def tanh_small(x):
    """``tanh(x)`` for ``|x| < 0.625`` (Cephes' rational form); a Numba overload.
    Called as plain Python (``NUMBA_DISABLE_JIT=1``) it is NumPy's ``tanh``."""
    return np.tanh(x)


@overload(tanh_small)
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


# -- bias and activation ------------------------------------------------------

@jit(fastmath=CONTRACT)
def bias_activate(Z, b, code):
    """In place on the rows of ``Z`` (samples x units, unit stride): add the
    biases ``b`` and apply activation ``code``. Returns how many entries are
    nonzero after a ReLU (for choosing the next layer's path), else -1.
    """
    rows, n = Z.shape
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

@jit(fastmath=REASSOC)
def pair_product(idx, c0, c1, e, W, o0, o1):
    """``o0 = sum_k c0[k] W[idx[k]]`` and ``o1`` likewise from ``c1``, over the
    first ``e`` listed rows. Four rows of W are taken at a time, so each
    output row is loaded and stored once per four, and each W row loaded
    once serves both samples."""
    n = W.shape[1]
    zero = o0.dtype.type(0)
    for j in range(n):
        o0[j] = zero
        o1[j] = zero
    q = 0
    while q + 4 <= e:
        s0, s1, s2, s3 = W[idx[q]], W[idx[q + 1]], W[idx[q + 2]], W[idx[q + 3]]
        a0, a1, a2, a3 = c0[q], c0[q + 1], c0[q + 2], c0[q + 3]
        b0, b1, b2, b3 = c1[q], c1[q + 1], c1[q + 2], c1[q + 3]
        for j in range(n):
            x0, x1, x2, x3 = s0[j], s1[j], s2[j], s3[j]
            o0[j] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
            o1[j] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
        q += 4
    while q < e:
        w, a0, b0 = W[idx[q]], c0[q], c1[q]
        for j in range(n):
            o0[j] += a0 * w[j]
            o1[j] += b0 * w[j]
        q += 1


@jit
def sparse_layer(X, lo, hi, W, Z, idx, c0, c1):
    """``Z[s - lo] = X[:, s] @ W`` for samples ``lo:hi`` of X (features x
    samples, any layout and float dtype), over the nonzeros only.

    Two samples at a time (pair h: ``lo + 2h`` and ``lo + 2h + 1``; past
    ``hi``, a zero twin): the features where either is nonzero are listed,
    branch-free, into ``idx`` with both values, converted to W's dtype, in
    ``c0``, ``c1`` (workspace of length ``X.shape[0]``), then
    :func:`pair_product` fills rows ``2h`` and ``2h + 1`` of ``Z``, which has
    an even number of rows (at least ``hi - lo``) and W's width.
    """
    m = X.shape[0]
    t = W.dtype.type
    for h in range((hi - lo + 1) // 2):
        s0 = lo + 2 * h
        s1 = s0 + 1 if s0 + 1 < hi else s0
        keep = t(1) if s0 + 1 < hi else t(0)
        e = 0
        for i in range(m):  # always write; advance past a nonzero
            u = t(X[i, s0])
            v = t(X[i, s1]) * keep
            idx[e] = i
            c0[e] = u
            c1[e] = v
            e += (u != 0) | (v != 0)
        pair_product(idx, c0, c1, e, W, Z[2 * h], Z[2 * h + 1])


@jit
def sparse_rows(A, W, Z, idx, c0, c1):
    """``Z[:b] = A @ W`` over the nonzeros of the rows of ``A`` (b x m,
    C-contiguous activations), as :func:`sparse_layer`. Returns the number
    of listed entries."""
    b, m = A.shape
    t = W.dtype.type
    total = 0
    for h in range((b + 1) // 2):
        a = A[2 * h]
        c = A[min(2 * h + 1, b - 1)]
        keep = t(1) if 2 * h + 1 < b else t(0)
        e = 0
        for i in range(m):
            u = a[i]
            v = c[i] * keep
            idx[e] = i
            c0[e] = u
            c1[e] = v
            e += (u != 0) | (v != 0)
        pair_product(idx, c0, c1, e, W, Z[2 * h], Z[2 * h + 1])
        total += e
    return total


@jit
def density_sample(X, cols):
    """The fraction of nonzeros in columns ``cols`` of X, and the fill of
    their pair lists (entries listed by :func:`pair_scan` over the dense
    size), counted over consecutive pairs of the given columns."""
    m = X.shape[0]
    nnz = 0
    fill = 0
    k = cols.shape[0]
    for p in range(k // 2):
        s0, s1 = cols[2 * p], cols[2 * p + 1]
        for i in range(m):
            u, v = X[i, s0] != 0, X[i, s1] != 0
            nnz += u + v
            fill += u | v
    total = max(1, (k // 2) * 2 * m)
    return nnz / total, 2.0 * fill / total


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
