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
(``max_fill``), from the pair lists of the mini-batch kernel; other chunks
run BLAS products. Callers split the rows between threads (each with its own
``G``) and add the partial sums; the kernel releases the GIL.
"""

import numpy as np

from ._jit import REASSOC, jit
from .activations import activation_backward
from .heads import head
from .minibatch import activate_rows, gather, pair_lists, pair_products
from .step import offsets

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
def loss_grad(P, G, sizes, acts, loss, X, Y, sw, indptr, indices, data, lo, hi, chunk,
              max_fill):
    """Add to ``G`` the gradient of the loss over rows ``lo:hi``, summed over
    samples (each sample's output gradient times its weight ``sw``, empty for
    all ones); return the weighted sum of their losses (float64).

    X is dense (rows are samples, C-contiguous) or, when ``indptr`` is not
    empty, the CSR matrix (``indptr``, ``indices``, ``data``). Regularisation
    and the division by the sum of weights are the caller's.
    """
    L = sizes.shape[0] - 1
    t = P.dtype.type
    eps = np.finfo(P.dtype).eps
    woff, boff, aoff = offsets(sizes)
    d, c = sizes[0], sizes[L]
    weighted = sw.shape[0] > 0
    csr = indptr.shape[0] > 0
    chunk = max(1, min(chunk, hi - lo))
    A = np.empty(chunk * aoff[L], dtype=P.dtype)
    D = np.empty(chunk * aoff[L], dtype=P.dtype)
    dA = np.empty(chunk * sizes.max(), dtype=P.dtype)
    gmax = 0
    for ell in range(L):
        gmax = max(gmax, sizes[ell] * sizes[ell + 1])
    gtmp = np.empty(gmax, dtype=P.dtype)
    dense_pairs = (not csr) and max_fill > 0
    cap = int(min(max(max_fill, 0.0), 1.0) * chunk * d) + 1 if dense_pairs else 1
    lists = (np.empty(max(chunk, d) // 2 + 2, dtype=np.int64), np.empty(cap, dtype=np.int32),
             np.empty(cap, dtype=P.dtype), np.empty(cap, dtype=P.dtype),
             np.empty(sizes[1], dtype=P.dtype))
    Xb = np.empty(chunk * d if dense_pairs else 0, dtype=P.dtype)
    Yb = np.empty(chunk * c if dense_pairs else 0, dtype=P.dtype)
    rows = np.arange(hi - lo if dense_pairs else 0, dtype=np.int64) + lo
    total = 0.0
    for start in range(lo, hi, chunk):
        b = min(chunk, hi - start)
        sparse = False
        if csr:
            xb = X[0:0]
        elif dense_pairs:  # copy the chunk and measure its fill (one pass)
            xb = Xb[:b * d].reshape((b, d))
            yb = Yb[:b * c].reshape((b, c))
            sparse = gather(X, Y, rows[start - lo:start - lo + b], xb, yb, max_fill * b * d)
        else:
            xb = X[start:start + b]
        inp = xb
        for ell in range(L):
            m, n = sizes[ell], sizes[ell + 1]
            W = P[woff[ell]:woff[ell] + m * n].reshape((m, n))
            bias = P[boff[ell]:boff[ell] + n]
            Z = A[chunk * aoff[ell]:chunk * aoff[ell] + b * n].reshape((b, n))
            if ell == 0 and csr:
                csr_forward(indptr, indices, data, start, W, Z)
            elif ell == 0 and sparse:
                pair_lists(xb, lists)
                pair_products(lists, W, Z)
            else:
                np.dot(inp, W, Z)
            for r in range(b):
                for j in range(n):
                    Z[r, j] += bias[j]
            activate_rows(acts[ell], Z)
            inp = Z
        oL = chunk * aoff[L - 1]
        out = A[oL:oL + b * c].reshape((b, c))
        dout = D[oL:oL + b * c].reshape((b, c))
        part = t(0)
        for r in range(b):
            one = head(loss, acts[L - 1], out[r], Y[start + r], dout[r], eps)
            if weighted:
                w = t(sw[start + r])
                one *= w
                for j in range(c):
                    dout[r, j] *= w
            part += one
        total += part
        for ell in range(L - 1, -1, -1):
            m, n = sizes[ell], sizes[ell + 1]
            W = P[woff[ell]:woff[ell] + m * n].reshape((m, n))
            gW = G[woff[ell]:woff[ell] + m * n].reshape((m, n))
            gb = G[boff[ell]:boff[ell] + n]
            dz = D[chunk * aoff[ell]:chunk * aoff[ell] + b * n].reshape((b, n))
            if ell == 0 and csr:
                csr_gradient(indptr, indices, data, start, dz, gW)
            else:
                tmp = gtmp[:m * n].reshape((m, n))
                if ell == 0 and sparse:
                    pair_lists(xb.T, lists)
                    pair_products(lists, dz, tmp)
                elif ell == 0:
                    np.dot(xb.T, dz, tmp)
                else:
                    a_in = A[chunk * aoff[ell - 1]:chunk * aoff[ell - 1] + b * m].reshape((b, m))
                    np.dot(a_in.T, dz, tmp)
                for i in range(m):
                    for j in range(n):
                        gW[i, j] += tmp[i, j]
            for r in range(b):
                for j in range(n):
                    gb[j] += dz[r, j]
            if ell > 0:
                a_in = A[chunk * aoff[ell - 1]:chunk * aoff[ell - 1] + b * m].reshape((b, m))
                da = dA[:b * m].reshape((b, m))
                np.dot(dz, W.T, da)
                prev = D[chunk * aoff[ell - 1]:chunk * aoff[ell - 1] + b * m].reshape((b, m))
                for r in range(b):
                    activation_backward(acts[ell - 1], a_in[r], da[r], prev[r])
    return total
