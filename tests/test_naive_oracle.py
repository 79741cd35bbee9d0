"""Every training and inference path of fastmlp against the loop-level oracle.

The oracle is ``tests/naive.py``: plain Python loops over float64 scalars,
sharing no code with fastmlp. Everything here goes through the public API
(``Sequential``, the layers and losses, ``sgd``, ``fit``, ``forward``,
``predict``, ``evaluate``, and the constructor's ``engine``, ``fuse``,
``block`` and ``dtype``), so the tests do not depend on where the kernels
live. Each model and its naive twin start from the same weights.

Paths reached, by the documented rules:

* ``engine="numpy"``: the NumPy engine (layer by layer);
* ``engine="numba", fuse=False``: layer by layer on the Numba kernels;
* ``block="off"``: the fused one-pass per-sample kernel;
* ``block=k`` on dense inputs: the blocked kernel with GEMMs;
* ``block=k`` on inputs at most half nonzero: the blocked kernel on nonzeros;
* ``fit`` with momentum or weight decay, or ``batch_size > 1``, and ``sgd``
  with ``batch_size > 1``: the fused mini-batch kernel, with dense first
  layer products, or (first layer of 256 units, inputs 5/6 zero) the sparse
  first layer.

Tolerances: float64 results agree to rtol 1e-9 after at least 1,000 steps.
float32 runs are compared with the float64 oracle started from the same
(float32) weights and data; see ``F32_RTOL``.
"""

import functools

import naive
import numpy as np
import pytest
from conftest import NETWORKS as SHARED
from conftest import central_difference
from sklearn.neural_network._stochastic_optimizers import SGDOptimizer

from fastmlp import MSE, NLL, Linear, ReLU, Sequential, Sigmoid, SoftMax, Tanh

F64_RTOL = 1e-9
#: float32 against the float64 oracle, after 300 per-sample steps or 300
#: mini-batch steps, as max |W32 - W| / max |W| per array (normwise: single
#: entries near zero have no meaningful relative error). One float32 rounding
#: is 6e-8 relative; the trajectory accumulates a few hundred of them, some
#: amplified by the activations' derivatives. The largest deviation measured
#: over every float32 test here, on every path, was 1.2e-6 (the float32
#: forward pass alone: about 3e-7); 2e-5 leaves a factor of ~17 and is still
#: about 1,000 times below what the weights move (checked). A ReLU unit can
#: break any float32 tolerance: a pre-activation within float32 rounding of
#: zero (they gather there: while positive, the gradient pushes it down)
#: decides on one path to pass the gradient and not on the other. Seen with
#: 256 ReLU units (one unit off by 6e-4, all float32 paths agreeing with each
#: other to 1e-7), hence the wide network's tanh; if a float32 test of a ReLU
#: network fails with one unit off, suspect that before the kernels.
F32_RTOL = 2e-5

#: The small networks: conftest's (described there, and shared with the other
#: test files so that their kernels are compiled once per session).
SMALL = ["nb003", "deep", "mse", "mse-sigmoid", "single"]
#: name: (inputs, [(outputs, activation after it), ...], loss)
NETWORKS = {
    **{name: SHARED[name] for name in SMALL},
    # first layer of 256 units: where the mini-batch kernel's sparse first layer pays
    "wide": (12, [(256, Tanh), (3, SoftMax)], NLL),
}
ACT_NAMES = {None: "identity", ReLU: "relu", Tanh: "tanh", Sigmoid: "sigmoid",
             SoftMax: "softmax"}

PER_SAMPLE_PATHS = {
    "numpy": dict(engine="numpy"),
    "layer-by-layer": dict(engine="numba", fuse=False),
    "one-pass": dict(engine="numba", block="off"),
    "blocked-4": dict(engine="numba", block=4),
    "blocked-16": dict(engine="numba", block=16),
}
MINIBATCH_PATHS = {
    "numpy": dict(engine="numpy"),
    "layer-by-layer": dict(engine="numba", fuse=False),
    "fused": dict(engine="numba"),
}
#: name: (momentum, nesterov, weight_decay)
OPTIMIZERS = {
    "plain": (0.0, False, 0.0),
    "momentum": (0.9, False, 0.0),
    "nesterov": (0.9, True, 0.0),
    "decay": (0.0, False, 1e-3),
    "momentum-decay": (0.9, False, 1e-3),
    "nesterov-decay": (0.9, True, 1e-3),
}


