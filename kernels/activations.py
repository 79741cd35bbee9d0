"""Activations and their derivatives, once, for every kernel.

Each activation is applied to a vector in place (:func:`activate`) and
differentiated from its output (:func:`activation_backward`); the fused
kernels call these on one sample's units, the Numba engine
(:mod:`fastmlp.kernels.layer_ops`) on each column of a batch. Codes are
those of :mod:`fastmlp.kernels.codes`.
"""

import numpy as np

from ._jit import jit
from .codes import IDENTITY, RELU, SIGMOID, SOFTMAX, TANH

__all__ = ["activate", "activation_backward", "sigmoid"]


@jit
def sigmoid(z, one):
    """The logistic function of a scalar, without overflow (``one`` sets the dtype)."""
    if z >= 0:
        return one / (one + np.exp(-z))
    e = np.exp(z)
    return e / (one + e)


@jit
def activate(code, a):
    """Apply activation ``code`` to the vector ``a`` in place (softmax: max-shifted)."""
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
    """Write into ``out`` the gradient before activation ``code``, given its output
    ``a`` and the gradient ``d`` after it. ``out`` may be ``d``.

    ReLU passes the gradient where the unit is active (``a != 0``) and gives
    ``d * 0`` elsewhere, so a NaN gradient stays NaN, as in NumPy.
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
    else:  # SOFTMAX: the Jacobian applied, without forming it
        s = a.dtype.type(0)
        for j in range(n):
            s += a[j] * d[j]
        for j in range(n):
            out[j] = a[j] * (d[j] - s)
