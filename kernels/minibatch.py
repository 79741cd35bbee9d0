"""Fused mini-batch SGD: a whole pass of batches in one compiled call.

Same network description as :mod:`fastmlp.kernels.step` (``sizes``,
``acts``, flat ``P``), plus the optimizer's code, hyper-parameters and state
buffer ``S`` (see :mod:`fastmlp.kernels.update`).
Batches are consecutive runs of ``batch`` entries of ``order`` (the last
may be shorter), so one call can run an epoch over a permutation or a run of
``sgd`` steps over random draws.

Activations are stored samples x features, so every product is a
row-major GEMM, done by BLAS through ``np.dot(a, b, out)`` into buffers made
once per call: no step allocates.

Compile time
------------
The batch helpers called from one or two kernels (:func:`forward_batch`,
:func:`batch_head`, :func:`gather`, ...) are ``inline="always"``: compiled
as part of their caller instead of as functions of their own, which Numba
would optimise once alone and again when linked into the caller. Measured,
the first mini-batch ``fit`` in a cold cache (784-100-10, float64): 12.3 s
of CPU with them as separate functions, 9.2-9.8 s inlined.

Sparse inputs
-------------
The first layer's two products, ``Z = xb @ W`` and ``gW = xb.T @ dz``, only
need the batch's nonzero inputs (about 19% of MNIST's pixels). Where that
saves enough work (the planner's ``max_fill``; see :func:`gather`), both
run on the register-blocked kernel of :mod:`fastmlp.kernels.inference`
(:func:`~fastmlp.kernels.inference.sparse_columns`): groups of four samples
(for ``Z``) or of four inputs (for ``gW``) list where any of the four is
nonzero, and each listed entry updates four rows of output blocks of three
or two registers held in registers. W, its gradient and its optimizer
state stay in those column blocks for a whole call (see "The first layer
in column blocks" below); dz is read where it lies. The same sums as BLAS,
up to rounding. Other batches, and dense data, keep the GEMMs. Measured
(one core, MNIST, both products, against OpenBLAS): 1.2-2.5x faster for
first layers of 64 to 512 outputs and batches of 32 to 200, in both
dtypes, with W read row-major where it lay; the column blocks took the
forward product a further 20-27% faster.
"""

import numpy as np

from ._jit import jit
from .activations import activate, activation_backward
from .codes import ADAM, H_T
from .heads import head
from .inference import (
    GROUP,
    VEC_BYTES,
    aligned,
    block_counts,
    group_block,
    group_word,
    list_groups,
    nz_mask8,
    popcount,
    run_end,
    sparse_columns,
)
from .step import argmax, eps_of, offsets, widest
from .update import update

#: Entries of the sparse first layer's lists (at least the layer's inputs
#: and the batch): int32 offsets and four values each.
LIST_ENTRIES = 8192


