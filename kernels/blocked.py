"""Exact per-sample SGD at matrix-multiply speed: blocked, deferred low-rank updates.

Per-sample SGD reads the first weight matrix at least once per sample. But
within a block of k consecutive steps with inputs ``x_0 .. x_{k-1}`` (rows of
``Xb``), the first layer's weights seen by step j are

    W_j = W - lr * sum_{i<j} x_i delta_i^T

(``delta_i`` the gradient of the loss with respect to the first layer's
pre-activation at step i), so its pre-activation is

    z_j = W_j^T x_j + b_j = P[j] - lr * sum_{i<j} G[j, i] * delta_i + b_j

with ``P = Xb @ W`` and ``G = Xb @ Xb^T``, two GEMMs for the whole block. The
first layer needs no input gradient, so nothing else reads W during the
block, and at its end the k pending rank-1 updates are one more GEMM:
``W -= lr * Xb^T @ D``. The biases are updated per step as usual, and the
layers above the first keep the per-sample fused step
(:func:`fastmlp.kernels.fused.upper_step`). The trajectory is the notebook's,
up to rounding.

Per sample, the work on W drops from a pass over it to a 1/k share of two
GEMMs (which BLAS runs on every core), plus ``k * (inputs + outputs / 2)``
multiply-adds for the Gram and correction terms.
"""

import numpy as np

from ._jit import REASSOC, jit
from .activations import activate
from .specialise import kernel_for
from .step import step_state, upper_step, write_gradients


@jit(fastmath=REASSOC, inline="always")
def corrected_preactivation(p, b, gram_row, Dm, j, lr, z):
    """``z = p + b - lr * sum_{i<j} gram_row[i] * Dm[i]``: the first layer's
    pre-activation of step j from the block's products."""
    n = z.shape[0]
    for q in range(n):
        z[q] = p[q]
    for i in range(j):
        c = lr * gram_row[i]
        if c != 0:
            d = Dm[i]
            for q in range(n):
                z[q] -= c * d[q]
    for q in range(n):
        z[q] += b[q]


#: Inputs whose squared norms exceed this could overflow a Gram term, which
#: the one-pass kernel never forms (|x_i . x_j| <= |x_i| |x_j|, Cauchy-Schwarz):
#: a block holding one is taken one step at a time (k = 1: no Gram terms), so
#: the trajectory stays finite wherever the notebook's does.
GRAM_SAFE = 0.25


# -- sparse inputs ---------------------------------------------------------------
#
# On MNIST four pixels in five are zero. The one-pass kernel already skips
# their rows; dense GEMMs cannot, so the products above would do five times
# the work. The same identity works on the block's nonzeros instead: with
# the block held as compressed rows (column indices and values per sample),
#
#   P[j]     = sum over nonzero p of x_j[p] * W[p]       (W as at the block's start)
#   G[i, j]  = sum over nonzero p of x_i[p] * x_j[p]     (x_j read dense from X)
#   W[p]    -= lr * x_i[p] * delta_i                     (at the block's end)
#
# Per sample that reads the rows of its nonzero pixels once and writes nothing
# until the block ends, where each touched row is written once for the whole
# block; the one-pass kernel reads and writes the rows of two samples' pixels
# per step. The Gram terms are dense dot products of rows already in cache:
# vectorised, they cost less than gathering at the nonzeros.
#
# Measured on MNIST (784-100-10, one thread): about 1.1x the one-pass kernel at
# k = 8..32, not more. Both kernels do the same multiply-adds on W per sample
# (the rows of its nonzeros, once forward and once for the update); blocking
# only saves memory traffic, and half of each step is fixed work above the
# first layer. The tuner picks it only where it measures faster.


#: The lowest set bit's position of every byte (0 for 0, never looked up).
_LOWEST_BIT = np.array([(b & -b).bit_length() - 1 if b else 0 for b in range(256)], dtype=np.int64)


