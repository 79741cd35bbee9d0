"""Slow, obviously correct reference implementations: the tests' oracles.

Every function here is written for clarity, not speed: plain Python loops
over scalars (Python floats, i.e. float64), no matrix products, nothing from
fastmlp. The fast paths of fastmlp (NumPy engine, Numba kernels: one-pass,
blocked, mini-batch, layer by layer) are all compared with these.

A *network* is a list of ``(W, W0, act)``: ``W`` of shape (inputs, outputs),
``W0`` of shape (outputs,) or (outputs, 1), and ``act`` one of
:data:`ACTIVATIONS`, the activation applied after that layer. Internally the
functions work on *layers*, the same triples as nested Python lists
(:func:`to_lists`, :func:`to_arrays`). Samples are 1-D; a data set ``X`` is
(features, samples) and ``Y`` (outputs, samples), as in fastmlp.
"""

import math

import numpy as np

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "softmax")
#: NLL's floor on probabilities for float64 models, ``np.finfo(dtype).eps``.
EPS64 = float(np.finfo(np.float64).eps)


def to_lists(network):
    """Return ``network`` as layers ``[W rows, biases, act]`` of Python floats."""
    layers = []
    for W, W0, act in network:
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}")
        W = np.asarray(W, dtype=np.float64)
        rows = [[float(W[i, j]) for j in range(W.shape[1])] for i in range(W.shape[0])]
        biases = [float(b) for b in np.asarray(W0, dtype=np.float64).ravel()]
        layers.append([rows, biases, act])
    return layers


def to_arrays(layers):
    """Return ``layers`` as a network of float64 arrays, ``W0`` of shape (outputs, 1)."""
    return [(np.array(W, dtype=np.float64), np.array(b, dtype=np.float64).reshape(-1, 1), act)
            for W, b, act in layers]


def sigmoid(z):
    """The logistic function ``1 / (1 + exp(-z))``, without overflow for any z."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def activate(act, z):
    """Return the activation ``act`` of the pre-activations ``z`` (a list)."""
    if act == "identity":
        return list(z)
    if act == "relu":
        return [max(v, 0.0) for v in z]
    if act == "tanh":
        return [math.tanh(v) for v in z]
    if act == "sigmoid":
        return [sigmoid(v) for v in z]
    if act == "softmax":  # shifted by the maximum, so exp never overflows
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = 0.0
        for v in e:
            total += v
        return [v / total for v in e]
    raise ValueError(f"unknown activation {act!r}")


def activation_backward(act, a, d):
    """Return dL/dz given the activation's output ``a`` and ``d`` = dL/da."""
    n = len(a)
    if act == "identity":
        return list(d)
    if act == "relu":
        return [d[j] if a[j] > 0 else 0.0 for j in range(n)]
    if act == "tanh":
        return [(1.0 - a[j] * a[j]) * d[j] for j in range(n)]
    if act == "sigmoid":
        return [a[j] * (1.0 - a[j]) * d[j] for j in range(n)]
    if act == "softmax":  # the softmax Jacobian, diag(a) - a a^T, applied to d
        s = 0.0
        for j in range(n):
            s += a[j] * d[j]
        return [a[j] * (d[j] - s) for j in range(n)]
    raise ValueError(f"unknown activation {act!r}")


def linear(W, b, x):
    """Return ``z[j] = b[j] + sum_i x[i] * W[i][j]``, one layer's pre-activation."""
    z = list(b)
    for i in range(len(x)):
        xi, row = x[i], W[i]
        for j in range(len(z)):
            z[j] += xi * row[j]
    return z


def forward_all(layers, x):
    """Return the list of every layer's output for the sample ``x``, input first."""
    outs = [list(x)]
    for W, b, act in layers:
        outs.append(activate(act, linear(W, b, outs[-1])))
    return outs


def forward(network, x):
    """Return the network's output for one sample ``x`` (1-D), as a float64 array."""
    x = [float(v) for v in np.asarray(x).ravel()]
    return np.array(forward_all(to_lists(network), x)[-1])


