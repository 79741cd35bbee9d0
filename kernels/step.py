"""The pieces of one training step that every fused kernel shares.

The network arrives as flat buffers: ``sizes`` (widths, input first),
``acts`` (the activation code after each Linear layer, see
:mod:`fastmlp.kernels.codes`), and ``P``, every layer's ``W`` (row-major,
inputs x outputs) followed by its ``W0``. Samples are rows of ``X`` and ``Y``.

Rows whose input is zero are skipped where that is exact: a zero input adds
nothing to a forward product and makes a zero rank-1 update. MNIST pixels and
ReLU outputs are mostly zero, so this skips most of the work there. (Exact
for finite weights. A weight that is already inf or NaN, times a zero input,
gives NaN in NumPy and nothing here; training has diverged by then either
way. The one-pass kernel's first layer on dense inputs visits every row, so
there a zero input times an inf weight gives NaN, as in NumPy.)
"""

import numpy as np

from ._jit import REASSOC, jit
from .activations import activate, activation_backward
from .codes import RELU
from .heads import head


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
def step_state(P, sizes, lrate):
    """What every per-sample kernel sets up once per call: the learning rate and
    NLL floor in P's dtype, the layer offsets, and the buffers of one step --
    each layer's activated output (A), its gradient before activation (D), and
    an input gradient (da)."""
    L = sizes.shape[0] - 1
    woff, boff, aoff = offsets(sizes)
    A = np.zeros(aoff[L], dtype=P.dtype)
    D = np.zeros(aoff[L], dtype=P.dtype)
    da = np.zeros(widest(sizes), dtype=P.dtype)
    return P.dtype.type(lrate), eps_of(P), woff, boff, aoff, A, D, da


@jit(inline="always")
def widest(sizes):
    """``sizes.max()`` (whose implementation, like np.finfo's, takes seconds
    to compile)."""
    w = 0
    for ell in range(sizes.shape[0]):
        w = max(w, sizes[ell])
    return w


@jit(inline="always")
def eps_of(a):
    """``np.finfo(a.dtype).eps`` for a float32 or float64 array, as its dtype."""
    return a.dtype.type(2.0 ** -52 if a.itemsize == 8 else 2.0 ** -23)


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