@jit
def compress_rows(X, idx, start, kb, cols, vals, ptr):
    """Store rows ``X[idx[start:start + kb]]`` as compressed rows: sample j's
    nonzero columns and values at ``cols[ptr[j]:ptr[j + 1]]`` and ``vals[...]``.
    Return the largest squared norm of the rows (inf if one overflows).
    """
    m = X.shape[1]
    q = 0
    ptr[0] = 0
    top = X.dtype.type(0)
    for j in range(kb):
        x = X[idx[start + j]]
        norm2 = X.dtype.type(0)
        p = 0
        while p + 8 <= m:
            # Which of eight inputs are nonzero, as bits: compares without
            # branches; zeros come in runs (background), so most words are 0.
            bits = 0
            for r in range(8):
                bits |= (x[p + r] != 0) << r
            while bits:
                r = _LOWEST_BIT[bits]
                v = x[p + r]
                cols[q] = p + r
                vals[q] = v
                norm2 += v * v
                q += 1
                bits &= bits - 1
            p += 8
        for r in range(p, m):
            v = x[r]
            cols[q] = r
            vals[q] = v
            norm2 += v * v
            q += v != 0
        ptr[j + 1] = q
        top = max(top, norm2)
    return top


@jit(fastmath=REASSOC)
def sparse_product(W, cols, vals, lo, hi, z):
    """``z = W.T @ x`` for the compressed row ``cols[lo:hi], vals[lo:hi]``,
    four rows of W at a time (so z is loaded and stored once per four)."""
    n = z.shape[0]
    z[:] = 0
    q = lo
    while q + 4 <= hi:
        w0, w1, w2, w3 = W[cols[q]], W[cols[q + 1]], W[cols[q + 2]], W[cols[q + 3]]
        x0, x1, x2, x3 = vals[q], vals[q + 1], vals[q + 2], vals[q + 3]
        for c in range(n):
            z[c] += x0 * w0[c] + x1 * w1[c] + x2 * w2[c] + x3 * w3[c]
        q += 4
    while q < hi:
        w0, x0 = W[cols[q]], vals[q]
        for c in range(n):
            z[c] += x0 * w0[c]
        q += 1


@jit(fastmath=REASSOC)
def gram_corrections(X, idx, start, j, Dm, lr, z):
    """``z -= lr * sum_{i<j} (x_i . x_j) * Dm[i]``, x_i the block's inputs:
    the updates of the block's earlier steps, seen by step j. The dot
    products run dense (vectorised, on rows in cache), two at a time."""
    x = X[idx[start + j]]
    m, n = x.shape[0], z.shape[0]
    i = 0
    while i < j:
        two = i + 1 < j
        x0 = X[idx[start + i]]
        x1 = X[idx[start + i + 1]] if two else x0
        g0 = x.dtype.type(0)
        g1 = x.dtype.type(0)
        for p in range(m):
            g0 += x0[p] * x[p]
            g1 += x1[p] * x[p]
        c0 = lr * g0
        c1 = lr * g1 if two else z.dtype.type(0)
        d0 = Dm[i]
        d1 = Dm[i + 1] if two else d0
        for r in range(n):
            z[r] -= c0 * d0[r] + c1 * d1[r]
        i += 2


@jit
def by_column(cols, vals, ptr, kb, m, count, crow, cval):
    """Regroup the block's compressed rows by column: the nonzeros of input p
    are ``(crow, cval)[count[p]:count[p + 1]]`` (their step and value), so the
    block's update writes each touched row of W once."""
    count[:] = 0
    nnz = ptr[kb]
    for q in range(nnz):
        count[cols[q] + 1] += 1
    for p in range(m):
        count[p + 1] += count[p]
    for j in range(kb):
        for q in range(ptr[j], ptr[j + 1]):
            p = cols[q]
            s = count[p]
            crow[s] = j
            cval[s] = vals[q]
            count[p] = s + 1
    for p in range(m, 0, -1):  # the fill moved each start to the next: move back
        count[p] = count[p - 1]
    count[0] = 0


