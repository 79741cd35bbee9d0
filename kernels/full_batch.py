"""Loss and gradient over a whole data set in one compiled call (for L-BFGS).

The network arrives as in the mini-batch kernel (:mod:`fastmlp.kernels.minibatch`):
``sizes``, ``acts``, the loss code and the flat parameters ``P``. Rows
``lo:hi`` of the data are visited in chunks of ``chunk`` samples; each chunk
runs forward, takes the loss and output gradient at the head
(:func:`fastmlp.kernels.heads.head`, times the sample's weight), and adds its
gradients, summed over its samples, into ``G``. Workspaces are made once per
call, sized by the chunk, so memory does not grow with the data.

The first layer works on the nonzero inputs: from the CSR structure when X
is sparse (``indptr`` not empty), else, for dense chunks sparse enough
(``max_fill``), from the group lists of the mini-batch kernel; other chunks
run BLAS products. Callers split the rows between threads (each with its own
``G``) and add the partial sums; the kernel releases the GIL.
"""

import numpy as np

from ._jit import REASSOC, jit
from .minibatch import (
    FIRST_BLAS,
    FIRST_READY,
    add_bias_gradient,
    batch_head,
    block_shape,
    blocked_first,
    blocked_gradient,
    blocks_in,
    forward_batch,
    from_blocks,
    gate_bits,
    gather,
    input_gradient,
    sparse_workspace,
    to_blocks,
)
from .step import eps_of, offsets, widest

__all__ = ["loss_grad"]


@jit(fastmath=REASSOC)
def csr_forward(indptr, indices, data, lo, W, Z):
    """``Z = X[lo:lo + len(Z)] @ W`` for a CSR X."""
    b, n = Z.shape
    for r in range(b):
        z = Z[r]
        for j in range(n):
            z[j] = 0
        for k in range(indptr[lo + r], indptr[lo + r + 1]):
            x, w = data[k], W[indices[k]]
            for j in range(n):
                z[j] += x * w[j]


@jit(fastmath=REASSOC)
def csr_gradient(indptr, indices, data, lo, dz, gW):
    """``gW += X[lo:lo + len(dz)].T @ dz`` for a CSR X."""
    b, n = dz.shape
    for r in range(b):
        d = dz[r]
        for k in range(indptr[lo + r], indptr[lo + r + 1]):
            x, g = data[k], gW[indices[k]]
            for j in range(n):
                g[j] += x * d[j]