def fit_lrate(optimizer, name="deep"):
    """The learning rate of the mini-batch tests.

    Momentum 0.9 makes the effective step ten times ``lrate``, so it gets a
    smaller rate: with 0.02 the trajectory of "deep" is so sensitive that
    merely summing each batch's gradients in reverse order inside the oracle
    moves the weights by 1.5e-8 (relative) after 1,000 steps, and no path
    could be checked to 1e-9. With these rates that sensitivity is below
    1e-12, and the weights still move by about 0.5.
    """
    rate = 0.02 if OPTIMIZERS[optimizer][0] == 0 else 0.004
    return rate / 2 if NETWORKS[name][2] is MSE else rate


# -- models, their naive twins, data ------------------------------------------

def build(name, dtype=np.float64, **options):
    """A fresh model of network ``name``; the same weights every call.

    The biases start nonzero (assigned through the public ``W0``), so the
    forward tests see them from the first sample.
    """
    d, spec, loss = NETWORKS[name]
    modules, m = [], d
    for k, (n, act) in enumerate(spec):
        lin = Linear(m, n, dtype=dtype, seed=100 + k)
        lin.W0[...] = np.random.RandomState(200 + k).normal(0, 0.1, (n, 1))
        modules.append(lin)
        if act is not None:
            modules.append(act())
        m = n
    return Sequential(modules, loss(), dtype=dtype, **options)


def to_naive(model):
    """The model's current network as naive's ``[(W, W0, act), ...]`` (float64 copies)."""
    net = []
    for mod in model.modules:
        if isinstance(mod, Linear):
            net.append([mod.W.astype(np.float64), mod.W0.astype(np.float64), "identity"])
        else:
            net[-1][2] = ACT_NAMES[type(mod)]
    return [tuple(layer) for layer in net]


def loss_name(name):
    return "nll" if NETWORKS[name][2] is NLL else "mse"


def assert_matches(model, network, rtol=F64_RTOL):
    """Every W and W0 of ``model`` equals naive's ``network``, entry by entry."""
    linears = [m for m in model.modules if isinstance(m, Linear)]
    assert len(linears) == len(network)
    for k, (lin, (W, W0, _)) in enumerate(zip(linears, network, strict=True)):
        np.testing.assert_allclose(lin.W, W, rtol=rtol, atol=0, err_msg=f"W of layer {k}")
        np.testing.assert_allclose(lin.W0, W0.reshape(lin.W0.shape), rtol=rtol, atol=0,
                                   err_msg=f"W0 of layer {k}")


def assert_matches_f32(model, network, start):
    """float32 ``model`` within ``F32_RTOL`` of the float64 oracle (normwise per
    array), and training moved the weights far more than that."""
    linears = [m for m in model.modules if isinstance(m, Linear)]
    for k, (lin, (W, W0, _), (W_start, _, _)) in enumerate(zip(linears, network, start,
                                                                strict=True)):
        for got, want, what in ((lin.W, W, "W"), (lin.W0, W0, "W0")):
            err = np.max(np.abs(got.astype(np.float64) - want.reshape(got.shape)))
            assert err <= F32_RTOL * np.max(np.abs(want)), f"{what} of layer {k}: {err}"
        assert np.max(np.abs(W - W_start)) > 1e3 * F32_RTOL * np.max(np.abs(W))