@jit
def sparse_workspace(P, rows, d, n):
    """Buffers of the sparse first layer (:func:`blocked_first`,
    :func:`blocked_gradient`) for batches of up to ``rows`` samples of ``d``
    inputs and a first layer of ``n`` outputs, in ``P``'s dtype: the forward
    product's padded outputs, the group lists, the column numbers ``0, 1,
    ...`` and zero biases (:func:`lists_of`); then W, its gradient and up to
    two rows of optimizer state in column blocks (:func:`block_shape`), and
    dz's columns past its last whole block, then zeros (:func:`blocks_in`).

    A caller running many training calls makes it once (np.empty: pages never
    written cost nothing, so the unused state row, and the blocks of a
    caller on dense data, stay free)."""
    shape = block_shape(d, n, P.itemsize)
    width = block_columns(shape)
    F = block_size(shape)
    cap = max(LIST_ENTRIES, rows, d)
    return (np.empty((rows + GROUP) * width, dtype=P.dtype),
            np.empty(cap, dtype=np.int32), np.empty((cap, GROUP), dtype=P.dtype),
            np.empty(max(rows, d) // GROUP + 2, dtype=np.int64),
            np.arange(max(rows, d)), np.zeros(width, dtype=P.dtype),
            aligned(F, P), aligned(F, P), aligned(2 * F, P).reshape((2, F)),
            np.zeros(rows * shape[1], dtype=P.dtype))


@jit(inline="always")
def lists_of(ws):
    """:func:`sparse_workspace`'s buffers of the products: the forward's padded
    outputs, the lists, the column numbers, zeros."""
    out, idx, cc, starts, cols, zero, _, _, _, _ = ws
    return out, idx, cc, starts, cols, zero


@jit(inline="always")
def blocks_in(ws):
    """:func:`sparse_workspace`'s blocked W, gradient and state rows, and the
    columns of dz past its last whole block."""
    _, _, _, _, _, _, Wb, Gb, Sb, rest = ws
    return Wb, Gb, Sb, rest


# The first layer in column blocks. Within one call of a training kernel,
# while batches take the sparse first layer, its W and optimizer state live
# in column blocks of three registers, then of two (the inference kernel's
# layout, :func:`~fastmlp.kernels.inference.split_weights`), instead of W
# being read row-major where it lies: each listed input then reads one
# contiguous run of a block, and the weight gradient is written straight
# into the same layout, so the update needs no copy of the gradient: it
# runs on each block's rows as soon as they are made, while they are in
# cache (784-100-10 on MNIST, against a pass of its own after the gradient,
# in one process: 4% less time a step in float32 at batch 32, with or
# without momentum, 2% in float64; the same at batch 200). A batch dense
# enough for BLAS moves them back to P and S (:func:`state_rows`; copies
# only where the path changes). Same sums in the same order, so the same
# bits as the row-major path. Measured (MNIST, one
# core, forward of a batch alone): float32 batch 32, 100 outputs 1.57 ->
# 1.14 us a sample, float64 3.97 -> 3.00; float32 batch 128, 512 outputs
# 6.21 -> 5.15.

@jit
def block_shape(d, n, itemsize):
    """``(a, bw3, b, bw2, rows)``: the blocks covering a first layer of ``d``
    inputs and ``n`` outputs (:func:`~fastmlp.kernels.inference.block_counts`:
    ``a`` of ``bw3`` columns, then ``b`` of ``bw2``), each of ``rows`` rows
    (``d`` rounded up to a group of four: the weight gradient's lists write
    whole groups)."""
    a, b = block_counts(n, itemsize)
    return (a, 3 * VEC_BYTES // itemsize, b, 2 * VEC_BYTES // itemsize,
            (d + GROUP - 1) // GROUP * GROUP)


@jit(inline="always")
def blocks_of(flat, shape):
    """The two block arrays (``a x rows x bw3``, ``b x rows x bw2``) of a
    flat buffer of :func:`block_shape` ``shape``."""
    a, bw3, b, bw2, rows = shape
    k = a * rows * bw3
    return (flat[:k].reshape((a, rows, bw3)),
            flat[k:k + b * rows * bw2].reshape((b, rows, bw2)))


@jit(inline="always")
def block_columns(shape):
    """The columns, padding included, of :func:`block_shape` ``shape``'s blocks."""
    a, bw3, b, bw2, _ = shape
    return a * bw3 + b * bw2


@jit
def block_size(shape):
    """Entries of a flat buffer of :func:`block_shape` ``shape``."""
    return shape[4] * block_columns(shape)


@jit(inline="always")
def block_at(flat, shape, k):
    """Block ``k`` of the buffer ``flat`` (rows x its width; the three-register
    blocks first) and its first column."""
    B3, B2 = blocks_of(flat, shape)
    a, bw3, _, bw2, _ = shape
    if k < a:
        return B3[k], k * bw3
    return B2[k - a], a * bw3 + (k - a) * bw2


@jit
def to_blocks(M, flat, shape):
    """Copy ``M`` (inputs x outputs) into the blocks of ``flat``; padding rows
    and columns get zeros."""
    m, n = M.shape
    zero = M.dtype.type(0)
    for k in range(shape[0] + shape[2]):
        B, c0 = block_at(flat, shape, k)
        w = min(B.shape[1], n - c0)
        for i in range(B.shape[0]):
            dst = B[i]
            if i < m:
                src = M[i, c0:c0 + w]  # (a slice: indices from 0 need no wrap-around test)
                for j in range(w):
                    dst[j] = src[j]
                for j in range(w, B.shape[1]):
                    dst[j] = zero
            else:
                for j in range(B.shape[1]):
                    dst[j] = zero


@jit
def from_blocks(flat, shape, M, add=False):
    """Copy the blocks of ``flat`` back into ``M`` (inputs x outputs), or add
    them to it if ``add``."""
    m, n = M.shape
    for k in range(shape[0] + shape[2]):
        B, c0 = block_at(flat, shape, k)
        w = min(B.shape[1], n - c0)
        for i in range(m):
            src, dst = B[i], M[i, c0:c0 + w]
            if add:
                for j in range(w):
                    dst[j] += src[j]
            else:
                for j in range(w):
                    dst[j] = src[j]


@jit
def block_squares(flat, shape, m, n):
    """The sum of squares of the ``m x n`` weights held in the blocks of
    ``flat``, in row-major order (as over W itself: the same float64 sum;
    ``float`` so that plain Python, where 0.0 + a float32 is a float32, sums
    in float64 too)."""
    B3, B2 = blocks_of(flat, shape)
    a, bw3, nb, bw2, _ = shape
    w3 = min(bw3, n - (a - 1) * bw3)  # the last three-register block's columns
    w2 = min(bw2, n - a * bw3 - (nb - 1) * bw2)  # the last two-register block's
    total = 0.0
    for i in range(m):
        for k in range(a):
            row = B3[k, i]
            for j in range(bw3 if k < a - 1 else w3):
                total += float(row[j] * row[j])
        for k in range(nb):
            row = B2[k, i]
            for j in range(bw2 if k < nb - 1 else w2):
                total += float(row[j] * row[j])
    return total


@jit
def state_rows(P, S, Pb, Sb, shape, off, m, n, into):
    """Move the ``m x n`` weights at ``P[off:]`` and their optimizer state
    (the same span of each row of S) into the blocks ``Pb`` and the rows of
    ``Sb`` if ``into``, else back out of them."""
    for k in range(-1, S.shape[0]):
        M = (P[off:off + m * n] if k < 0 else S[k, off:off + m * n]).reshape((m, n))
        flat = Pb if k < 0 else Sb[k]
        if into:
            to_blocks(M, flat, shape)
        else:
            from_blocks(flat, shape, M)


@jit
def blocked_first(xb, flat, shape, Z, ws):
    """The first layer's ``Z = xb @ W`` from the nonzeros of ``xb``, W in the
    blocks of ``flat`` (lists and padded outputs in ``ws``,
    :func:`sparse_workspace`)."""
    b, d = xb.shape
    n = Z.shape[1]
    out, idx, cc, starts, cols, zero = lists_of(ws)
    B3, B2 = blocks_of(flat, shape)
    width = block_columns(shape)
    Zp = out[:(b + GROUP) * width].reshape((b + GROUP, width))
    sparse_columns(xb.T, d, cols[:b], B3, B2, Zp, idx, cc, starts, zero[:width], False, None)
    for r in range(b):
        z, zp = Z[r], Zp[r]
        for j in range(n):
            z[j] = zp[j]


@jit
def blocked_gradient(xb, dz, flat, shape, ws, bits, step=None):
    """The first layer's ``gW = xb.T @ dz`` from the nonzeros of ``xb`` (groups
    of four inputs, their masks ``bits`` as :func:`gather` left them) into
    the blocks of ``flat``, every row of them (the padding rows get the
    zero twins' products). dz is read where it lies, but for the columns of
    its last block past its width, copied into the workspace's last buffer
    (zeros past them).

    ``step``: None, or ``(opt, Wb, Sb, hyper, divisor)`` to update the
    blocked weights ``Wb`` and state rows ``Sb`` (:func:`update`) with each
    run of gradient rows as soon as it is made, while it is in the core's
    cache, instead of in a pass of its own that reads the whole gradient
    back (the same arithmetic per entry, so the same bits)."""
    b, d = xb.shape
    n = dz.shape[1]
    _, idx, cc, starts, cols, zero = lists_of(ws)
    rest = blocks_in(ws)[3]
    blocks, rows = shape[0] + shape[2], shape[4]
    last, c0 = block_at(flat, shape, blocks - 1)
    last = last.shape[1]  # the last block's width, from its first column c0
    width = c0 + last
    if width > n:
        for r in range(b):
            for j in range(n - c0):
                rest[r * last + j] = dz[r, c0 + j]
    dzf = dz.reshape(-1)
    ccf = cc.reshape(-1)
    total = rows // GROUP
    g0 = 0
    while g0 < total:
        k = list_groups(xb, b, cols[:d], g0, idx, cc, starts, bits)
        h0 = 0
        while h0 < k:
            h1 = run_end(starts, k, idx.shape[0], h0)
            r0 = GROUP * (g0 + h0)
            at = 0  # block blk's first entry in flat
            for blk in range(blocks):
                B, c = block_at(flat, shape, blk)
                bw = B.shape[1]
                Bf = B.reshape(-1)
                if c + bw <= n:
                    src, off, stride = dzf, c, n
                else:
                    src, off, stride = rest, 0, last
                if blk < shape[0]:  # (the register count a constant: one kernel each)
                    group_block(src, off, stride, idx, ccf, starts[h0:], h1 - h0, Bf, r0 * bw,
                                bw, zero, 0, False, 3)
                else:
                    group_block(src, off, stride, idx, ccf, starts[h0:], h1 - h0, Bf, r0 * bw,
                                bw, zero, 0, False, 2)
                if step is not None:
                    opt, Wb, Sb, hyper, divisor = step
                    lo = at + r0 * bw
                    update(opt, Wb, flat, Sb, lo, lo + GROUP * (h1 - h0) * bw, hyper, divisor,
                           True)
                at += B.size
            h0 = h1
        g0 += k


@jit(inline="always")
def row_work(xb, r, bits):
    """The entries row ``r`` of the batch ``xb`` adds to the sparse first
    layer's lists (:func:`blocked_first`, :func:`blocked_gradient`): the groups
    of four inputs with a nonzero in it, and, at the last row of its group of
    four samples, the inputs nonzero (or NaN) in any of them. Both counted
    on eight inputs a vector compare (the lists' own masks,
    :func:`~fastmlp.kernels.inference.nz_mask8`): scalar tests took a
    quarter of a batch-of-32 step on MNIST. ``xb`` is C-ordered (each
    sample's inputs contiguous), as :func:`gather` makes it.

    The first count's masks are kept: bit ``r % 64`` of ``bits[g, r // 64]``
    is set where row r has a nonzero among inputs ``4g:4g + 4`` (the weight
    gradient's lists then read them instead of testing four values of every
    row again: 0.67 of a batch of 32's 1.8 us a sample on MNIST, float32)."""
    b, d = xb.shape
    xt = xb.T  # (inputs x samples: each sample's inputs contiguous)
    w, sh = r // 64, np.uint64(r % 64)
    work = 0
    q = 0
    while q + 8 <= d:
        word = nz_mask8(xt, q, r, r, r, r)
        lo = int((word & np.uint64(15)) != 0)  # (int: as Python, bool + bool is "or")
        hi = int((word >> np.uint64(4)) != 0)
        work += lo + hi
        bits[q // GROUP, w] |= np.uint64(lo) << sh
        bits[q // GROUP + 1, w] |= np.uint64(hi) << sh
        q += 8
    x = xb[r]
    for g in range(q, d, GROUP):
        nz = 0
        for j in range(g, min(g + GROUP, d)):
            nz |= int(x[j] != 0)
        work += nz
        bits[g // GROUP, w] |= np.uint64(nz) << sh
    if r % GROUP == GROUP - 1 or r == b - 1:
        g = r - r % GROUP
        s1, s2, s3 = min(g + 1, r), min(g + 2, r), min(g + 3, r)
        for j in range(0, d, 64):
            work += popcount(group_word(xt, j, min(64, d - j), g, s1, s2, s3))
    return work


@jit
def gate_bits(d, rows):
    """The nonzero masks :func:`row_work` keeps for a batch of ``rows``
    samples of ``d`` inputs (made once per call)."""
    return np.zeros(((d + GROUP - 1) // GROUP, (rows + 63) // 64), dtype=np.uint64)


@jit(inline="always")
def gate_budget(max_fill, b, d, bits):
    """The most list entries a batch of ``b`` rows of ``d`` inputs may make
    and still take the nonzeros' path (negative: it counts nothing); when it
    counts, its masks in ``bits`` start from zero."""
    max_work = max_fill * b * d * 2.0 / GROUP
    if max_work >= 0:
        for g in range(bits.shape[0]):
            for w in range((b + 63) // 64):
                bits[g, w] = 0
    return max_work


@jit(inline="always")
def gather(X, Y, rows, xb, yb, max_fill, bits):
    """Copy rows ``rows`` of X and Y into ``xb`` and ``yb``; return whether the
    batch's fill is at most ``max_fill`` (the masks of its groups of four
    inputs then in ``bits``, :func:`gate_bits`).

    The fill is the sparse first layer's share of the dense multiply-adds:
    its lists' entries (:func:`row_work`) times the four samples or inputs
    each serves, over the two dense products' ``2 * xb.size``. About the
    chance that one of four neighbours is nonzero: 0.37 on MNIST, where a
    density of 0.19 clusters. Counting stops once it exceeds ``max_fill``,
    so dense data pay little for it.
    """
    b, d = xb.shape
    max_work = gate_budget(max_fill, b, d, bits)
    work = 0
    for r in range(b):
        x, xr, y, yr = xb[r], X[rows[r]], yb[r], Y[rows[r]]
        for j in range(d):  # (loops: slice copies are slower, and slow to compile)
            x[j] = xr[j]
        for j in range(y.shape[0]):
            y[j] = yr[j]
        if work <= max_work:
            work += row_work(xb, r, bits)
    return work <= max_work


#: How :func:`forward_batch` makes the first layer's product.
FIRST_BLAS, FIRST_READY = 0, 1


@jit(inline="always")
def forward_batch(P, A, sizes, woff, boff, aoff, acts, stride, b, xb, first):
    """Forward pass of a batch of ``b`` rows ``xb``, layer l's output to
    ``A[stride * aoff[l]:]`` as b x n rows. ``first`` is how layer 0's product
    is made: FIRST_BLAS (a GEMM) or FIRST_READY (the caller put it in place:
    from the nonzeros, :func:`blocked_first`, or from a CSR matrix; ``xb`` is
    then not read)."""
    inp = xb
    for ell in range(sizes.shape[0] - 1):
        m, n = sizes[ell], sizes[ell + 1]
        W = P[woff[ell]:woff[ell] + m * n].reshape((m, n))
        bias = P[boff[ell]:boff[ell] + n]
        Z = A[stride * aoff[ell]:stride * aoff[ell] + b * n].reshape((b, n))
        if ell > 0 or first == FIRST_BLAS:
            np.dot(inp, W, Z)
        for r in range(b):
            z = Z[r]
            for j in range(n):
                z[j] += bias[j]
            activate(acts[ell], z)
        inp = Z


@jit(inline="always")
def batch_head(loss, act, out, yb, dout, wb, eps):
    """The loss of each row of ``out`` against ``yb``, its gradient written to
    ``dout``, both times the row's weight ``wb[r]`` (``wb`` empty: ones).
    Returns the summed loss and how many rows have their largest output where
    ``yb`` has its largest entry."""
    t = out.dtype.type
    total = t(0)
    hit = 0
    for r in range(out.shape[0]):
        one = head(loss, act, out[r], yb[r], dout[r], eps)
        if wb.shape[0] > 0:
            w = t(wb[r])
            one *= w
            for j in range(dout.shape[1]):
                dout[r, j] *= w
        total += one
        hit += argmax(out[r]) == argmax(yb[r])
    return total, hit


@jit(inline="always")
def add_bias_gradient(dz, gb):
    """``gb += dz.sum(axis=0)``."""
    for r in range(dz.shape[0]):
        for j in range(dz.shape[1]):
            gb[j] += dz[r, j]


@jit(inline="always")
def input_gradient(act, W, dz, a_in, da, prev):
    """Back through a layer to its input: ``da = dz @ W.T``, then through the
    activation ``act`` that made ``a_in``, into ``prev``."""
    np.dot(dz, W.T, da)
    for r in range(a_in.shape[0]):
        activation_backward(act, a_in[r], da[r], prev[r])


@jit
def gather_csr(indptr, indices, data, Y, rows, xb, yb, max_fill, bits):
    """:func:`gather` from a CSR matrix (``indptr``, ``indices``, ``data``):
    rows ``rows`` scattered into the zeroed dense batch ``xb``, at the cost of
    their nonzeros; same return value."""
    b, d = xb.shape
    max_work = gate_budget(max_fill, b, d, bits)
    work = 0
    for r in range(b):
        x, y, yr = xb[r], yb[r], Y[rows[r]]
        for j in range(d):
            x[j] = 0
        for k in range(indptr[rows[r]], indptr[rows[r] + 1]):
            x[indices[k]] = data[k]
        for j in range(y.shape[0]):
            y[j] = yr[j]
        if work <= max_work:
            work += row_work(xb, r, bits)
    return work <= max_work


def train_minibatch(P, G, S, sizes, acts, loss, X, Y, order, batch, opt, hyper, losses, hits,
                    max_fill, ws=None):
    """Run SGD over the batches ``order[s*batch:(s+1)*batch]`` of rows of X and Y.

    Each step follows the mean gradient of its batch, updated by optimizer
    ``opt`` with hyper-parameters ``hyper`` and state ``S`` (see
    :func:`fastmlp.kernels.update.update`). ``G`` receives the last step's
    gradients summed over its batch (the layers' dLdW, dLdW0); ``losses[s]``
    the step's loss summed over its batch; ``hits[s]`` how many of its samples
    have their largest output where Y has its largest entry. The first
    layer skips zero inputs in batches of fill (see :func:`gather`) at most
    ``max_fill`` (0: never), in the workspace ``ws``
    (:func:`sparse_workspace` for ``batch`` rows; None: made here, where a
    caller making many calls passes its own). :func:`train_batches` with no
    sample weights, dense X and no per-step statistics. (A Python function:
    as a compiled wrapper it would compile all of train_batches again, 3-4 s.)
    """
    if max_fill <= 0:
        ws = None
    elif ws is None:
        ws = sparse_workspace(P, batch, sizes[0], sizes[1])
    train_batches(P, G, S, sizes, acts, loss, X, Y, None, None, order, batch, opt, hyper,
                  losses, hits, None, float(max_fill), ws)


@jit
def train_batches(P, G, S, sizes, acts, loss, X, Y, sw, csr, order, batch, opt, hyper, losses,
                  hits, stats, max_fill, ws):
    """:func:`train_minibatch`, with scikit-learn's extras.

    Each extra is None when unused (``max_fill`` is a float). Numba then
    compiles this function without its code (branch pruning on None
    arguments; with the inlined helpers, a first mini-batch ``fit`` compiles
    about 4 s less), once per combination a process uses.

    * ``sw``: per-sample weights, indexed like the rows of X. A sample's loss
      and output gradient are multiplied by its weight, and each step
      divides its summed gradient (and the L2 term ``alpha``) by the batch's
      sum of weights instead of its size, as scikit-learn does.
      ``losses[s]`` is then the weighted sum.
    * ``csr``: X as a CSR matrix ``(indptr, indices, data)`` (X is then
      ignored and may be ``(0, d)``). Each batch's rows are scattered into
      the dense batch buffer, so the work is proportional to their nonzeros,
      and the first layer's products take the nonzeros' path as for dense
      inputs.
    * ``stats`` (steps x 2, float64): per step, the sum of the batch's
      weights and the sum of squares of every weight matrix as the step's
      forward pass saw them (scikit-learn's L2 term of the step's loss is
      ``0.5 alpha`` times it, divided by the first).
    * ``max_fill``, ``ws``: the largest batch fill that takes the first
      layer's nonzeros path (see :func:`gather`), and that path's workspace
      (:func:`sparse_workspace` for ``batch`` rows); ``ws`` None: never.
    """
    n_total = order.shape[0]
    if n_total == 0:
        return
    L = sizes.shape[0] - 1
    eps = eps_of(P)
    woff, boff, aoff = offsets(sizes)
    d, c = sizes[0], sizes[L]
    Xb = np.empty(batch * d, dtype=P.dtype)
    Yb = np.empty(batch * c, dtype=P.dtype)
    A = np.empty(batch * aoff[L], dtype=P.dtype)  # layer l's output at batch * aoff[l]
    D = np.empty(batch * aoff[L], dtype=P.dtype)  # and its gradient before activation
    dA = np.empty(batch * widest(sizes), dtype=P.dtype)
    if sw is None:
        Wb = np.empty(0, dtype=P.dtype)
    else:
        Wb = np.empty(batch, dtype=sw.dtype)
    fill = -1.0  # (gather then counts nothing)
    if ws is not None:
        fill = max_fill
    bits = gate_bits(d if ws is not None else 0, batch)
    # The first layer's W and optimizer state move into column blocks for
    # the lists' batches (see "The first layer in column blocks") and back
    # to P and S for a dense batch's GEMMs and update: copies only where the
    # path changes (``blocked``: where they are now), and at the end.
    n1 = sizes[1]
    shape = block_shape(d, n1, P.itemsize)
    if ws is not None:
        Pb, Gb, Sb, _ = blocks_in(ws)  # (Sb: two rows, of which S's are used)
        if S.shape[0] > Sb.shape[0]:
            raise ValueError("train_batches: more optimizer state rows than the workspace holds")
    else:
        Pb, Gb, Sb = np.empty(0, P.dtype), np.empty(0, P.dtype), np.empty((2, 0), P.dtype)
    G1 = G[woff[0]:woff[0] + d * n1].reshape((d, n1))
    blocked = False
    steps = (n_total + batch - 1) // batch
    for s in range(steps):
        lo = s * batch
        b = min(batch, n_total - lo)
        xb = Xb[:b * d].reshape((b, d))
        yb = Yb[:b * c].reshape((b, c))
        rows = order[lo:lo + b]
        if csr is None:
            sparse = gather(X, Y, rows, xb, yb, fill, bits)
        else:
            sparse = gather_csr(csr[0], csr[1], csr[2], Y, rows, xb, yb, fill, bits)
        divisor = float(b)
        wb = Wb[:0]
        if sw is not None:
            wb = Wb[:b]
            divisor = 0.0
            for r in range(b):
                wb[r] = sw[rows[r]]
                divisor += wb[r]
        # (Each use of the blocks sits under "ws is not None", a test Numba
        # decides when it compiles: without a workspace none of their code
        # is compiled, 3-4 s of a first fit's compile on dense data.)
        if ws is not None:
            if sparse != blocked:
                state_rows(P, S, Pb, Sb, shape, woff[0], d, n1, sparse)
                blocked = sparse
        if stats is not None:
            squares = 0.0
            for ell in range(L):
                if ws is not None:
                    if ell == 0 and blocked:
                        squares += block_squares(Pb, shape, d, n1)
                        continue
                for i in range(woff[ell], woff[ell] + sizes[ell] * sizes[ell + 1]):
                    squares += float(P[i] * P[i])
            stats[s, 0] = divisor
            stats[s, 1] = squares
        first = FIRST_BLAS
        if ws is not None:
            if blocked:
                blocked_first(xb, Pb, shape, A[:b * n1].reshape((b, n1)), ws)
                first = FIRST_READY
        forward_batch(P, A, sizes, woff, boff, aoff, acts, batch, b, xb, first)
        # Loss and output gradient.
        oL = batch * aoff[L - 1]
        out = A[oL:oL + b * c].reshape((b, c))
        dout = D[oL:oL + b * c].reshape((b, c))
        losses[s], hits[s] = batch_head(loss, acts[L - 1], out, yb, dout, wb, eps)
        if opt == ADAM:
            hyper[H_T] += 1.0
        # Backward, each layer's update after its input gradient is taken.
        for ell in range(L - 1, -1, -1):
            m, n = sizes[ell], sizes[ell + 1]
            W = P[woff[ell]:woff[ell] + m * n].reshape((m, n))
            gW = G[woff[ell]:woff[ell] + m * n].reshape((m, n))
            gb = G[boff[ell]:boff[ell] + n]
            dz = D[batch * aoff[ell]:batch * aoff[ell] + b * n].reshape((b, n))
            if ell == 0:
                a_in = xb
                if blocked:
                    if ws is not None:
                        blocked_gradient(xb, dz, Gb, shape, ws, bits,
                                         (opt, Pb, Sb, hyper, divisor))
                else:
                    np.dot(xb.T, dz, gW)
            else:
                a_in = A[batch * aoff[ell - 1]:batch * aoff[ell - 1] + b * m].reshape((b, m))
                np.dot(a_in.T, dz, gW)
            for j in range(n):
                gb[j] = 0
            add_bias_gradient(dz, gb)
            if ell > 0:
                prev = D[batch * aoff[ell - 1]:batch * aoff[ell - 1] + b * m].reshape((b, m))
                input_gradient(acts[ell - 1], W, dz, a_in, dA[:b * m].reshape((b, m)), prev)
            if not (ell == 0 and blocked):  # (blocked_gradient updated that one)
                update(opt, P, G, S, woff[ell], woff[ell] + m * n, hyper, divisor, True)
            update(opt, P, G, S, boff[ell], boff[ell] + n, hyper, divisor, False)
    if ws is not None:
        if blocked:
            state_rows(P, S, Pb, Sb, shape, woff[0], d, n1, False)
            from_blocks(Gb, shape, G1)