@jit
def loss_grad(P, G, sizes, acts, loss, X, Y, sw, indptr, indices, data, order, lo, hi,
              chunk, max_fill):
    """Add to ``G`` the gradient of the loss over rows ``lo:hi``, summed over
    samples (each sample's output gradient times its weight ``sw``, empty for
    all ones); return the weighted sum of their losses (float64).

    X is dense (rows are samples, C-contiguous) or, when ``indptr`` is not
    empty, the CSR matrix (``indptr``, ``indices``, ``data``). With dense X
    and ``max_fill > 0``, a non-empty ``order`` (int64, a permutation of all
    the rows) makes the chunks of ``order[lo:hi]`` instead: similar samples
    side by side share more nonzero inputs, so the lists hold fewer entries
    (:func:`fastmlp.inference.class_order`). Regularisation and the division
    by the sum of weights are the caller's.
    """
    if order.shape[0] > 0 and order.shape[0] < hi:
        raise ValueError("loss_grad: order must hold every row up to hi")
    L = sizes.shape[0] - 1
    eps = eps_of(P)
    woff, boff, aoff = offsets(sizes)
    d, c = sizes[0], sizes[L]
    weighted = sw.shape[0] > 0
    csr = indptr.shape[0] > 0
    chunk = max(1, min(chunk, hi - lo))
    A = np.empty(chunk * aoff[L], dtype=P.dtype)
    D = np.empty(chunk * aoff[L], dtype=P.dtype)
    dA = np.empty(chunk * widest(sizes), dtype=P.dtype)
    gmax = 0
    for ell in range(L):
        gmax = max(gmax, sizes[ell] * sizes[ell + 1])
    gtmp = np.empty(gmax, dtype=P.dtype)
    dense_lists = (not csr) and max_fill > 0
    ws = sparse_workspace(P, chunk if dense_lists else 1, d if dense_lists else 1, sizes[1])
    Xb = np.empty(chunk * d if dense_lists else 0, dtype=P.dtype)
    Yb = np.empty(chunk * c if dense_lists else 0, dtype=P.dtype)
    Wb = np.empty(chunk if dense_lists and weighted else 0, dtype=sw.dtype)
    bits = gate_bits(d if dense_lists else 0, chunk)
    # W in column blocks for the sparse chunks' forward (made once a call:
    # see fastmlp.kernels.minibatch, "The first layer in column blocks").
    n1 = sizes[1]
    shape = block_shape(d if dense_lists else 1, n1, P.itemsize)
    W1b, G1b, _, _ = blocks_in(ws)
    if dense_lists:
        to_blocks(P[woff[0]:woff[0] + d * n1].reshape((d, n1)), W1b, shape)
    if dense_lists and order.shape[0] > 0:
        rows = order[lo:hi]
    else:
        rows = np.arange(hi - lo if dense_lists else 0, dtype=np.int64) + lo
    total = 0.0
    for start in range(lo, hi, chunk):
        b = min(chunk, hi - start)
        sparse = False
        yb = Y[start:start + b]
        wb = sw[start:start + b] if weighted else sw[0:0]
        if csr:
            xb = X[0:0]
        elif dense_lists:  # copy the chunk and measure its fill (one pass)
            xb = Xb[:b * d].reshape((b, d))
            yb = Yb[:b * c].reshape((b, c))
            rb = rows[start - lo:start - lo + b]
            sparse = gather(X, Y, rb, xb, yb, max_fill, bits)
            if weighted:
                wb = Wb[:b]
                for r in range(b):
                    wb[r] = sw[rb[r]]
        else:
            xb = X[start:start + b]
        first = FIRST_BLAS
        if sparse:
            blocked_first(xb, W1b, shape, A[:b * n1].reshape((b, n1)), ws)
            first = FIRST_READY
        if csr:  # the first layer's product straight from the CSR rows
            n = sizes[1]
            csr_forward(indptr, indices, data, start, P[woff[0]:woff[0] + d * n].reshape((d, n)),
                        A[chunk * aoff[0]:chunk * aoff[0] + b * n].reshape((b, n)))
            first = FIRST_READY
        forward_batch(P, A, sizes, woff, boff, aoff, acts, chunk, b, xb, first)
        oL = chunk * aoff[L - 1]
        out = A[oL:oL + b * c].reshape((b, c))
        dout = D[oL:oL + b * c].reshape((b, c))
        part, _ = batch_head(loss, acts[L - 1], out, yb, dout, wb, eps)
        total += part
        for ell in range(L - 1, -1, -1):
            m, n = sizes[ell], sizes[ell + 1]
            W = P[woff[ell]:woff[ell] + m * n].reshape((m, n))
            gW = G[woff[ell]:woff[ell] + m * n].reshape((m, n))
            gb = G[boff[ell]:boff[ell] + n]
            dz = D[chunk * aoff[ell]:chunk * aoff[ell] + b * n].reshape((b, n))
            if ell == 0 and csr:
                csr_gradient(indptr, indices, data, start, dz, gW)
            elif ell == 0 and sparse:
                blocked_gradient(xb, dz, G1b, shape, ws, bits)
                from_blocks(G1b, shape, gW, True)
            else:
                tmp = gtmp[:m * n].reshape((m, n))
                a_in = xb if ell == 0 else A[chunk * aoff[ell - 1]:chunk * aoff[ell - 1] +
                                             b * m].reshape((b, m))
                np.dot(a_in.T, dz, tmp)
                for i in range(m):
                    for j in range(n):
                        gW[i, j] += tmp[i, j]
            add_bias_gradient(dz, gb)
            if ell > 0:
                a_in = A[chunk * aoff[ell - 1]:chunk * aoff[ell - 1] + b * m].reshape((b, m))
                prev = D[chunk * aoff[ell - 1]:chunk * aoff[ell - 1] + b * m].reshape((b, m))
                input_gradient(acts[ell - 1], W, dz, a_in, dA[:b * m].reshape((b, m)), prev)
    return total