@functools.cache
def _data(name, kind, n, seed):
    d, spec, loss = NETWORKS[name]
    c = spec[-1][0]
    rng = np.random.RandomState(seed)
    if kind == "dense":
        X = rng.normal(size=(d, n))
    else:  # two nonzero inputs per sample: 5/6 zeros for 12 inputs
        X = np.zeros((d, n))
        for t in range(n):
            X[rng.choice(d, 2, replace=False), t] = rng.normal(0, 1.5, 2)
    if loss is NLL:
        Y = np.eye(c)[rng.randint(c, size=n)].T
    elif spec[-1][1] is Sigmoid:
        Y = rng.uniform(0.1, 0.9, size=(c, n))
    else:
        Y = np.tanh(X[:c]) + rng.normal(0, 0.1, size=(c, n))
    return X, Y


def data(name, kind="dense", n=200, seed=0, dtype=np.float64):
    """Copies of a data set for network ``name``: X (inputs, n), Y (outputs, n),
    float64 arrays holding values rounded to ``dtype`` (so a float32 model and
    the float64 oracle see the same numbers)."""
    X, Y = _data(name, kind, n, seed)
    return X.astype(dtype).astype(np.float64), Y.astype(dtype).astype(np.float64)


# -- the oracle's own check ----------------------------------------------------

