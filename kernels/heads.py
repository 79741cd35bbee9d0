"""The head of the network: the loss of one sample's output and its gradient.

One place for every loss the kernels know (codes in
:mod:`fastmlp.kernels.codes`); the per-sample, mini-batch and full-batch
kernels call :func:`head` for each sample.
"""

import numpy as np

from ._jit import jit
from .activations import activation_backward
from .codes import LOGISTIC, NLL, POISSON


@jit
def head(loss, code, a, y, dz, eps):
    """Return the loss of output ``a`` (already activated) against ``y``; write
    the gradient with respect to the last pre-activation into ``dz``.

    * NLL (after SoftMax): ``-sum(y * log(max(a, eps)))``, gradient ``a - y``.
    * MSE: ``sum((a - y) ** 2)``, gradient ``2 (a - y)`` back through the
      activation ``code``.
    * LOGISTIC (after Sigmoid, one unit per label): scikit-learn's binary
      log-loss, ``-sum(y log p + (1 - y) log(1 - p))`` with ``p = clip(a,
      eps, 1 - eps)`` and ``0 log 0 = 0``; gradient ``a - y``.
    * POISSON (identity activation, the head exponentiates ``a`` in place):
      scikit-learn's half Poisson deviance ``sum(y log(y / p) - y + p)`` with
      ``p = exp(a)`` and ``0 log 0 = 0``; gradient ``p - y``.
    """
    one = a.dtype.type(1)
    two = a.dtype.type(2)
    total = a.dtype.type(0)
    n = a.shape[0]
    if loss == NLL:  # after SoftMax: the combined gradient Ypred - Y
        for j in range(n):
            if y[j] != 0:
                total -= y[j] * np.log(max(a[j], eps))
            dz[j] = a[j] - y[j]
    elif loss == LOGISTIC:
        for j in range(n):
            p = min(max(a[j], eps), one - eps)
            if y[j] != 0:
                total -= y[j] * np.log(p)
            if y[j] != one:
                total -= (one - y[j]) * np.log(one - p)
            dz[j] = a[j] - y[j]
    elif loss == POISSON:
        for j in range(n):
            p = np.exp(a[j])
            a[j] = p
            if y[j] != 0:
                total += y[j] * np.log(y[j] / p)
            total += p - y[j]
            dz[j] = p - y[j]
    else:  # MSE: 2 (a - y), then back through the activation
        for j in range(n):
            e = a[j] - y[j]
            total += e * e
            dz[j] = two * e
        activation_backward(code, a, dz, dz)
    return total
