"""Fused per-sample SGD: many notebook steps in one compiled call.

The network arrives as flat buffers: ``sizes`` (widths, input first),
``acts`` (the activation code after each Linear layer), and ``P``, every
layer's ``W`` (row-major, inputs x outputs) followed by its ``W0``. Samples
are rows of ``X`` and ``Y`` (the caller transposes the notebook's
features x samples arrays once per call), and ``idx`` lists the sample of
each step, drawn by the caller exactly as the NumPy engine draws them.

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

Rows whose input is zero are skipped where that is exact: a zero input adds
nothing to a forward product and makes a zero rank-1 update. MNIST pixels and
ReLU outputs are mostly zero, so this skips most of the work there. (Exact
for finite weights. A weight that is already inf or NaN, times a zero input,
gives NaN in NumPy and nothing here; training has diverged by then either
way. The sparse mini-batch and blocked kernels skip zeros alike.)

No step allocates: all workspace is made once per call.
"""

import numpy as np

from ._jit import REASSOC, jit
from .layers import sigmoid

IDENTITY, RELU, TANH, SIGMOID, SOFTMAX = 0, 1, 2, 3, 4
NLL, MSE = 0, 1


@jit
def offsets(sizes):
    """Return (woff, boff, aoff): where each layer's W, W0 and output start."""
    L = sizes.shape[0] - 1
    woff = np.empty(L, dtype=np.int64)
    boff = np.empty(L, dtype=np.int64)
    aoff = np.empty(L + 1, dtype=np.int64)
    o = 0
    a = 0
    for ell in range(L):
        woff[ell] = o
        o += sizes[ell] * sizes[ell + 1]
        boff[ell] = o
        o += sizes[ell + 1]
        aoff[ell] = a
        a += sizes[ell + 1]
    aoff[L] = a
    return woff, boff, aoff


@jit
def activate(code, a):
    """Apply activation ``code`` to the vector ``a`` in place."""
    one = a.dtype.type(1)
    n = a.shape[0]
    if code == RELU:
        for j in range(n):
            if a[j] < 0:
                a[j] = 0
    elif code == TANH:
        for j in range(n):
            a[j] = np.tanh(a[j])
    elif code == SIGMOID:
        for j in range(n):
            a[j] = sigmoid(a[j], one)
    elif code == SOFTMAX:
        mx = a[0]
        for j in range(1, n):
            mx = max(mx, a[j])
        s = a.dtype.type(0)
        for j in range(n):
            e = np.exp(a[j] - mx)
            a[j] = e
            s += e
        for j in range(n):
            a[j] /= s


@jit
def activation_backward(code, a, d, out):
    """Write into ``out`` the gradient before activation ``code``, given output ``a``
    and the gradient ``d`` after it. ``out`` may be ``d``.
    """
    one = a.dtype.type(1)
    n = a.shape[0]
    if code == IDENTITY:
        for j in range(n):
            out[j] = d[j]
    elif code == RELU:
        for j in range(n):
            out[j] = d[j] if a[j] != 0 else d[j] * 0
    elif code == TANH:
        for j in range(n):
            out[j] = (one - a[j] * a[j]) * d[j]
    elif code == SIGMOID:
        for j in range(n):
            out[j] = a[j] * (one - a[j]) * d[j]
    else:  # SOFTMAX
        s = a.dtype.type(0)
        for j in range(n):
            s += a[j] * d[j]
        for j in range(n):
            out[j] = a[j] * (d[j] - s)


@jit
def head(loss, code, a, y, dz, eps):
    """Return the loss of output ``a`` (already activated) against ``y``; write
    the gradient with respect to the last pre-activation into ``dz``.
    """
    two = a.dtype.type(2)
    total = a.dtype.type(0)
    n = a.shape[0]
    if loss == NLL:  # after SoftMax: the combined gradient Ypred - Y
        for j in range(n):
            if y[j] != 0:
                total -= y[j] * np.log(max(a[j], eps))
            dz[j] = a[j] - y[j]
    else:  # MSE: 2 (a - y), then back through the activation
        for j in range(n):
            e = a[j] - y[j]
            total += e * e
            dz[j] = two * e
        activation_backward(code, a, dz, dz)
    return total


@jit(fastmath=REASSOC)
def dense_forward(P, wo, bo, m, n, x, z):
    """``z = W.T @ x + W0`` for one sample, skipping zero inputs."""
    W, b = P[wo:wo + m * n], P[bo:bo + n]
    z[:] = 0
    for i in range(m):
        xi = x[i]
        if xi != 0:
            row = i * n
            for j in range(n):
                z[j] += xi * W[row + j]
    for j in range(n):
        z[j] += b[j]


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


