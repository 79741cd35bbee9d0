"""The optimizer's update of a flat run of parameters, for every kernel.

An optimizer reaches the kernels as a code (:mod:`fastmlp.kernels.codes`),
a float64 vector ``hyper`` of its hyper-parameters, and one state buffer
``S`` (rows of per-parameter state laid out like the parameters: row 0 the
velocity of momentum SGD; rows 0 and 1 Adam's first and second moments).
Adding an optimizer is one branch here and one class in
:mod:`fastmlp.optimizers`.
"""

import numpy as np

from ._jit import jit
from .codes import (
    ADAM,
    H_ALPHA,
    H_BETA1,
    H_BETA2,
    H_DECAY,
    H_EPSILON,
    H_GRAD_SCALE,
    H_LR,
    H_MOMENTUM,
    H_T,
    MOMENTUM,
    NESTEROV,
)

__all__ = ["update", "update_range"]


@jit(inline="always")
def update(opt, P, G, S, lo, hi, hyper, batch, decay_on):
    """:func:`update_range`, compiled once for both values of ``decay_on``.

    Callers pass ``decay_on`` as a constant (True for weights, False for
    biases), which Numba types as two literals and would compile the whole
    update twice (measured: 1-2 s more on a first ``fit``); the comparison
    makes it a plain boolean.
    """
    update_range(opt, P, G, S, lo, hi, hyper, batch, decay_on == True)  # noqa: E712


@jit
def update_range(opt, P, G, S, lo, hi, hyper, batch, decay_on):
    """Update ``P[lo:hi]`` from the gradient ``G[lo:hi]`` summed over ``batch`` samples.

    The step follows ``g = grad_scale * G / batch + decay * P`` with
    ``decay = weight_decay + alpha / batch`` where ``decay_on`` (weights; biases
    are never decayed): plain SGD ``P -= lr * g``; momentum ``V = mu * V - lr
    * g``, ``P += V``; Nesterov ``P += mu * V - lr * g`` after the same
    velocity update (scikit-learn's rules). Adam (scikit-learn's
    ``AdamOptimizer``): ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``P += -lr_t m / (sqrt(v) + eps)`` with the bias correction folded into
    ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``, ``t = hyper[H_T]`` (the caller
    advances it once per step). ``batch`` may be a float (scikit-learn divides
    by the batch's sum of sample weights). All arithmetic on the parameters
    is in P's dtype. Each case is its own loop, without branches, so that it
    vectorizes.
    """
    t = P.dtype.type
    lr, mu = t(hyper[H_LR]), t(hyper[H_MOMENTUM])
    scale = t(1) / t(batch)
    if hyper[H_GRAD_SCALE] != 1:
        scale = t(hyper[H_GRAD_SCALE]) * scale
    decay = t(0)
    if decay_on:
        decay = t(hyper[H_DECAY])
        if hyper[H_ALPHA] != 0:
            decay = decay + t(hyper[H_ALPHA]) / t(batch)
    # Views and loops from 0: an index known to be non-negative needs no
    # wrap-around check, so the loops vectorize (a range(lo, hi) index did
    # not, measured 1.5x slower on a float32 momentum step).
    p, g = P[lo:hi], G[lo:hi]
    n = hi - lo
    if opt == ADAM:
        b1, b2, step = hyper[H_BETA1], hyper[H_BETA2], hyper[H_T]
        lr_t = t(hyper[H_LR] * np.sqrt(1.0 - b2 ** step) / (1.0 - b1 ** step))
        c1, c2 = t(1.0 - b1), t(1.0 - b2)
        tb1, tb2, eps = t(b1), t(b2), t(hyper[H_EPSILON])
        M, V = S[0, lo:hi], S[1, lo:hi]
        for i in range(n):
            gi = g[i] * scale + decay * p[i]
            m = tb1 * M[i] + c1 * gi
            v = tb2 * V[i] + c2 * (gi * gi)
            M[i] = m
            V[i] = v
            p[i] += -lr_t * m / (np.sqrt(v) + eps)
    elif opt == MOMENTUM:
        V = S[0, lo:hi]
        for i in range(n):
            v = mu * V[i] - lr * (g[i] * scale + decay * p[i])
            V[i] = v
            p[i] += v
    elif opt == NESTEROV:
        V = S[0, lo:hi]
        for i in range(n):
            gi = g[i] * scale + decay * p[i]
            v = mu * V[i] - lr * gi
            V[i] = v
            p[i] += mu * v - lr * gi
    elif decay == 0:
        for i in range(n):
            p[i] -= lr * (g[i] * scale)
    else:
        for i in range(n):
            p[i] -= lr * (g[i] * scale + decay * p[i])