@jit(fastmath=REASSOC)
def sparse_update(W, count, crow, cval, Dm, lr):
    """``W -= lr * Xb^T @ Dm`` from the block's nonzeros grouped by input:
    each touched row of W is read and written once, its changes summed
    four at a time."""
    m, n = W.shape
    for p in range(m):
        lo, hi = count[p], count[p + 1]
        if lo == hi:
            continue
        w = W[p]
        q = lo
        while q + 4 <= hi:
            c0, c1, c2, c3 = lr * cval[q], lr * cval[q + 1], lr * cval[q + 2], lr * cval[q + 3]
            d0, d1, d2, d3 = Dm[crow[q]], Dm[crow[q + 1]], Dm[crow[q + 2]], Dm[crow[q + 3]]
            for r in range(n):
                w[r] -= c0 * d0[r] + c1 * d1[r] + c2 * d2[r] + c3 * d3[r]
            q += 4
        while q < hi:
            c0, d0 = lr * cval[q], Dm[crow[q]]
            for r in range(n):
                w[r] -= c0 * d0[r]
            q += 1


# -- the first layer's blocks -------------------------------------------------
#
# Small kernels, each compiled once per dtype and shared by every network
# shape: the kernels generated per shape (:mod:`fastmlp.kernels.specialise`)
# call them, as does :func:`sgd_blocked_generic`. Dense and sparse blocks are
# separate functions, so a call compiles only its own kind.


@jit(inline="always")
def safe_norm(P):
    """The largest squared input norm a block's Gram terms take (see GRAM_SAFE),
    as float64: GRAM_SAFE times the largest finite value of P's dtype."""
    return GRAM_SAFE * (1.7976931348623157e308 if P.itemsize == 8 else 3.4028234663852886e38)


@jit(inline="always")
def dense_workspace(P, m0, n0, k):
    """A dense block's buffers: its inputs, products ``Xb @ W``, Gram matrix, and
    the update ``Xb^T @ Dm``."""
    return (np.empty(k * m0, dtype=P.dtype), np.empty(k * n0, dtype=P.dtype),
            np.empty(k * k, dtype=P.dtype), np.empty((m0, n0), dtype=P.dtype))


@jit(inline="always")
def sparse_workspace(P, m0, n0, k):
    """A sparse block's buffers: its compressed rows, and the same regrouped by input."""
    return (np.empty(k * m0, dtype=np.int64), np.empty(k * m0, dtype=P.dtype),
            np.empty(k + 1, dtype=np.int64), np.empty(m0 + 1, dtype=np.int64),
            np.empty(k * m0, dtype=np.int64), np.empty(k * m0, dtype=P.dtype))


@jit(inline="always")
def dense_begin(X, idx, start, kb, W, ws, safe):
    """Prepare a dense block of ``kb`` steps from ``start``: its inputs, Gram
    matrix and products ``Xb @ W``. Return the steps the block really takes:
    1 where a Gram term could overflow."""
    Xbuf, Pbuf, Gbuf = ws[0], ws[1], ws[2]
    m0, n0 = W.shape
    Xb = Xbuf[:kb * m0].reshape((kb, m0))
    Gm = Gbuf[:kb * kb].reshape((kb, kb))
    for j in range(kb):  # (loops: a row assignment compiles a shape check, for seconds)
        x, xb = X[idx[start + j]], Xb[j]
        for p in range(m0):
            xb[p] = x[p]
    np.dot(Xb, Xb.T, Gm)
    top = Gm[0, 0]
    for j in range(1, kb):
        top = max(top, Gm[j, j])
    if kb > 1 and not top <= safe:
        kb = 1
    np.dot(Xbuf[:kb * m0].reshape((kb, m0)), W, Pbuf[:kb * n0].reshape((kb, n0)))
    return kb


@jit
def sparse_begin(X, idx, start, kb, W, ws, safe):
    """Prepare a sparse block of ``kb`` steps from ``start``: its compressed rows.
    Return the steps the block really takes: 1 where a Gram term could overflow."""
    if compress_rows(X, idx, start, kb, ws[0], ws[1], ws[2]) > safe and kb > 1:
        kb = 1  # (the first row's entries stand as they are)
    return kb


@jit(inline="always")
def dense_preactivation(ws, kb, j, b, Dm, lr, z):
    """The first layer's pre-activation of a dense block's step j, into ``z``."""
    n0 = z.shape[0]
    corrected_preactivation(ws[1][j * n0:(j + 1) * n0], b, ws[2][j * kb:(j + 1) * kb], Dm, j,
                            lr, z)


