"""The head of the network: the loss of one sample's output and its gradient.

One place for every loss the kernels know (codes in
:mod:`fastmlp.kernels.codes`); the per-sample and mini-batch kernels call
:func:`head` for each sample.
"""

import numpy as np

from ._jit import jit
from .activations import activation_backward
from .codes import NLL


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