def loss_and_gradient(loss, act, a, y, eps):
    """Return ``(loss, dz)`` for output ``a`` after activation ``act`` and target ``y``.

    ``dz`` is the gradient with respect to the last layer's pre-activation.
    "nll" (after softmax only): ``-sum y log(max(a, eps))``, gradient ``a - y``.
    "mse": ``sum (a - y)**2``, gradient ``2 (a - y)`` taken back through ``act``.
    """
    n = len(a)
    if loss == "nll":
        if act != "softmax":
            raise ValueError("nll needs a softmax output")
        total = 0.0
        for j in range(n):
            total -= y[j] * math.log(max(a[j], eps))
        return total, [a[j] - y[j] for j in range(n)]
    if loss == "mse":
        total = 0.0
        for j in range(n):
            total += (a[j] - y[j]) ** 2
        return total, activation_backward(act, a, [2.0 * (a[j] - y[j]) for j in range(n)])
    raise ValueError(f"unknown loss {loss!r}")


def backward(layers, outs, dz):
    """Return ``[(dW, db), ...]`` per layer for one sample, given its ``outs``
    (from :func:`forward_all`) and ``dz``, the gradient at the last pre-activation."""
    grads = [None] * len(layers)
    for ell in range(len(layers) - 1, -1, -1):
        W, _, _ = layers[ell]
        a_in = outs[ell]
        grads[ell] = ([[a_i * dz_j for dz_j in dz] for a_i in a_in], list(dz))
        if ell > 0:
            da = [0.0] * len(a_in)
            for i in range(len(a_in)):
                row = W[i]
                for j in range(len(dz)):
                    da[i] += row[j] * dz[j]
            dz = activation_backward(layers[ell - 1][2], a_in, da)
    return grads


def sample_gradients(layers, x, y, loss, eps):
    """Return ``(loss, grads)`` of one sample: forward, loss, backward."""
    outs = forward_all(layers, x)
    value, dz = loss_and_gradient(loss, layers[-1][2], outs[-1], y, eps)
    return value, backward(layers, outs, dz)


def columns(X):
    """The columns of a (features, samples) array as lists of Python floats."""
    X = np.asarray(X, dtype=np.float64)
    return [[float(X[i, t]) for i in range(X.shape[0])] for t in range(X.shape[1])]


def sgd_per_sample(network, X, Y, steps, lrate, loss, eps=EPS64):
    """The notebook's loop: for each sample index t in ``steps``, forward and
    backward with the current weights, then ``W -= lrate * dW`` for every layer.

    Returns ``(network, losses)``: the trained network and each step's loss.
    """
    layers, xs, ys = to_lists(network), columns(X), columns(Y)
    losses = []
    for t in steps:
        value, grads = sample_gradients(layers, xs[t], ys[t], loss, eps)
        losses.append(value)
        for (W, b, _), (dW, db) in zip(layers, grads, strict=True):
            for i in range(len(W)):
                for j in range(len(b)):
                    W[i][j] -= lrate * dW[i][j]
            for j in range(len(b)):
                b[j] -= lrate * db[j]
    return to_arrays(layers), losses


def optimizer_step(params, grads, velocity, lrate, momentum, nesterov):
    """One SGD step on parallel 1-D lists, in place; ``grads`` include any decay.

    Plain: ``p -= lrate * g`` (velocity untouched). Momentum:
    ``v = momentum * v - lrate * g; p += v``. Nesterov:
    ``v = momentum * v - lrate * g; p += momentum * v - lrate * g``.
    """
    for i in range(len(params)):
        g = grads[i]
        if momentum == 0:
            params[i] -= lrate * g
            continue
        velocity[i] = momentum * velocity[i] - lrate * g
        if nesterov:
            params[i] += momentum * velocity[i] - lrate * g
        else:
            params[i] += velocity[i]


