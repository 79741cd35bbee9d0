"""The Numba engine: compiled twins of every function in :mod:`fastmlp.baseline`.

Same names, signatures and layouts as the NumPy engine, so layers can run on
either; float32 and float64 alike, and any memory layout (a column slice of
the data is a strided view). Constants are made in the array's own dtype
(``x.dtype.type(1)``), so float32 arithmetic is never promoted to float64.

Batches of at least ``BLAS_MIN_BATCH`` columns go to BLAS through ``np.dot``;
smaller ones (the per-sample steps of the layer-by-layer path) use loops,
which beat a BLAS call at that size.
"""

import numpy as np

from ._jit import REASSOC, jit

name = "numba"

#: Batches with at least this many columns use BLAS matrix products.
BLAS_MIN_BATCH = 8


@jit(fastmath=REASSOC)
def linear_forward(W, W0, A):
    """Return ``W.T @ A + W0`` for a batch ``A`` of shape (m, b)."""
    m, n = W.shape
    b = A.shape[1]
    if b >= BLAS_MIN_BATCH:
        Z = np.dot(W.T, np.ascontiguousarray(A))
        for j in range(n):
            for c in range(b):
                Z[j, c] += W0[j, 0]
        return Z
    Z = np.empty((n, b), dtype=W.dtype)
    z = np.empty(n, dtype=W.dtype)
    for c in range(b):
        z[:] = 0
        for i in range(m):
            a = A[i, c]
            for j in range(n):
                z[j] += a * W[i, j]
        for j in range(n):
            Z[j, c] = z[j] + W0[j, 0]
    return Z


@jit(fastmath=REASSOC)
def linear_backward(W, A, dLdZ, dLdW, dLdW0, input_grad=True):
    """Fill ``dLdW`` and ``dLdW0`` (sums over the batch); return ``W @ dLdZ`` or None."""
    m, n = W.shape
    b = A.shape[1]
    if b >= BLAS_MIN_BATCH:
        dLdZc = np.ascontiguousarray(dLdZ)
        dLdW[:, :] = np.dot(np.ascontiguousarray(A), dLdZc.T)
    else:
        dLdW[:, :] = 0
        for i in range(m):
            for c in range(b):
                a = A[i, c]
                for j in range(n):
                    dLdW[i, j] += a * dLdZ[j, c]
    for j in range(n):
        s = dLdZ.dtype.type(0)
        for c in range(b):
            s += dLdZ[j, c]
        dLdW0[j, 0] = s
    if not input_grad:
        return None
    if b >= BLAS_MIN_BATCH:
        return np.dot(W, np.ascontiguousarray(dLdZ))
    dA = np.empty((m, b), dtype=W.dtype)
    for c in range(b):
        for i in range(m):
            s = W.dtype.type(0)
            for j in range(n):
                s += W[i, j] * dLdZ[j, c]
            dA[i, c] = s
    return dA


@jit
def linear_update(W, W0, dLdW, dLdW0, lrate):
    """In place: ``W -= lrate * dLdW`` and ``W0 -= lrate * dLdW0``, in W's dtype."""
    lr = W.dtype.type(lrate)
    m, n = W.shape
    for i in range(m):
        for j in range(n):
            W[i, j] -= lr * dLdW[i, j]
    for j in range(n):
        W0[j, 0] -= lr * dLdW0[j, 0]


@jit
def momentum_step(P, grad, V, lr, scale, mu, nesterov, decay):
    """``g = scale * grad + decay * P``, then plain, momentum or Nesterov SGD on P.

    All arguments are 1-D arrays or scalars in P's dtype (see ``sgd_update``).
    Each case is its own loop, without branches, so that it vectorizes.
    """
    n = P.shape[0]
    if mu == 0:
        if decay == 0:
            for i in range(n):
                P[i] -= lr * (grad[i] * scale)
        else:
            for i in range(n):
                P[i] -= lr * (grad[i] * scale + decay * P[i])
    elif nesterov:
        for i in range(n):
            g = grad[i] * scale + decay * P[i]
            v = mu * V[i] - lr * g
            V[i] = v
            P[i] += mu * v - lr * g
    else:
        for i in range(n):
            v = mu * V[i] - lr * (grad[i] * scale + decay * P[i])
            V[i] = v
            P[i] += v


@jit
def sgd_update(W, W0, dLdW, dLdW0, VW, VW0, lrate, scale, momentum, nesterov, weight_decay):
    """One optimizer step in place (the rule of ``fastmlp.baseline.sgd_update``)."""
    t = W.dtype.type
    lr, sc, mu, wd = t(lrate), t(scale), t(momentum), t(weight_decay)
    momentum_step(W.reshape(-1), dLdW.reshape(-1), VW.reshape(-1), lr, sc, mu, nesterov, wd)
    momentum_step(W0.reshape(-1), dLdW0.reshape(-1), VW0.reshape(-1), lr, sc, mu, nesterov,
                  t(0))


