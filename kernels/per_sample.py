"""Fused per-sample SGD: many notebook steps in one compiled call.

The network arrives as flat buffers (see :mod:`fastmlp.kernels.step`).
Samples are rows of ``X`` and ``Y``, and ``idx`` lists the sample of each
step, drawn by the caller exactly as the NumPy engine draws them.

One pass over the first weight matrix per step
----------------------------------------------
The notebook updates after the backward pass, and the first layer's input is
data, known in advance. So the update of step t is deferred and applied row
by row during the forward product of step t+1: each row of the first W is
read and written once per step, instead of once for the forward product and
again for the update. The first layer needs no input gradient. Later layers
read each row twice: for the forward product, then for the backward product
fused with the update (their inputs depend on the step's own updates, so no
deferral can merge those passes).

Rows of zero input are skipped, as in every fused kernel.

No step allocates: all workspace is made once per call.
"""

import numpy as np

from ._jit import REASSOC, jit
from .activations import activate
from .columns import dense_pass, from_columns, to_columns, widths_for
from .specialise import DEFER_MIN_WEIGHTS, kernel_for
from .step import step_state, upper_step, write_gradients


@jit(fastmath=REASSOC)
def first_layer_forward(P, wo, bo, m, n, x, xp, dzp, lr, pending, z, rows):
    """Apply the deferred update ``W -= lr * xp dzp^T`` (if ``pending``) and
    compute ``z = W.T @ x + W0`` in the same pass over W.

    Only rows with a nonzero ``x`` or ``xp`` are touched; they are listed in
    ``rows`` (workspace of length m) and processed four at a time, so the
    running sums in ``z`` are loaded and stored once per four rows.
    """
    W, b = P[wo:wo + m * n].reshape((m, n)), P[bo:bo + n]
    zero = z.dtype.type(0)
    if pending:
        for j in range(n):
            b[j] -= lr * dzp[j]
    k = 0
    for i in range(m):
        if x[i] != 0 or (pending and xp[i] != 0):
            rows[k] = i
            k += 1
    z[:] = 0
    q = 0
    while q + 4 <= k:
        i0, i1, i2, i3 = rows[q], rows[q + 1], rows[q + 2], rows[q + 3]
        w0, w1, w2, w3 = W[i0], W[i1], W[i2], W[i3]
        x0, x1, x2, x3 = x[i0], x[i1], x[i2], x[i3]
        if pending:
            c0, c1, c2, c3 = lr * xp[i0], lr * xp[i1], lr * xp[i2], lr * xp[i3]
            for j in range(n):
                d = dzp[j]
                v0 = w0[j] - c0 * d
                v1 = w1[j] - c1 * d
                v2 = w2[j] - c2 * d
                v3 = w3[j] - c3 * d
                w0[j] = v0
                w1[j] = v1
                w2[j] = v2
                w3[j] = v3
                z[j] += x0 * v0 + x1 * v1 + x2 * v2 + x3 * v3
        else:
            for j in range(n):
                z[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j]
        q += 4
    while q < k:
        i0 = rows[q]
        w0, x0 = W[i0], x[i0]
        c0 = lr * xp[i0] if pending else zero
        for j in range(n):
            v0 = w0[j] - c0 * dzp[j]
            w0[j] = v0
            z[j] += x0 * v0
        q += 1
    for j in range(n):
        z[j] += b[j]


@jit(fastmath=REASSOC)
def first_layer_update(P, wo, bo, m, n, xp, dzp, lr):
    """Apply the deferred update of the first layer: ``W -= lr * xp dzp^T``.

    With the arithmetic of :func:`first_layer_forward`'s update, operation for
    operation, so a run split into several calls (as reporting splits it)
    ends on the same weights, to the bit, as one call.
    """
    W, b = P[wo:wo + m * n].reshape((m, n)), P[bo:bo + n]
    for j in range(n):
        b[j] -= lr * dzp[j]
    for i in range(m):
        if xp[i] != 0:
            w0, c0 = W[i], lr * xp[i]
            for j in range(n):
                w0[j] = w0[j] - c0 * dzp[j]


#: Run the kernels specialised per network shape (:mod:`fastmlp.kernels.specialise`);
#: False runs :func:`sgd_per_sample_generic` (for comparisons).
SPECIALISE = True