def zero_velocity(network):
    """Zero velocities for :func:`sgd_minibatch`: ``(rows of W, biases)`` per layer."""
    return [([[0.0] * np.shape(W)[1] for _ in range(np.shape(W)[0])], [0.0] * np.size(W0))
            for W, W0, _ in network]


def batch_gradient(layers, xs, ys, rows, loss, eps, weight_decay):
    """Return ``(summed loss, [(gW, gb), ...])``: the batch's MEAN gradient, plus
    ``weight_decay * W`` for the weights (not the biases); every sample's
    gradient is taken with the weights before the step."""
    total = 0.0
    sums = [([[0.0] * len(b) for _ in W], [0.0] * len(b)) for W, b, _ in layers]
    for t in rows:
        value, grads = sample_gradients(layers, xs[t], ys[t], loss, eps)
        total += value
        for (sW, sb), (dW, db) in zip(sums, grads, strict=True):
            for i in range(len(sW)):
                s_row, d_row = sW[i], dW[i]
                for j in range(len(sb)):
                    s_row[j] += d_row[j]
            for j in range(len(sb)):
                sb[j] += db[j]
    b = len(rows)
    mean = []
    for (sW, sb), (W, _, _) in zip(sums, layers, strict=True):
        gW = [[sW[i][j] / b + weight_decay * W[i][j] for j in range(len(sb))]
              for i in range(len(sW))]
        mean.append((gW, [s / b for s in sb]))
    return total, mean


def sgd_minibatch(network, X, Y, order, batch, lrate, loss, *, momentum=0.0, nesterov=False,
                  weight_decay=0.0, velocity=None, eps=EPS64):
    """Mini-batch SGD over ``order``: one step per run of ``batch`` consecutive
    entries (the last may be shorter), following the batch's mean gradient
    (:func:`batch_gradient`) with :func:`optimizer_step`.

    ``velocity`` (from :func:`zero_velocity` or a previous call) persists.
    Returns ``(network, velocity, losses)``, ``losses`` summed per step.
    """
    layers, xs, ys = to_lists(network), columns(X), columns(Y)
    if velocity is None:
        velocity = zero_velocity(network)
    losses = []
    for start in range(0, len(order), batch):
        rows = list(order[start:start + batch])
        value, grads = batch_gradient(layers, xs, ys, rows, loss, eps, weight_decay)
        losses.append(value)
        for (W, b, _), (gW, gb), (VW, Vb) in zip(layers, grads, velocity, strict=True):
            for i in range(len(W)):
                optimizer_step(W[i], gW[i], VW[i], lrate, momentum, nesterov)
            optimizer_step(b, gb, Vb, lrate, momentum, nesterov)
    return to_arrays(layers), velocity, losses


def fit(network, X, Y, epochs, batch, lrate, loss, seed, *, shuffle=True, velocity=None,
        **options):
    """``Sequential.fit`` with a constant rate: each epoch draws
    ``order = rng.permutation(n)`` (``np.arange(n)`` without shuffle), with
    ``rng = np.random.RandomState(seed)``, and runs :func:`sgd_minibatch`.

    ``options`` go to :func:`sgd_minibatch`. Returns ``(network, velocity,
    losses per epoch)``, each epoch's losses summed per step.
    """
    rng = np.random.RandomState(seed)
    n = np.shape(X)[1]
    epoch_losses = []
    for _ in range(epochs):
        order = rng.permutation(n) if shuffle else np.arange(n)
        network, velocity, losses = sgd_minibatch(network, X, Y, order, batch, lrate, loss,
                                                  velocity=velocity, **options)
        epoch_losses.append(losses)
    return network, velocity, epoch_losses


def sgd_indices(n, iters, seed, batch=1):
    """The sample indices ``Sequential.sgd(..., seed=seed)`` visits: for a
    RandomState, ``iters * batch`` successive ``randint(n)`` draws."""
    return np.random.RandomState(seed).randint(n, size=iters * batch)
