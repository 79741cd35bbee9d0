"""The Numba engine: compiled twins of every function in :mod:`fastmlp.baseline`.

Activations and their derivatives are :mod:`fastmlp.kernels.activations`'s,
applied column by column; the optimizer's step is the fused kernels' own
(:mod:`fastmlp.kernels.update`).

Same names, signatures and layouts as the NumPy engine, so layers can run on
either; float32 and float64 alike, and any memory layout (a column slice of
the data is a strided view). Constants are made in the array's own dtype
(``x.dtype.type(1)``), so float32 arithmetic is never promoted to float64.

Batches of at least ``fastmlp.config.BLAS_MIN_COLUMNS`` columns go to BLAS through ``np.dot``;
smaller ones (the per-sample steps of the layer-by-layer path) use loops,
which beat a BLAS call at that size.
"""

import numpy as np

from ..config import BLAS_MIN_COLUMNS
from ._jit import REASSOC, jit
from .activations import activate, activation_backward
from .codes import RELU, SIGMOID, SOFTMAX, TANH
from .update import update

name = "numba"


@jit(fastmath=REASSOC)
def linear_forward(W, W0, A):
    """Return ``W.T @ A + W0`` for a batch ``A`` of shape (m, b)."""
    m, n = W.shape
    b = A.shape[1]
    if b >= BLAS_MIN_COLUMNS:
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
    if b >= BLAS_MIN_COLUMNS:
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
    if b >= BLAS_MIN_COLUMNS:
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
def sgd_update(W, W0, dLdW, dLdW0, S, S0, opt, hyper, batch):
    """One optimizer step in place from gradients summed over ``batch`` samples.

    ``S`` and ``S0`` are the optimizer's state for W and W0 (a row per state
    vector, each laid out like the flattened parameter); the rule is
    :func:`fastmlp.kernels.update.update`'s, the fused kernels' own.
    """
    update(opt, W.reshape(-1), dLdW.reshape(-1), S, 0, W.size, hyper, batch, True)
    update(opt, W0.reshape(-1), dLdW0.reshape(-1), S0, 0, W0.size, hyper, batch, False)


@jit
def _apply_columns(code, Z):
    """Activation ``code`` of every column of ``Z``, as a new array."""
    out = Z.copy()
    for c in range(Z.shape[1]):
        activate(code, out[:, c])
    return out


@jit
def _backward_columns(code, A, dLdA):
    """The gradient before activation ``code`` of every column, from its output A."""
    out = np.empty(dLdA.shape, dtype=dLdA.dtype)
    for c in range(A.shape[1]):
        activation_backward(code, A[:, c], dLdA[:, c], out[:, c])
    return out


@jit
def relu_forward(Z):
    """Return ``max(Z, 0)`` elementwise (NaN stays NaN)."""
    return _apply_columns(RELU, Z)


@jit
def relu_backward(A, dLdA):
    """Return ``dLdA * (A != 0)``."""
    return _backward_columns(RELU, A, dLdA)


@jit
def tanh_forward(Z):
    """Return ``tanh(Z)``."""
    return _apply_columns(TANH, Z)


@jit
def tanh_backward(A, dLdA):
    """Return ``(1 - A**2) * dLdA``."""
    return _backward_columns(TANH, A, dLdA)


@jit
def sigmoid_forward(Z):
    """Return the logistic function of ``Z``, without overflow."""
    return _apply_columns(SIGMOID, Z)


@jit
def sigmoid_backward(A, dLdA):
    """Return ``A * (1 - A) * dLdA``."""
    return _backward_columns(SIGMOID, A, dLdA)


@jit
def softmax_forward(Z):
    """Return the softmax of each column of ``Z``, shifted by its maximum."""
    return _apply_columns(SOFTMAX, Z)


@jit
def softmax_backward(A, dLdA):
    """Return ``A * (dLdA - sum(A * dLdA))`` per column: the softmax Jacobian applied."""
    return _backward_columns(SOFTMAX, A, dLdA)


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