@jit
def sparse_preactivation(X, idx, start, j, W, b, Dm, lr, ws, z):
    """The first layer's pre-activation of a sparse block's step j, into ``z``."""
    ptr = ws[2]
    sparse_product(W, ws[0], ws[1], ptr[j], ptr[j + 1], z)
    gram_corrections(X, idx, start, j, Dm, lr, z)
    for q in range(z.shape[0]):
        z[q] += b[q]


@jit(inline="always")
def dense_end(kb, W, ws, Dm, lr):
    """Apply a dense block's deferred first-layer updates: ``W -= lr * Xb^T @ Dm``."""
    m0, n0 = W.shape
    U = ws[3]
    np.dot(ws[0][:kb * m0].reshape((kb, m0)).T, Dm[:kb], U)
    for i in range(m0):
        for j in range(n0):
            W[i, j] -= lr * U[i, j]


@jit
def sparse_end(kb, W, ws, Dm, lr):
    """Apply a sparse block's deferred first-layer updates, each touched row once."""
    cols, vals, ptr, count, crow, cval = ws
    by_column(cols, vals, ptr, kb, W.shape[0], count, crow, cval)
    sparse_update(W, count, crow, cval, Dm, lr)


#: Run the kernels specialised per network shape (:mod:`fastmlp.kernels.specialise`);
#: False runs :func:`sgd_blocked_generic` (for comparisons).
SPECIALISE = True


def sgd_blocked(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits, block, sparse):
    """Run one SGD step per entry of ``idx``, as
    :func:`fastmlp.kernels.per_sample.sgd_per_sample`, but with the first
    layer's updates deferred over blocks of ``block`` steps.

    Same arguments as ``sgd_per_sample`` (but ``dense``), plus ``block``
    (k >= 1) and ``sparse``: True works on the block's nonzero inputs (for inputs at most
    about half nonzero, such as MNIST), False with GEMMs. Buffers are made
    once per call: no step allocates. On the kernel generated for this
    network's shape and kind of block (:func:`fastmlp.kernels.specialise.kernel_for`),
    or, where none can be made, on :func:`sgd_blocked_generic`.
    """
    kind = "blocked-sparse" if sparse else "blocked-dense"
    kernel = kernel_for(sizes, acts, loss, kind) if SPECIALISE else None
    if kernel is None:
        sgd_blocked_generic(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits, block,
                            bool(sparse))
    else:
        kernel(P, G, X, Y, idx, lrate, losses, hits, block)


@jit
def sgd_blocked_generic(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits, block, sparse):
    """:func:`sgd_blocked` for any network shape (read from ``sizes`` and
    ``acts`` at run time)."""
    steps = idx.shape[0]
    if steps == 0:
        return
    lr, eps, woff, boff, aoff, A, D, da = step_state(P, sizes, lrate)
    m0, n0 = sizes[0], sizes[1]
    W = P[woff[0]:woff[0] + m0 * n0].reshape((m0, n0))
    b = P[boff[0]:boff[0] + n0]
    k = min(block, steps)
    dws = dense_workspace(P, 0 if sparse else m0, n0, 0 if sparse else k)
    sws = sparse_workspace(P, m0, n0, k if sparse else 0)
    Dm = np.empty((k, n0), dtype=P.dtype)
    z = A[0:n0]
    safe = safe_norm(P)
    start = steps - steps  # (an int64 0: a literal 0 would compile the block kernels twice)
    while start < steps:
        kb = min(k, steps - start)
        if sparse:
            kb = sparse_begin(X, idx, start, kb, W, sws, safe)
        else:
            kb = dense_begin(X, idx, start, kb, W, dws, safe)
        for j in range(kb):
            t = start + j
            if sparse:
                sparse_preactivation(X, idx, start, j, W, b, Dm, lr, sws, z)
            else:
                dense_preactivation(dws, kb, j, b, Dm, lr, z)
            activate(acts[0], z)
            losses[t], hits[t] = upper_step(P, sizes, acts, loss, woff, boff, aoff, A, D, da,
                                            Y[idx[t]], lr, eps)
            for q in range(n0):
                d = D[q]
                Dm[j, q] = d
                b[q] -= lr * d
        if sparse:
            sparse_end(kb, W, sws, Dm, lr)
        else:
            dense_end(kb, W, dws, Dm, lr)
        start += kb
    write_gradients(G, sizes, woff, boff, X[idx[steps - 1]], A, D, aoff)