@jit
def relu_forward(Z):
    """Return ``max(Z, 0)`` elementwise (NaN stays NaN)."""
    out = np.empty(Z.shape, dtype=Z.dtype)
    for i in range(Z.shape[0]):
        for c in range(Z.shape[1]):
            z = Z[i, c]
            out[i, c] = 0 if z < 0 else z
    return out


@jit
def relu_backward(A, dLdA):
    """Return ``dLdA * (A != 0)``."""
    out = np.empty(dLdA.shape, dtype=dLdA.dtype)
    for i in range(A.shape[0]):
        for c in range(A.shape[1]):
            d = dLdA[i, c]
            out[i, c] = d if A[i, c] != 0 else d * 0
    return out


@jit
def tanh_forward(Z):
    """Return ``tanh(Z)``."""
    return np.tanh(Z)


@jit
def tanh_backward(A, dLdA):
    """Return ``(1 - A**2) * dLdA``."""
    one = A.dtype.type(1)
    out = np.empty(dLdA.shape, dtype=dLdA.dtype)
    for i in range(A.shape[0]):
        for c in range(A.shape[1]):
            a = A[i, c]
            out[i, c] = (one - a * a) * dLdA[i, c]
    return out


@jit
def sigmoid(z, one):
    """The logistic function of a scalar, without overflow (``one`` sets the dtype)."""
    if z >= 0:
        return one / (one + np.exp(-z))
    e = np.exp(z)
    return e / (one + e)


@jit
def sigmoid_forward(Z):
    """Return the logistic function of ``Z``."""
    one = Z.dtype.type(1)
    out = np.empty(Z.shape, dtype=Z.dtype)
    for i in range(Z.shape[0]):
        for c in range(Z.shape[1]):
            out[i, c] = sigmoid(Z[i, c], one)
    return out


@jit
def sigmoid_backward(A, dLdA):
    """Return ``A * (1 - A) * dLdA``."""
    one = A.dtype.type(1)
    out = np.empty(dLdA.shape, dtype=dLdA.dtype)
    for i in range(A.shape[0]):
        for c in range(A.shape[1]):
            a = A[i, c]
            out[i, c] = a * (one - a) * dLdA[i, c]
    return out


@jit
def softmax_forward(Z):
    """Return the softmax of each column of ``Z``, shifted by its maximum."""
    n, b = Z.shape
    out = np.empty(Z.shape, dtype=Z.dtype)
    for c in range(b):
        mx = Z[0, c]
        for i in range(1, n):
            mx = max(mx, Z[i, c])
        s = Z.dtype.type(0)
        for i in range(n):
            e = np.exp(Z[i, c] - mx)
            out[i, c] = e
            s += e
        for i in range(n):
            out[i, c] /= s
    return out


@jit
def softmax_backward(A, dLdA):
    """Return ``A * (dLdA - sum(A * dLdA))`` per column: the softmax Jacobian applied."""
    n, b = A.shape
    out = np.empty(dLdA.shape, dtype=dLdA.dtype)
    for c in range(b):
        s = A.dtype.type(0)
        for i in range(n):
            s += A[i, c] * dLdA[i, c]
        for i in range(n):
            out[i, c] = A[i, c] * (dLdA[i, c] - s)
    return out


@jit
def nll_forward(Ypred, Y):
    """Return ``-sum(Y * log(max(Ypred, eps)))`` as a float."""
    eps = np.finfo(Ypred.dtype).eps
    s = Ypred.dtype.type(0)
    for i in range(Y.shape[0]):
        for c in range(Y.shape[1]):
            s += Y[i, c] * np.log(max(Ypred[i, c], eps))
    return float(-s)


@jit
def nll_backward(Ypred, Y):
    """Return ``-Y / max(Ypred, eps)``."""
    eps = np.finfo(Ypred.dtype).eps
    out = np.empty(Ypred.shape, dtype=Ypred.dtype)
    for i in range(Y.shape[0]):
        for c in range(Y.shape[1]):
            out[i, c] = -Y[i, c] / max(Ypred[i, c], eps)
    return out


@jit
def mse_forward(Ypred, Y):
    """Return ``sum((Ypred - Y)**2)`` as a float."""
    s = Ypred.dtype.type(0)
    for i in range(Y.shape[0]):
        for c in range(Y.shape[1]):
            d = Ypred[i, c] - Y[i, c]
            s += d * d
    return float(s)


@jit
def mse_backward(Ypred, Y):
    """Return ``2 * (Ypred - Y)``."""
    two = Ypred.dtype.type(2)
    out = np.empty(Ypred.shape, dtype=Ypred.dtype)
    for i in range(Y.shape[0]):
        for c in range(Y.shape[1]):
            out[i, c] = two * (Ypred[i, c] - Y[i, c])
    return out


@jit
def softmax_nll_backward(Ypred, Y):
    """Return ``Ypred - Y``."""
    out = np.empty(Ypred.shape, dtype=Ypred.dtype)
    for i in range(Y.shape[0]):
        for c in range(Y.shape[1]):
            out[i, c] = Ypred[i, c] - Y[i, c]
    return out
