"""Fused mini-batch SGD: a whole pass of batches in one compiled call.

Same network description as :mod:`fastmlp.kernels.fused` (``sizes``,
``acts``, flat ``P``), plus ``V``, the velocities, laid out like ``P``.
Batches are consecutive runs of ``batch`` entries of ``order`` (the last
may be shorter), so one call can run an epoch over a permutation or a run of
``sgd`` steps over random draws.

Activations are stored samples x features, so every product is a
row-major GEMM, done by BLAS through ``np.dot(a, b, out)`` into buffers made
once per call: no step allocates.
"""

import numpy as np

from ._jit import jit
from .fused import activate, activation_backward, argmax, head, offsets
from .layers import momentum_step


@jit
def activate_rows(code, Z):
    """Apply activation ``code`` to every row of ``Z`` in place."""
    for r in range(Z.shape[0]):
        activate(code, Z[r])


@jit
def train_minibatch(P, G, V, sizes, acts, loss, X, Y, order, batch, lrate, momentum, nesterov,
                    weight_decay, losses, hits):
    """Run SGD over the batches ``order[s*batch:(s+1)*batch]`` of rows of X and Y.

    Each step follows the mean gradient of its batch: ``g = dLdW / b +
    weight_decay * W`` (no decay on biases), then plain, momentum or Nesterov
    SGD (see ``fastmlp.baseline.sgd_update``). ``G`` receives the last step's
    gradients summed over its batch (the layers' dLdW, dLdW0); ``losses[s]``
    the step's loss summed over its batch; ``hits[s]`` how many of its samples
    have their largest output where Y has its largest entry.
    """
    n_total = order.shape[0]
    if n_total == 0:
        return
    L = sizes.shape[0] - 1
    t = P.dtype.type
    lr, mu, wd = t(lrate), t(momentum), t(weight_decay)
    eps = np.finfo(P.dtype).eps
    woff, boff, aoff = offsets(sizes)
    d, c = sizes[0], sizes[L]
    Xb = np.empty(batch * d, dtype=P.dtype)
    Yb = np.empty(batch * c, dtype=P.dtype)
    A = np.empty(batch * aoff[L], dtype=P.dtype)  # layer l's output at batch * aoff[l]
    D = np.empty(batch * aoff[L], dtype=P.dtype)  # and its gradient before activation
    dA = np.empty(batch * sizes.max(), dtype=P.dtype)
    steps = (n_total + batch - 1) // batch
    for s in range(steps):
        lo = s * batch
        b = min(batch, n_total - lo)
        xb = Xb[:b * d].reshape((b, d))
        yb = Yb[:b * c].reshape((b, c))
        for r in range(b):
            xb[r] = X[order[lo + r]]
            yb[r] = Y[order[lo + r]]
        # Forward.
        inp = xb
        for ell in range(L):
            m, n = sizes[ell], sizes[ell + 1]
            W = P[woff[ell]:woff[ell] + m * n].reshape((m, n))
            bias = P[boff[ell]:boff[ell] + n]
            Z = A[batch * aoff[ell]:batch * aoff[ell] + b * n].reshape((b, n))
            np.dot(inp, W, Z)
            for r in range(b):
                for j in range(n):
                    Z[r, j] += bias[j]
            activate_rows(acts[ell], Z)
            inp = Z
        # Loss and output gradient.
        oL = batch * aoff[L - 1]
        out = A[oL:oL + b * c].reshape((b, c))
        dout = D[oL:oL + b * c].reshape((b, c))
        total = t(0)
        hit = 0
        for r in range(b):
            total += head(loss, acts[L - 1], out[r], yb[r], dout[r], eps)
            hit += argmax(out[r]) == argmax(yb[r])
        losses[s] = total
        hits[s] = hit
        # Backward, each layer's update after its input gradient is taken.
        scale = t(1) / t(b)
        for ell in range(L - 1, -1, -1):
            m, n = sizes[ell], sizes[ell + 1]
            W = P[woff[ell]:woff[ell] + m * n].reshape((m, n))
            gW = G[woff[ell]:woff[ell] + m * n].reshape((m, n))
            gb = G[boff[ell]:boff[ell] + n]
            dz = D[batch * aoff[ell]:batch * aoff[ell] + b * n].reshape((b, n))
            if ell == 0:
                a_in = xb
            else:
                a_in = A[batch * aoff[ell - 1]:batch * aoff[ell - 1] + b * m].reshape((b, m))
            np.dot(a_in.T, dz, gW)
            for j in range(n):
                gb[j] = 0
            for r in range(b):
                for j in range(n):
                    gb[j] += dz[r, j]
            if ell > 0:
                da = dA[:b * m].reshape((b, m))
                np.dot(dz, W.T, da)
                prev = D[batch * aoff[ell - 1]:batch * aoff[ell - 1] + b * m].reshape((b, m))
                for r in range(b):
                    activation_backward(acts[ell - 1], a_in[r], da[r], prev[r])
            w_sl = slice(woff[ell], woff[ell] + m * n)
            b_sl = slice(boff[ell], boff[ell] + n)
            momentum_step(P[w_sl], G[w_sl], V[w_sl], lr, scale, mu, nesterov, wd)
            momentum_step(P[b_sl], G[b_sl], V[b_sl], lr, scale, mu, nesterov, t(0))