@pytest.mark.parametrize("name", SMALL)
def test_naive_gradients_match_finite_differences(name):
    """naive's backward is the derivative of naive's loss (central differences)."""
    network = to_naive(build(name))
    X, Y = data(name, n=3)
    layers = naive.to_lists(network)
    x, y = naive.columns(X)[1], naive.columns(Y)[1]
    _, grads = naive.sample_gradients(layers, x, y, loss_name(name), 1e-300)

    def loss():
        return naive.loss_and_gradient(loss_name(name), layers[-1][2],
                                       naive.forward_all(layers, x)[-1], y, 1e-300)[0]

    def check(arr, k, grad):
        assert central_difference(loss, arr, k) == pytest.approx(grad, rel=1e-5, abs=1e-8)

    for (W, b, _), (dW, db) in zip(layers, grads, strict=True):
        for i, j in ((0, 0), (-1, -1), (len(W) // 2, len(b) // 2)):
            check(W[i], j, dW[i][j])
        for j in (0, -1):
            check(b, j, db[j])


# -- per-sample SGD ------------------------------------------------------------

@functools.cache
def naive_sgd(name, kind, iters, lrate, seed, n=200, dtype=np.float64):
    X, Y = data(name, kind, n, dtype=dtype)
    start = to_naive(build(name, dtype))
    steps = naive.sgd_indices(n, iters, seed)
    trained, _ = naive.sgd_per_sample(start, X, Y, steps, lrate, loss_name(name),
                                      eps=np.finfo(dtype).eps)
    return start, trained


def sgd_lrate(name):
    return 0.02 if NETWORKS[name][2] is MSE else 0.05


def test_sgd_indices_in_chunks_are_one_stream():
    """``sgd`` draws its indices with ``randint(n, size=...)`` in chunks (of
    65,536 steps); naive's single draw stands for any number of them because
    successive draws continue one stream."""
    whole = naive.sgd_indices(200, 70_000, 7)
    rng = np.random.RandomState(7)
    chunks = np.concatenate([rng.randint(200, size=65_536), rng.randint(200, size=4_464)])
    np.testing.assert_array_equal(whole, chunks)


@pytest.mark.parametrize("path", list(PER_SAMPLE_PATHS))
@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("name", SMALL)
def test_sgd_float64(name, kind, path):
    """1,000 steps of ``sgd`` (the notebook's loop) on every per-sample path.

    ``sgd(seed=s)`` visits ``RandomState(s).randint(n, size=iters)``; with
    ``kind="sparse"`` (inputs 5/6 or more zero) ``block=k`` runs the blocked
    kernel on nonzeros, otherwise with GEMMs.
    """
    iters, lrate, seed = 1000, sgd_lrate(name), 7
    start, trained = naive_sgd(name, kind, iters, lrate, seed)
    X, Y = data(name, kind)
    model = build(name, **PER_SAMPLE_PATHS[path])
    model.sgd(X, Y, iters=iters, lrate=lrate, seed=seed, verbose=False)
    assert_matches(model, trained)
    if path.startswith("blocked"):
        assert model.block_size == PER_SAMPLE_PATHS[path]["block"]
    assert np.max(np.abs(trained[0][0] - start[0][0])) > 0.05  # training moved the weights


@pytest.mark.parametrize("path", ["one-pass", "blocked-16", "numpy"])
@pytest.mark.parametrize("layout", ["F", "C-gathered"])
def test_sgd_data_layouts(layout, path):
    """X as the transpose of a samples x features array (read in place) and
    a C-ordered X much larger than the call (the drawn samples gathered)."""
    name, iters, lrate, seed, n = "deep", 1000, 0.05, 3, 5000
    _start, trained = naive_sgd(name, "dense", iters, lrate, seed, n=n)
    X, Y = data(name, "dense", n=n)
    if layout == "F":
        X, Y = np.asfortranarray(X), np.asfortranarray(Y)
    else:
        X, Y = np.ascontiguousarray(X), np.ascontiguousarray(Y)
    model = build(name, **PER_SAMPLE_PATHS[path])
    model.sgd(X, Y, iters=iters, lrate=lrate, seed=seed, verbose=False)
    assert_matches(model, trained)


@pytest.mark.parametrize("path", list(PER_SAMPLE_PATHS))
@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("name", ["nb003", "deep", "mse"])
def test_sgd_float32(name, kind, path):
    """300 float32 steps, within ``F32_RTOL`` of the float64 oracle."""
    iters, lrate, seed = 300, sgd_lrate(name), 11
    start, trained = naive_sgd(name, kind, iters, lrate, seed, dtype=np.float32)
    X, Y = data(name, kind, dtype=np.float32)
    model = build(name, np.float32, **PER_SAMPLE_PATHS[path])
    model.sgd(X.astype(np.float32), Y.astype(np.float32), iters=iters, lrate=lrate, seed=seed,
              verbose=False)
    assert model.modules[0].W.dtype == np.float32
    assert_matches_f32(model, trained, start)


@pytest.mark.parametrize("path", list(MINIBATCH_PATHS))
def test_sgd_with_batches(path):
    """``sgd(batch_size=5)``: each step the mean gradient of 5 drawn samples
    (the draws ``randint(n, size=iters * 5)``, in order)."""
    name, iters, lrate, seed, batch = "deep", 1000, 0.05, 5, 5
    X, Y = data(name)
    steps = naive.sgd_indices(X.shape[1], iters, seed, batch)
    trained, _, _ = naive.sgd_minibatch(to_naive(build(name)), X, Y, steps, batch, lrate, "nll")
    model = build(name, **MINIBATCH_PATHS[path])
    model.sgd(X, Y, iters=iters, lrate=lrate, batch_size=batch, seed=seed, verbose=False)
    assert_matches(model, trained)


# -- mini-batch training (fit) -------------------------------------------------

@functools.cache
def naive_fit(name, kind, n, epochs, batch, lrate, optimizer, seed, dtype=np.float64):
    X, Y = data(name, kind, n, dtype=dtype)
    momentum, nesterov, decay = OPTIMIZERS[optimizer]
    start = to_naive(build(name, dtype))
    trained, _, losses = naive.fit(start, X, Y, epochs, batch, lrate, loss_name(name), seed,
                                   momentum=momentum, nesterov=nesterov, weight_decay=decay,
                                   eps=np.finfo(dtype).eps)
    return start, trained, [sum(epoch) / n for epoch in losses]


def run_fit(model, name, kind, n, epochs, batch, lrate, optimizer, seed, dtype=np.float64):
    X, Y = data(name, kind, n, dtype=dtype)
    momentum, nesterov, decay = OPTIMIZERS[optimizer]
    return model.fit(X.astype(dtype), Y.astype(dtype), epochs=epochs, batch_size=batch,
                     lrate=lrate, momentum=momentum, nesterov=nesterov, weight_decay=decay,
                     seed=seed, verbose=0)


#: batch size: (samples, epochs), at least 1,000 steps; the last batch of an
#: epoch is shorter for 7 and 32.
FIT_SIZES = {1: (100, 10), 7: (100, 70), 32: (70, 334)}


def check_fit(name, kind, batch, optimizer, path, seed=4, sizes=None, min_steps=1000):
    """``fit`` on ``path`` equals naive's: weights (rtol 1e-9) and per-epoch losses."""
    n, epochs = sizes or FIT_SIZES[batch]
    assert epochs * -(-n // batch) >= min_steps
    lrate = fit_lrate(optimizer, name)
    start, trained, losses = naive_fit(name, kind, n, epochs, batch, lrate, optimizer, seed)
    model = build(name, **MINIBATCH_PATHS[path])
    history = run_fit(model, name, kind, n, epochs, batch, lrate, optimizer, seed)
    assert_matches(model, trained)
    np.testing.assert_allclose(history.loss, losses, rtol=F64_RTOL)
    assert np.max(np.abs(trained[0][0] - start[0][0])) > 0.05  # training moved the weights


@pytest.mark.parametrize("path", list(MINIBATCH_PATHS))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("batch", [1, 7])
def test_fit_float64(batch, optimizer, path):
    """``fit`` with every optimizer on every mini-batch path (batch 1 without
    momentum or decay runs the per-sample kernel, with them the mini-batch
    kernel), "deep" network, 1,000 steps."""
    check_fit("deep", "dense", batch, optimizer, path)


@pytest.mark.parametrize("path", list(MINIBATCH_PATHS))
@pytest.mark.parametrize("optimizer", ["plain", "momentum", "nesterov-decay"])
def test_fit_float64_batch32(optimizer, path):
    """Batches of 32 (the last of each epoch 6) on the one-layer network,
    whose 32,000 oracle samples are the cheapest."""
    check_fit("single", "dense", 32, optimizer, path)


@pytest.mark.slow
@pytest.mark.parametrize("path", list(MINIBATCH_PATHS))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_fit_float64_batch32_deep(optimizer, path):
    """Batches of 32 on the "deep" network, every optimizer (slow: the oracle
    runs 32,000 samples per optimizer)."""
    check_fit("deep", "dense", 32, optimizer, path)


@pytest.mark.parametrize("path", list(MINIBATCH_PATHS))
@pytest.mark.parametrize("name", ["nb003", "mse", "mse-sigmoid"])
def test_fit_networks(name, path):
    """The other networks through ``fit`` (batch 3, Nesterov and decay), 1,000 steps."""
    check_fit(name, "dense", 3, "nesterov-decay", path, seed=2, sizes=(60, 50))


def batch_fill(xb):
    """The share of a dense first layer's multiply-adds that the mini-batch
    kernel's sparse first layer does for batch ``xb`` (samples x inputs): input
    pairs with a nonzero, per sample, plus inputs nonzero in either sample of
    each pair of samples, over ``xb.size``. (Mirrors the rule documented in
    fastmlp's mini-batch kernel; no fastmlp internals are imported.)"""
    b, d = xb.shape
    nz = xb != 0
    work = 0
    for r in range(b):
        work += sum(bool(nz[r, 2 * h] or nz[r, 2 * h + 1]) for h in range(d // 2))
        work += bool(d % 2 and nz[r, d - 1])
        if r % 2 == 1 or r == b - 1:
            work += int(np.count_nonzero(nz[r - r % 2] | nz[r]))
    return work / xb.size


def check_sparse_batches(name, n, batch):
    """Every batch of the sparse data set is well inside the sparse first
    layer's documented limit, ``0.55 * (1 - 64 / width)`` (0.41 for 256 units):
    with 2 nonzeros among 12 inputs, a fill is at most 1/3 whatever the order."""
    X, _ = data(name, "sparse", n)
    width = NETWORKS[name][1][0][0]
    limit = 0.55 * (1 - 64 / width)
    rng = np.random.RandomState(0)
    order = rng.permutation(n)
    fills = [batch_fill(X.T[order[s:s + batch]]) for s in range(0, n, batch)]
    assert max(fills) <= 1 / 3 < limit


@pytest.mark.parametrize("path", ["fused", "numpy"])
def test_fit_sparse_first_layer(path):
    """The mini-batch kernel's sparse first layer (fused path): 12-256-3 on
    inputs 5/6 zero, batches of 2, Nesterov and decay; 300 steps here (the
    oracle is slow through 256 units), 1,000 in the slow tests below."""
    check_sparse_batches("wide", 60, 2)
    check_fit("wide", "sparse", 2, "nesterov-decay", path, seed=9, sizes=(60, 10),
              min_steps=300)


@pytest.mark.slow
@pytest.mark.parametrize("batch, optimizer", [(2, "nesterov-decay"), (3, "momentum")])
@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_fit_wide(kind, batch, optimizer):
    """12-256-3, 1,000 steps or more: the sparse first layer (sparse inputs)
    and the BLAS products (dense inputs) of the fused mini-batch kernel. An
    even batch and an odd one (its last sample pairs with no other); the
    oracle's cost is the samples, so the odd batch is the smallest odd one."""
    n, epochs = (60, 34) if batch == 2 else (60, 50)
    if kind == "sparse":
        check_sparse_batches("wide", n, batch)
    check_fit("wide", kind, batch, optimizer, "fused", seed=6, sizes=(n, epochs))


@pytest.mark.parametrize("path", list(MINIBATCH_PATHS))
@pytest.mark.parametrize("case", [("deep", "dense", 7, "plain"),
                                  ("deep", "dense", 7, "nesterov-decay"),
                                  ("wide", "sparse", 2, "nesterov-decay")])
def test_fit_float32(case, path):
    """300 float32 mini-batch steps, within ``F32_RTOL`` of the float64 oracle."""
    name, kind, batch, optimizer = case
    n, epochs, lrate, seed = 60, 10 if batch == 2 else 35, fit_lrate(optimizer, name), 8
    start, trained, _ = naive_fit(name, kind, n, epochs, batch, lrate, optimizer, seed,
                                  dtype=np.float32)
    model = build(name, np.float32, **MINIBATCH_PATHS[path])
    run_fit(model, name, kind, n, epochs, batch, lrate, optimizer, seed, dtype=np.float32)
    assert model.modules[0].W.dtype == np.float32
    assert_matches_f32(model, trained, start)


@pytest.mark.parametrize("path", list(MINIBATCH_PATHS))
def test_velocity_persists_across_fit_calls(path):
    """A second ``fit`` continues with the first one's velocities."""
    name, n, batch, lrate = "deep", 70, 7, fit_lrate("momentum")
    X, Y = data(name, n=n)
    net, velocity = to_naive(build(name)), None
    model = build(name, **MINIBATCH_PATHS[path])
    for seed in (1, 2):
        net, velocity, _ = naive.fit(net, X, Y, 50, batch, lrate, "nll", seed, momentum=0.9,
                                     velocity=velocity)
        model.fit(X, Y, epochs=50, batch_size=batch, lrate=lrate, momentum=0.9, seed=seed,
                  verbose=0)
    assert_matches(model, net)


# -- the optimizer rule against scikit-learn ----------------------------------

@pytest.mark.parametrize("decay", [0.0, 1e-3])
@pytest.mark.parametrize("momentum, nesterov", [(0.9, False), (0.9, True), (0.5, True),
                                                (0.0, False)])
def test_optimizer_step_equals_sklearn_sgd_optimizer(momentum, nesterov, decay):
    """naive's momentum/Nesterov/decay step equals scikit-learn's SGDOptimizer.

    Both receive the same gradient each step, the batch's mean gradient plus
    ``decay * W`` for the weights, computed (as scikit-learn's MLP does)
    before the step; after 60 steps the parameters agree to 1e-12.
    """
    name, batch, lrate = "deep", 7, 0.05
    X, Y = data(name, n=70)
    layers = naive.to_lists(to_naive(build(name)))
    xs, ys = naive.columns(X), naive.columns(Y)
    velocity = naive.zero_velocity(naive.to_arrays(layers))
    params = [np.array(p) for W, b, _ in layers for p in (W, b)]
    sk = SGDOptimizer(params, learning_rate_init=lrate, lr_schedule="constant",
                      momentum=momentum, nesterov=nesterov)
    order = np.random.RandomState(0).randint(70, size=60 * batch)
    for s in range(60):
        rows = order[s * batch:(s + 1) * batch]
        _, grads = naive.batch_gradient(layers, xs, ys, rows, "nll", 1e-16, decay)
        sk.update_params(params, [np.array(g) for gW, gb in grads for g in (gW, gb)])
        for (W, b, _), (gW, gb), (VW, Vb) in zip(layers, grads, velocity, strict=True):
            for i in range(len(W)):
                naive.optimizer_step(W[i], gW[i], VW[i], lrate, momentum, nesterov)
            naive.optimizer_step(b, gb, Vb, lrate, momentum, nesterov)
    mine = [np.array(p) for W, b, _ in layers for p in (W, b)]
    start = [np.array(p) for W, b, _ in naive.to_lists(to_naive(build(name))) for p in (W, b)]
    for got, want, first in zip(mine, params, start, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        assert np.max(np.abs(got - first)) > 1e-3


# -- inference -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path", ["numpy", "numba"])
@pytest.mark.parametrize("name", SMALL)
def test_forward_predict_evaluate(name, path, dtype):
    """``forward``, ``predict`` and ``evaluate`` equal naive's forward pass, for
    C- and F-ordered X and a batch of one sample."""
    model = build(name, dtype, engine=path)
    network = to_naive(model)
    X, Y = data(name, n=37, seed=1, dtype=dtype)
    want = np.stack([naive.forward(network, X[:, t]) for t in range(X.shape[1])], axis=1)
    rtol, atol = (1e-12, 1e-15) if dtype == np.float64 else (1e-5, 1e-6)
    Xd = X.astype(dtype)
    for Xin in (np.ascontiguousarray(Xd), np.asfortranarray(Xd)):
        out = model.forward(Xin)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, want, rtol=rtol, atol=atol)
    np.testing.assert_allclose(model.forward(Xd[:, 5:6]), want[:, 5:6], rtol=rtol, atol=atol)
    pred = model.predict(Xd)
    if NETWORKS[name][2] is NLL:
        np.testing.assert_array_equal(pred, np.argmax(want, axis=0))
        np.testing.assert_array_equal(model.predict(Xd[:, 5:6]), np.argmax(want[:, 5:6], axis=0))
    else:
        np.testing.assert_allclose(pred, want, rtol=rtol, atol=atol)
    eps = np.finfo(dtype).eps
    act = network[-1][2]
    losses = [naive.loss_and_gradient(loss_name(name), act, list(want[:, t]), list(Y[:, t]),
                                      eps)[0] for t in range(X.shape[1])]
    loss, accuracy = model.evaluate(Xd, Y.astype(dtype))
    assert loss == pytest.approx(np.mean(losses), rel=1e-10 if dtype == np.float64 else 1e-5)
    if NETWORKS[name][2] is NLL:
        assert accuracy == np.mean(np.argmax(want, axis=0) == np.argmax(Y, axis=0))
    else:
        assert accuracy is None


@pytest.mark.parametrize("path", ["numpy", "numba"])
def test_predict_many_columns(path):
    """More columns than one forward chunk (8,192): every column still right."""
    name = "single"
    model = build(name, engine=path)
    X, _ = data(name, n=8300, seed=2)
    network = to_naive(model)
    want = np.array([np.argmax(naive.forward(network, X[:, t])) for t in range(X.shape[1])])
    np.testing.assert_array_equal(model.predict(X), want)