@jit(fastmath=REASSOC)
def dense_backward_update(P, wo, bo, m, n, a, dz, lr, da, skip_zero):
    """One pass over W: ``da = W @ dz`` with the weights before this step's
    update, then ``W -= lr * a dz^T`` and ``W0 -= lr * dz``.

    With ``skip_zero`` (the input came from a ReLU) rows with ``a[i] == 0`` are
    not read: their update is zero and their ``da`` is multiplied by zero.
    """
    W, b = P[wo:wo + m * n], P[bo:bo + n]
    for i in range(m):
        ai = a[i]
        row = i * n
        s = a.dtype.type(0)
        if ai != 0:
            for j in range(n):
                w = W[row + j]
                s += w * dz[j]
                W[row + j] = w - lr * (ai * dz[j])
        elif not skip_zero:
            for j in range(n):
                s += W[row + j] * dz[j]
        da[i] = s
    for j in range(n):
        b[j] -= lr * dz[j]


@jit
def argmax(v):
    """Index of the first largest entry of ``v``."""
    best = 0
    for j in range(1, v.shape[0]):
        if v[j] > v[best]:
            best = j
    return best


@jit
def write_gradients(G, sizes, woff, boff, x, A, D, aoff):
    """Write the last step's ``dLdW = a dz^T`` and ``dLdW0 = dz`` of every layer into G."""
    L = sizes.shape[0] - 1
    for ell in range(L):
        m, n = sizes[ell], sizes[ell + 1]
        a = x if ell == 0 else A[aoff[ell - 1]:aoff[ell - 1] + m]
        dz = D[aoff[ell]:aoff[ell] + n]
        gW, gb = G[woff[ell]:woff[ell] + m * n], G[boff[ell]:boff[ell] + n]
        for i in range(m):
            row = i * n
            for j in range(n):
                gW[row + j] = a[i] * dz[j]
        for j in range(n):
            gb[j] = dz[j]


@jit
def sgd_per_sample(P, G, sizes, acts, loss, X, Y, idx, lrate, losses, hits):
    """Run one SGD step per entry of ``idx`` on the network in ``P``, in place.

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
    """
    steps = idx.shape[0]
    if steps == 0:
        return
    lr, eps, woff, boff, aoff, A, D, da = step_state(P, sizes, lrate)
    rows = np.empty(sizes[0], dtype=np.int64)
    m0, n0 = sizes[0], sizes[1]
    for t in range(steps):
        s = idx[t]
        prev = idx[t - 1] if t > 0 else s
        first_layer_forward(P, woff[0], boff[0], m0, n0, X[s], X[prev], D[0:n0], lr, t > 0,
                            A[0:n0], rows)
        activate(acts[0], A[0:n0])
        losses[t], hits[t] = upper_step(P, sizes, acts, loss, woff, boff, aoff, A, D, da, Y[s],
                                        lr, eps)
    last = idx[steps - 1]
    write_gradients(G, sizes, woff, boff, X[last], A, D, aoff)
    first_layer_update(P, woff[0], boff[0], m0, n0, X[last], D[0:n0], lr)


@jit
def step_state(P, sizes, lrate):
    """What every per-sample kernel sets up once per call: the learning rate and
    NLL floor in P's dtype, the layer offsets, and the buffers of one step --
    each layer's activated output (A), its gradient before activation (D), and
    an input gradient (da)."""
    L = sizes.shape[0] - 1
    woff, boff, aoff = offsets(sizes)
    A = np.zeros(aoff[L], dtype=P.dtype)
    D = np.zeros(aoff[L], dtype=P.dtype)
    da = np.zeros(sizes.max(), dtype=P.dtype)
    return P.dtype.type(lrate), np.finfo(P.dtype).eps, woff, boff, aoff, A, D, da


@jit(inline="always")
def upper_step(P, sizes, acts, loss, woff, boff, aoff, A, D, da, y, lr, eps):
    """One step of every layer above the first, for one sample.

    From the first layer's activated output in ``A[0:n0]``: forward through
    the other layers, the loss against ``y``, and backward with each layer's
    update fused into its backward product; leaves the first layer's
    gradient before activation in ``D[0:n0]`` (the first layer itself is not
    touched). Returns (loss, 1 if the largest output is where y's is else 0).
    """
    L = sizes.shape[0] - 1
    for ell in range(1, L):
        m, n = sizes[ell], sizes[ell + 1]
        out = A[aoff[ell]:aoff[ell] + n]
        dense_forward(P, woff[ell], boff[ell], m, n, A[aoff[ell - 1]:aoff[ell - 1] + m], out)
        activate(acts[ell], out)
    out = A[aoff[L - 1]:aoff[L]]
    total = head(loss, acts[L - 1], out, y, D[aoff[L - 1]:aoff[L]], eps)
    hit = argmax(out) == argmax(y)
    for ell in range(L - 1, 0, -1):
        m, n = sizes[ell], sizes[ell + 1]
        a_in = A[aoff[ell - 1]:aoff[ell - 1] + m]
        dense_backward_update(P, woff[ell], boff[ell], m, n, a_in, D[aoff[ell]:aoff[ell] + n],
                              lr, da[:m], acts[ell - 1] == RELU)
        activation_backward(acts[ell - 1], a_in, da[:m], D[aoff[ell - 1]:aoff[ell - 1] + m])
    return total, hit
