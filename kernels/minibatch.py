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
saves enough work (:func:`sparse_limit`), they are done from lists of those
nonzeros (:func:`pair_lists`, :func:`pair_products`): the same sums as BLAS,
up to rounding. Other batches, and dense data, keep the GEMMs. The caller
(the planner, :mod:`fastmlp.plan`) sets the largest fill that takes the
sparse path; 0 keeps every batch on BLAS.
"""

import numpy as np

from ._jit import REASSOC, jit
from .activations import activate, activation_backward
from .codes import ADAM, H_T
from .heads import head
from .step import argmax, eps_of, offsets, widest
from .update import update


@jit
def pair_lists(A, lists):
    """List the nonzeros of ``A`` two rows at a time, into the workspace
    ``lists = (ptr, idx, c0, c1, spare)``.

    For the pair of rows ``2h, 2h+1`` (a lone last row pairs with itself),
    ``idx[ptr[h]:ptr[h+1]]`` are the columns where either is nonzero, and
    ``c0``, ``c1`` hold the two rows' entries there (one may be zero).
    """
    ptr, idx, c0, c1, _ = lists
    rows, cols = A.shape
    k = 0
    for h in range((rows + 1) // 2):
        ptr[h] = k
        a, b = A[2 * h], A[min(2 * h + 1, rows - 1)]
        for j in range(cols):
            u, v = a[j], b[j]
            if u != 0 or v != 0:
                idx[k], c0[k], c1[k] = j, u, v
                k += 1
    ptr[(rows + 1) // 2] = k


@jit
def pair_workspace(P, rows, d, n, max_fill):
    """The ``lists`` workspace of :func:`pair_lists` for batches of up to
    ``rows`` x ``d`` entries of ``P``'s dtype whose first layer has ``n``
    outputs. A batch takes the sparse path only if its two lists hold at
    most ``max_fill * rows * d`` entries (neither can hold more than
    ``rows * d``), so that bounds their size; 0 makes it minimal."""
    cap = int(min(max(max_fill, 0.0), 1.0) * rows * d) + 1
    return (np.empty(max(rows, d) // 2 + 2, dtype=np.int64), np.empty(cap, dtype=np.int32),
            np.empty(cap, dtype=P.dtype), np.empty(cap, dtype=P.dtype),
            np.empty(n, dtype=P.dtype))


@jit(fastmath=REASSOC)
def pair_products(lists, S, out):
    """``out = A @ S`` from the ``lists`` of :func:`pair_lists` of A.

    Rows ``2h`` and ``2h+1`` of ``out`` are filled together: each row of S they
    need is loaded once for both (a pair's rows share most nonzero columns
    when the data are clustered, as pixels are), and four rows of S are
    taken at a time, so each output row is loaded and stored once per four.
    A lone last row's twin is written to ``spare`` (length ``S.shape[1]``).
    """
    ptr, idx, c0, c1, spare = lists
    rows, n = out.shape
    for h in range((rows + 1) // 2):
        o0 = out[2 * h]
        o1 = out[2 * h + 1] if 2 * h + 1 < rows else spare
        for j in range(n):
            o0[j] = 0
            o1[j] = 0
        q, e = ptr[h], ptr[h + 1]
        while q + 4 <= e:
            s0, s1, s2, s3 = S[idx[q]], S[idx[q + 1]], S[idx[q + 2]], S[idx[q + 3]]
            a0, a1, a2, a3 = c0[q], c0[q + 1], c0[q + 2], c0[q + 3]
            b0, b1, b2, b3 = c1[q], c1[q + 1], c1[q + 2], c1[q + 3]
            for j in range(n):
                x0, x1, x2, x3 = s0[j], s1[j], s2[j], s3[j]
                o0[j] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
                o1[j] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
            q += 4
        while q < e:
            s0, a0, b0 = S[idx[q]], c0[q], c1[q]
            for j in range(n):
                o0[j] += a0 * s0[j]
                o1[j] += b0 * s0[j]
            q += 1


@jit(inline="always")
def gather(X, Y, rows, xb, yb, max_work):
    """Copy rows ``rows`` of X and Y into ``xb`` and ``yb``; return whether the
    work of the sparse first layer is at most ``max_work``.

    That work is how many entries :func:`pair_lists` will list for ``xb``
    (pairs of samples) and for ``xb.T`` (pairs of inputs). Divided by
    ``xb.size`` it is the batch's fill, the sparse path's share of the dense
    multiply-adds: about twice the density for scattered nonzeros, less
    where they cluster. Counting stops once it exceeds ``max_work``, so dense
    data pay little for it.
    """
    b, d = xb.shape
    work = 0
    for r in range(b):
        x, xr, y, yr = xb[r], X[rows[r]], yb[r], Y[rows[r]]
        for j in range(d):  # (loops: slice copies are slower, and slow to compile)
            x[j] = xr[j]
        for j in range(y.shape[0]):
            y[j] = yr[j]
        if work > max_work:
            continue
        for h in range(d // 2):  # input pairs with a nonzero in this sample
            work += (x[2 * h] != 0) | (x[2 * h + 1] != 0)
        if d % 2 == 1:
            work += x[d - 1] != 0
        if r % 2 == 1 or r == b - 1:  # inputs nonzero in this sample or its pair
            w = xb[r - r % 2]
            for j in range(d):
                work += (w[j] != 0) | (x[j] != 0)
    return work <= max_work


#: How :func:`forward_batch` makes the first layer's product.
FIRST_BLAS, FIRST_PAIRS, FIRST_READY = 0, 1, 2


@jit(inline="always")
def forward_batch(P, A, sizes, woff, boff, aoff, acts, stride, b, xb, first, lists):
    """Forward pass of a batch of ``b`` rows ``xb``, layer l's output to
    ``A[stride * aoff[l]:]`` as b x n rows. ``first`` is how layer 0's product
    is made: FIRST_BLAS (a GEMM), FIRST_PAIRS (from the nonzeros, see
    :func:`pair_lists`; ``lists`` is their workspace, None if the caller
    never takes this path) or FIRST_READY (the caller put it in place, e.g.
    from a CSR matrix; ``xb`` is then not read)."""
    inp = xb
    for ell in range(sizes.shape[0] - 1):
        m, n = sizes[ell], sizes[ell + 1]
        W = P[woff[ell]:woff[ell] + m * n].reshape((m, n))
        bias = P[boff[ell]:boff[ell] + n]
        Z = A[stride * aoff[ell]:stride * aoff[ell] + b * n].reshape((b, n))
        if ell > 0 or first == FIRST_BLAS:
            np.dot(inp, W, Z)
        elif lists is not None:  # (None: Numba drops the pair code; see train_batches)
            if first == FIRST_PAIRS:
                pair_lists(xb, lists)
                pair_products(lists, W, Z)
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
def gather_csr(indptr, indices, data, Y, rows, xb, yb, max_work):
    """:func:`gather` from a CSR matrix (``indptr``, ``indices``, ``data``):
    rows ``rows`` scattered into the zeroed dense batch ``xb``, at the cost of
    their nonzeros; same return value."""
    b, d = xb.shape
    work = 0
    for r in range(b):
        x, y, yr = xb[r], yb[r], Y[rows[r]]
        for j in range(d):
            x[j] = 0
        for k in range(indptr[rows[r]], indptr[rows[r] + 1]):
            x[indices[k]] = data[k]
        for j in range(y.shape[0]):
            y[j] = yr[j]
        if work > max_work:
            continue
        for h in range(d // 2):
            work += (x[2 * h] != 0) | (x[2 * h + 1] != 0)
        if d % 2 == 1:
            work += x[d - 1] != 0
        if r % 2 == 1 or r == b - 1:
            w = xb[r - r % 2]
            for j in range(d):
                work += (w[j] != 0) | (x[j] != 0)
    return work <= max_work


@jit(inline="always")
def first_gradient(xb, dz, gW, lists, sparse):
    """The first layer's ``gW = xb.T @ dz``: from the nonzeros of ``xb`` (see
    :func:`pair_lists`) if ``sparse``, else by BLAS. ``lists`` None (never
    sparse) compiles no pair code."""
    if lists is not None:
        if sparse:
            pair_lists(xb.T, lists)
            pair_products(lists, dz, gW)
            return
    np.dot(xb.T, dz, gW)


def train_minibatch(P, G, S, sizes, acts, loss, X, Y, order, batch, opt, hyper, losses, hits,
                    max_fill):
    """Run SGD over the batches ``order[s*batch:(s+1)*batch]`` of rows of X and Y.

    Each step follows the mean gradient of its batch, updated by optimizer
    ``opt`` with hyper-parameters ``hyper`` and state ``S`` (see
    :func:`fastmlp.kernels.update.update`). ``G`` receives the last step's
    gradients summed over its batch (the layers' dLdW, dLdW0); ``losses[s]``
    the step's loss summed over its batch; ``hits[s]`` how many of its samples
    have their largest output where Y has its largest entry. The first
    layer skips zero inputs in batches of fill (see :func:`gather`) at most
    ``max_fill`` (0: never). :func:`train_batches` with no sample weights,
    dense X and no per-step statistics. (A Python function: as a compiled
    wrapper it would compile all of train_batches again, 3-4 s.)
    """
    train_batches(P, G, S, sizes, acts, loss, X, Y, None, None, order, batch, opt, hyper,
                  losses, hits, None, max_fill if max_fill > 0 else None)


@jit
def train_batches(P, G, S, sizes, acts, loss, X, Y, sw, csr, order, batch, opt, hyper, losses,
                  hits, stats, max_fill):
    """:func:`train_minibatch`, with scikit-learn's extras.

    Each extra is None when unused. Numba then compiles this function without
    its code (branch pruning on None arguments: a first mini-batch ``fit``
    compiles about 3 s less), once per combination a process uses.

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
    * ``max_fill``: the largest batch fill that takes the first layer's
      nonzeros path (see :func:`gather`); None: never.
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
    if max_fill is None:
        lists = None
        fill = -1.0  # (gather then counts nothing)
    else:
        lists = pair_workspace(P, batch, d, sizes[1], max_fill)
        fill = max_fill
    steps = (n_total + batch - 1) // batch
    for s in range(steps):
        lo = s * batch
        b = min(batch, n_total - lo)
        xb = Xb[:b * d].reshape((b, d))
        yb = Yb[:b * c].reshape((b, c))
        rows = order[lo:lo + b]
        if csr is None:
            sparse = gather(X, Y, rows, xb, yb, fill * b * d)
        else:
            sparse = gather_csr(csr[0], csr[1], csr[2], Y, rows, xb, yb, fill * b * d)
        divisor = float(b)
        wb = Wb[:0]
        if sw is not None:
            wb = Wb[:b]
            divisor = 0.0
            for r in range(b):
                wb[r] = sw[rows[r]]
                divisor += wb[r]
        if stats is not None:
            squares = 0.0
            for ell in range(L):
                for i in range(woff[ell], woff[ell] + sizes[ell] * sizes[ell + 1]):
                    squares += P[i] * P[i]
            stats[s, 0] = divisor
            stats[s, 1] = squares
        forward_batch(P, A, sizes, woff, boff, aoff, acts, batch, b, xb,
                      FIRST_PAIRS if sparse else FIRST_BLAS, lists)
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
                first_gradient(xb, dz, gW, lists, sparse)
            else:
                a_in = A[batch * aoff[ell - 1]:batch * aoff[ell - 1] + b * m].reshape((b, m))
                np.dot(a_in.T, dz, gW)
            for j in range(n):
                gb[j] = 0
            add_bias_gradient(dz, gb)
            if ell > 0:
                prev = D[batch * aoff[ell - 1]:batch * aoff[ell - 1] + b * m].reshape((b, m))
                input_gradient(acts[ell - 1], W, dz, a_in, dA[:b * m].reshape((b, m)), prev)
            update(opt, P, G, S, woff[ell], woff[ell] + m * n, hyper, divisor, True)
            update(opt, P, G, S, boff[ell], boff[ell] + n, hyper, divisor, False)