def sgd_per_sample(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits, dense=False):
    """Run one SGD step per entry of ``idx`` on the network in ``P``, in place.

    On the kernel specialised for this network's shape (generated and compiled
    on first use, then cached on disk: :func:`fastmlp.kernels.specialise.kernel_for`),
    or, where none can be made, on :func:`sgd_per_sample_generic`. Same
    arithmetic either way. Arguments as :func:`sgd_per_sample_generic`.
    """
    # (a first layer too small to defer has no pass to put in columns)
    dense = dense and sizes[0] * sizes[1] >= DEFER_MIN_WEIGHTS
    kind = "one-pass-dense" if dense else "one-pass"
    kernel = kernel_for(sizes, acts, loss, kind) if SPECIALISE else None
    if kernel is None:
        sgd_per_sample_generic(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits, dense)
    else:
        kernel(P, G, X, Y, idx, lrate, losses, hits)


@jit
def sgd_per_sample_generic(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits,
                           dense=False):
    """Run one SGD step per entry of ``idx`` on the network in ``P``, in place,
    for any network shape (read from ``sizes`` and ``acts`` at run time).

    Parameters
    ----------
    P : 1-D float array
        Parameters, layer by layer: W (row-major), then W0.
    G : 1-D float array like P
        Receives the gradients of the last step (the layers' dLdW, dLdW0).
    sizes : int64 array of length L + 1
        Layer widths, input first.
    acts : int64 array of length L
        Activation code after each Linear layer (IDENTITY ... SOFTMAX).
    loss : int
        NLL (requires a SOFTMAX head) or MSE.
    X, Y : 2-D C-contiguous arrays, one sample per row
    idx : int64 array
        The sample of each step.
    lrate : float
        Learning rate, applied in P's dtype.
    losses : float64 array like idx
        Receives the loss of each step.
    hits : int64 array like idx
        Receives 1 where the step's largest output is where Y's is, else 0.
    dense : bool
        Run the first layer on column blocks over every input
        (:mod:`fastmlp.kernels.columns`), not on the rows of nonzero inputs.
    """
    steps = idx.shape[0]
    if steps == 0:
        return
    lr, eps, woff, boff, aoff, A, D, da = step_state(P, sizes, lrate)
    rows = np.empty(sizes[0], dtype=np.int64)
    m0, n0 = sizes[0], sizes[1]
    b = P[boff[0]:boff[0] + n0]
    widths = widths_for(n0, P)
    Wc = to_columns(P, woff[0], m0, n0, widths) if dense else P[0:0]
    dz, zc = np.zeros(widths.sum(), dtype=P.dtype), np.zeros(widths.sum(), dtype=P.dtype)
    Xf = X.reshape(m0 * X.shape[0])
    for t in range(steps):
        s = idx[t]
        prev = idx[t - 1] if t > 0 else s
        if dense:
            for j in range(n0):
                b[j] -= lr * D[j]
                dz[j] = D[j]
            dense_pass(Wc, widths, Xf, s * m0, Xf, prev * m0, dz, lr, zc, m0)
            for j in range(n0):
                A[j] = zc[j] + b[j]
        else:
            first_layer_forward(P, woff[0], boff[0], m0, n0, X[s], X[prev], D[0:n0], lr, t > 0,
                                A[0:n0], rows)
        activate(acts[0], A[0:n0])
        losses[t], hits[t] = upper_step(P, sizes, acts, loss, woff, boff, aoff, A, D, da, Y[s],
                                        lr, eps)
    last = idx[steps - 1]
    write_gradients(G, sizes, woff, boff, X[last], A, D, aoff)
    if dense:
        # (the last step's update by the same pass, with zero inputs)
        for j in range(n0):
            b[j] -= lr * D[j]
            dz[j] = D[j]
        dense_pass(Wc, widths, np.zeros(m0, dtype=P.dtype), 0, Xf, last * m0, dz, lr, zc, m0)
        from_columns(Wc, widths, P, woff[0], m0, n0)
    else:
        first_layer_update(P, woff[0], boff[0], m0, n0, X[last], D[0:n0], lr)
