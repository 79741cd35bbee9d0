"""The optimizer's update of a flat run of parameters, for every kernel.

An optimizer reaches the kernels as a code (:mod:`fastmlp.kernels.codes`),
a float64 vector ``hyper`` of its hyper-parameters, and one state buffer
``S`` (rows of per-parameter state laid out like the parameters: row 0 the
velocity of momentum SGD). Adding an optimizer is one branch here and one
class in :mod:`fastmlp.optimizers`.
"""

from ._jit import jit
from .codes import H_ALPHA, H_DECAY, H_GRAD_SCALE, H_LR, H_MOMENTUM, MOMENTUM, NESTEROV

__all__ = ["update"]


@jit
def update(opt, P, G, S, lo, hi, hyper, batch, decay_on):
    """Update ``P[lo:hi]`` from the gradient ``G[lo:hi]`` summed over ``batch`` samples.

    The step follows ``g = grad_scale * G / batch + decay * P`` with
    ``decay = weight_decay + alpha / batch`` where ``decay_on`` (weights; biases
    are never decayed): plain SGD ``P -= lr * g``; momentum ``V = mu * V - lr
    * g``, ``P += V``; Nesterov ``P += mu * V - lr * g`` after the same
    velocity update (scikit-learn's rules). All arithmetic is in P's dtype.
    Each case is its own loop, without branches, so that it vectorizes.
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
    if opt == MOMENTUM:
        V = S[0]
        for i in range(lo, hi):
            v = mu * V[i] - lr * (G[i] * scale + decay * P[i])
            V[i] = v
            P[i] += v
    elif opt == NESTEROV:
        V = S[0]
        for i in range(lo, hi):
            g = G[i] * scale + decay * P[i]
            v = mu * V[i] - lr * g
            V[i] = v
            P[i] += mu * v - lr * g
    elif decay == 0:
        for i in range(lo, hi):
            P[i] -= lr * (G[i] * scale)
    else:
        for i in range(lo, hi):
            P[i] -= lr * (G[i] * scale + decay * P[i])
