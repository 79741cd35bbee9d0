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
from .fused import activate, step_state, upper_step, write_gradients


@jit(fastmath=REASSOC)
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


@jit(fastmath=REASSOC)
def subtract_scaled(W, U, lr):
    """``W -= lr * U`` (2-D, same shape)."""
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            W[i, j] -= lr * U[i, j]


@jit
def sgd_blocked(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits, block):
    """Run one SGD step per entry of ``idx``, as :func:`sgd_per_sample`, but
    with the first layer's updates deferred over blocks of ``block`` steps.

    Same arguments as :func:`fastmlp.kernels.fused.sgd_per_sample`, plus
    ``block`` (k >= 1). Buffers are made once per call: no step allocates.
    """
    steps = idx.shape[0]
    if steps == 0:
        return
    lr, eps, woff, boff, aoff, A, D, da = step_state(P, sizes, lrate)
    m0, n0 = sizes[0], sizes[1]
    W = P[woff[0]:woff[0] + m0 * n0].reshape((m0, n0))
    b = P[boff[0]:boff[0] + n0]
    k = min(block, steps)
    Xbuf = np.empty(k * m0, dtype=P.dtype)
    Pbuf = np.empty(k * n0, dtype=P.dtype)
    Gbuf = np.empty(k * k, dtype=P.dtype)
    Dbuf = np.empty(k * n0, dtype=P.dtype)
    U = np.empty((m0, n0), dtype=P.dtype)
    z = A[0:n0]
    for start in range(0, steps, k):
        kb = min(k, steps - start)
        Xb = Xbuf[:kb * m0].reshape((kb, m0))
        Pm = Pbuf[:kb * n0].reshape((kb, n0))
        Gm = Gbuf[:kb * kb].reshape((kb, kb))
        Dm = Dbuf[:kb * n0].reshape((kb, n0))
        for j in range(kb):
            Xb[j] = X[idx[start + j]]
        np.dot(Xb, W, Pm)
        np.dot(Xb, Xb.T, Gm)
        for j in range(kb):
            corrected_preactivation(Pm[j], b, Gm[j], Dm, j, lr, z)
            activate(acts[0], z)
            t = start + j
            losses[t], hits[t] = upper_step(P, sizes, acts, loss, woff, boff, aoff, A, D, da,
                                            Y[idx[t]], lr, eps)
            delta = D[0:n0]
            Dm[j] = delta
            for q in range(n0):
                b[q] -= lr * delta[q]
        np.dot(Xb.T, Dm, U)
        subtract_scaled(W, U, lr)
    write_gradients(G, sizes, woff, boff, X[idx[steps - 1]], A, D, aoff)

