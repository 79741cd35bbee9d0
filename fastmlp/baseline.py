"""The pure-NumPy engine: the arithmetic of every training step, vectorised.

This module is fastmlp's control experiment. Every speed-up fastmlp claims is
measured against it, and every compiled kernel in :mod:`fastmlp.kernels` is
tested against its twin here, so it is written the way a careful NumPy
programmer would write it: one vectorised expression per step, a max-shifted
softmax, guarded logarithms, in-place updates and no needless copies. It
imports no Numba.

Layout follows the notebook: activations are ``(features, batch)`` arrays,
``W`` is ``(inputs, outputs)`` and ``W0`` is ``(outputs, 1)``. Gradients of
weights are written into caller-owned buffers (``out`` style), everything else
is returned.
"""

import numpy as np

from .kernels import codes

__all__ = [
    "linear_backward",
    "linear_forward",
    "linear_update",
    "mse_backward",
    "mse_forward",
    "nll_backward",
    "nll_forward",
    "relu_backward",
    "relu_forward",
    "sgd_update",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax_backward",
    "softmax_forward",
    "softmax_nll_backward",
    "tanh_backward",
    "tanh_forward",
]

name = "numpy"


def linear_forward(W, W0, A):
    """Return ``W.T @ A + W0`` for a batch ``A`` of shape (m, b)."""
    return W.T @ A + W0


def linear_backward(W, A, dLdZ, dLdW, dLdW0, input_grad=True):
    """Fill ``dLdW`` (m, n) and ``dLdW0`` (n, 1), summed over the batch.

    Returns ``W @ dLdZ``, the gradient with respect to the layer's input, or
    None when ``input_grad`` is false (the first layer of a network, whose
    input is data, needs no input gradient).
    """
    np.matmul(A, dLdZ.T, out=dLdW)
    np.sum(dLdZ, axis=1, keepdims=True, out=dLdW0)
    return W @ dLdZ if input_grad else None


def linear_update(W, W0, dLdW, dLdW0, lrate):
    """Take one gradient step in place: ``W -= lrate * dLdW`` and likewise W0."""
    W -= lrate * dLdW
    W0 -= lrate * dLdW0


def sgd_update(W, W0, dLdW, dLdW0, S, S0, opt, hyper, batch):
    """One optimizer step in place, from gradients summed over ``batch`` samples.

    With ``g = grad_scale * dLdW / batch + decay * W`` (``decay =
    weight_decay + alpha / batch``; biases get no decay): plain SGD is ``W -=
    lr * g``; with momentum ``V = momentum * V - lr * g`` and ``W += V``, or
    ``W += momentum * V - lr * g`` for Nesterov's variant (the rules of
    scikit-learn's SGD optimizer). ``opt`` is a code of
    :mod:`fastmlp.kernels.codes`, ``hyper`` the optimizer's hyper-parameters
    laid out as there, and ``S``, ``S0`` its state for W and W0 (row 0: the
    velocity, flattened; Adam: rows 0 and 1 the moments, ``hyper[H_T]`` the
    step counter, advanced by the caller once per step).
    """
    lr, mu = hyper[codes.H_LR], hyper[codes.H_MOMENTUM]
    scale = hyper[codes.H_GRAD_SCALE] / batch
    decay = hyper[codes.H_DECAY] + hyper[codes.H_ALPHA] / batch
    for P, grad, state, d in ((W, dLdW, S, decay), (W0, dLdW0, S0, 0.0)):
        g = grad * P.dtype.type(scale)
        if d:
            g += P.dtype.type(d) * P
        if opt == codes.SGD:
            P -= P.dtype.type(lr) * g
            continue
        if opt == codes.ADAM:  # moments in rows 0 and 1; hyper[codes.H_T] counts this step
            b1, b2, t = hyper[codes.H_BETA1], hyper[codes.H_BETA2], hyper[codes.H_T]
            M, V = state[0].reshape(P.shape), state[1].reshape(P.shape)
            M *= P.dtype.type(b1)
            M += P.dtype.type(1 - b1) * g
            V *= P.dtype.type(b2)
            V += P.dtype.type(1 - b2) * (g * g)
            lr_t = P.dtype.type(lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t))
            P += -lr_t * M / (np.sqrt(V) + P.dtype.type(hyper[codes.H_EPSILON]))
            continue
        V = state[0].reshape(P.shape)
        V *= P.dtype.type(mu)
        V -= P.dtype.type(lr) * g
        if opt == codes.NESTEROV:
            P += P.dtype.type(mu) * V - P.dtype.type(lr) * g
        else:
            P += V


def relu_forward(Z):
    """Return ``max(Z, 0)`` elementwise."""
    return np.maximum(Z, 0)


def relu_backward(A, dLdA):
    """Return ``dLdA`` where the unit was active (``A != 0``), zero elsewhere."""
    return dLdA * (A != 0)


def tanh_forward(Z):
    """Return ``tanh(Z)``."""
    return np.tanh(Z)


def tanh_backward(A, dLdA):
    """Return ``(1 - A**2) * dLdA`` for ``A = tanh(Z)``."""
    return (1 - A * A) * dLdA


def sigmoid_forward(Z):
    """Return the logistic function of ``Z`` without overflow for large ``|Z|``."""
    # exp(-|Z|) never overflows; both branches are the same function.
    E = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1 / (1 + E), E / (1 + E))


def sigmoid_backward(A, dLdA):
    """Return ``A * (1 - A) * dLdA`` for ``A = sigmoid(Z)``."""
    return A * (1 - A) * dLdA


def softmax_forward(Z):
    """Return the softmax of each column of ``Z``, shifted by its maximum."""
    E = np.exp(Z - Z.max(axis=0, keepdims=True))
    E /= E.sum(axis=0, keepdims=True)
    return E


def softmax_backward(A, dLdA):
    """Return the softmax Jacobian applied to ``dLdA``, column by column.

    ``dLdZ = A * (dLdA - sum(A * dLdA))``: the notebook's einsum over the full
    (n, n, b) Jacobian, without forming it.
    """
    return A * (dLdA - np.sum(A * dLdA, axis=0, keepdims=True))


def nll_eps(dtype):
    """The floor applied to probabilities before taking their logarithm."""
    return np.finfo(dtype).eps


def nll_forward(Ypred, Y):
    """Return ``-sum(Y * log(Ypred))`` over the batch, with ``Ypred`` floored at eps."""
    return float(-np.sum(Y * np.log(np.maximum(Ypred, nll_eps(Ypred.dtype)))))


def nll_backward(Ypred, Y):
    """Return ``-Y / Ypred``, with ``Ypred`` floored at eps."""
    return -Y / np.maximum(Ypred, nll_eps(Ypred.dtype))


def mse_forward(Ypred, Y):
    """Return the sum of squared errors over outputs and batch."""
    D = Ypred - Y
    return float(np.vdot(D, D))


def mse_backward(Ypred, Y):
    """Return ``2 * (Ypred - Y)``."""
    return 2 * (Ypred - Y)


def softmax_nll_backward(Ypred, Y):
    """Return ``Ypred - Y``: the gradient of NLL(softmax(Z)) with respect to Z."""
    return Ypred - Y
