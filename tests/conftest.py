"""Shared fixtures and helpers: the engines under test, the networks the test files
share (their compiled kernels with them), small datasets."""

import os

# scikit-learn's estimator checks include an array-API input check that is
# skipped unless SciPy's array API support is switched on before SciPy loads.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import functools

import numpy as np
import pytest

from fastmlp import MSE, NLL, Linear, ReLU, Sigmoid, SoftMax, Tanh
from fastmlp.engines import numba_available

ENGINES = ["numpy", "numba"] if numba_available() else ["numpy"]

# -- Networks shared by the test files ---------------------------------------------
#
# Each network shape (widths, activations, loss) trained on the fused per-sample path
# gets kernels generated for it, one per dtype and kind (one-pass, blocked with GEMMs,
# blocked on nonzeros), each 1-10 s to compile with a cold cache: most of the suite's
# compile time. So tests take their networks from this table wherever what they check
# does not depend on the shape, and each kernel is compiled once per session. Compiled
# in any case: test_naive_oracle.py trains "nb003", "deep", "mse", "mse-sigmoid" and
# "single" on every per-sample path (float32 too for the first three);
# test_specialised.py compiles the one-pass kernels of its networks in both dtypes;
# ``fastmlp bench`` (test_cli.py) trains "notebook002" and "notebook003" one-pass;
# test_blocked.py trains "notebook003" blocked, test_plan.py "200-100-3", and
# test_notebook_equivalence.py "notebook002-tanh".

#: name: (inputs, [(outputs, activation after it or None), ...], loss)
NETWORKS = {
    # notebook 002's network
    "notebook002": (2, [(10, ReLU), (10, ReLU), (2, SoftMax)], NLL),
    # notebook 003's network (784-100-10, sigmoid, softmax + NLL), scaled down
    "nb003": (30, [(20, Sigmoid), (10, SoftMax)], NLL),
    # tanh, relu, a Linear without activation, softmax + NLL
    "deep": (8, [(6, Tanh), (5, ReLU), (4, None), (3, SoftMax)], NLL),
    # regression: relu hidden layer, linear output, MSE
    "mse": (12, [(16, ReLU), (2, None)], MSE),
    # MSE's gradient taken back through an output activation
    "mse-sigmoid": (12, [(10, ReLU), (2, Sigmoid)], MSE),
    # one layer: softmax regression
    "single": (12, [(3, SoftMax)], NLL),
    # a first layer of at least DEFER_MIN_WEIGHTS (1,024) weights: its update is
    # deferred into the next step's forward pass
    "nb003-deferred": (70, [(20, Sigmoid), (10, SoftMax)], NLL),
    # hidden layers wider than the kernels' register width (16)
    "wide-middle": (9, [(24, ReLU), (20, Tanh), (3, SoftMax)], NLL),
    # MSE through a softmax
    "mse-softmax": (12, [(10, Tanh), (3, SoftMax)], MSE),
    # deferred first layer, relu output wider than the register width, MSE
    "mse-relu-wide": (40, [(30, Sigmoid), (18, ReLU)], MSE),
    # one linear layer, MSE
    "mse-identity": (5, [(4, None)], MSE),
    # one linear layer, tanh, MSE
    "mse-tanh": (5, [(3, Tanh)], MSE),
    # notebook 002's network with tanh: the notebook's other activation
    "notebook002-tanh": (2, [(10, Tanh), (10, Tanh), (2, SoftMax)], NLL),
    # notebook 003's network
    "notebook003": (784, [(100, Sigmoid), (10, SoftMax)], NLL),
    # wide enough for the rules to train it in blocks with GEMMs (dense inputs)
    "200-100-3": (200, [(100, Sigmoid), (3, SoftMax)], NLL),
}


def network(name, dtype=np.float64, seed=None):
    """Fresh ``(modules, loss)`` of ``NETWORKS[name]``, the weights drawn as
    ``Linear(m, n)`` draws them: from NumPy's global generator, or with a
    ``seed``, from a ``RandomState(seed)`` of their own."""
    d, spec, Loss = NETWORKS[name]
    rng = None if seed is None else np.random.RandomState(seed)
    modules, m = [], d
    for n, Act in spec:
        modules.append(Linear(m, n, dtype=dtype, seed=rng))
        if Act is not None:
            modules.append(Act())
        m = n
    return modules, Loss()


def builder(name):
    """A ``build()`` for :func:`twins`: ``network(name)``."""
    return functools.partial(network, name)


def dims(name):
    """(inputs, outputs) of ``NETWORKS[name]``."""
    d, spec, _ = NETWORKS[name]
    return d, spec[-1][0]


@pytest.fixture(params=ENGINES)
def engine(request):
    """Each available engine by name."""
    return request.param


def hard_data(n=200, seed=0):
    """Two noisy interleaved classes in 2-D, like the notebook's ``hard()``.

    Returns X of shape (2, n) and one-hot Y of shape (2, n).
    """
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, size=(2, n))
    y = ((X[0] * X[1] > 0) ^ (rng.rand(n) < 0.05)).astype(int)
    return X, np.eye(2)[y].T


def blobs(d, c, n, seed=0, dtype=np.float64):
    """Gaussian blobs: X of shape (d, n) and one-hot Y of shape (c, n)."""
    rng = np.random.RandomState(seed)
    centers = rng.normal(0, 2, size=(d, c))
    y = rng.randint(c, size=n)
    X = centers[:, y] + rng.normal(0, 1, size=(d, n))
    return X.astype(dtype), np.eye(c, dtype=dtype)[y].T


def params_of(model):
    """Copies of every Linear layer's W and W0, in order."""
    return [p.copy() for m in model.modules if hasattr(m, "W") for p in (m.W, m.W0)]


def state(model):
    """Copies of every Linear layer's W, W0, dLdW and dLdW0: parameters, then gradients."""
    grads = [g for m in model.modules if isinstance(m, Linear) for g in (m.dLdW, m.dLdW0)]
    return params_of(model) + [g.copy() for g in grads]


def assert_same_state(a, b, **tol):
    """``state(b)`` equals ``state(a)`` within ``tol`` (assert_allclose's rtol, atol)."""
    for p, q in zip(state(a), state(b), strict=True):
        np.testing.assert_allclose(q, p, **tol)


def twins(build, dtype=np.float64, seed=0, engines=("numpy", "numba"), **options):
    """The same network (same initial weights, drawn after ``np.random.seed(seed)``)
    on each engine; ``build()`` returns (modules, loss), ``options`` go to Sequential."""
    from fastmlp import Sequential

    models = []
    for engine in engines:
        np.random.seed(seed)
        models.append(Sequential(*build(), engine=engine, dtype=dtype, **options))
    return models


def bind(engine, *layers):
    """Put standalone layers on ``engine`` (as Sequential does); return the first."""
    from fastmlp.engines import get_engine

    ops = get_engine(engine)
    for layer in layers:
        layer._engine = ops
    return layers[0]


def central_difference(f, x, i, h=1e-6):
    """(f(x + h e_i) - f(x - h e_i)) / 2h for entry ``i`` of the mutable ``x``
    (an array or a list), which is restored afterwards."""
    old = x[i]
    x[i] = old + h
    fp = f()
    x[i] = old - h
    fm = f()
    x[i] = old
    return (fp - fm) / (2 * h)


def numerical_grad(f, x, h=1e-6):
    """Central differences of the scalar ``f()`` with respect to array ``x``, in place.

    As notebook 000 describes: set each entry to x - h and x + h, evaluate,
    restore it, and divide the difference by 2h.
    """
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        g[i] = central_difference(f, x, i, h)
    return g


def assert_backprop_matches_finite_differences(nn, X, Y, **tol):
    """``nn.backward``'s dLdW and dLdW0 of every Linear layer, for the loss of
    (X, Y), equal central differences within ``tol`` (assert_allclose's rtol, atol)."""
    def f():
        return nn.loss.forward(nn.forward(X), Y)

    f()
    nn.backward(nn.loss.backward())
    for m in nn.modules:
        if isinstance(m, Linear):
            dW, dW0 = m.dLdW.copy(), m.dLdW0.copy()
            np.testing.assert_allclose(dW, numerical_grad(f, m.W), **tol)
            np.testing.assert_allclose(dW0, numerical_grad(f, m.W0), **tol)


def assert_float32_fit_tracks(a, b, X, Y):
    """The float32 ``b`` fitted as ``a`` (momentum and decay, 2 epochs of 16) ends
    on ``a``'s trajectory to float32 round-off (the documented rtol 1e-4)."""
    kw = dict(epochs=2, batch_size=16, lrate=0.05, momentum=0.9, weight_decay=1e-3, seed=1,
              verbose=0)
    a.fit(X, Y, **kw)
    b.fit(X, Y, **kw)
    assert all(p.dtype == np.float32 for p in state(b))
    assert_same_state(a, b, rtol=1e-4, atol=1e-5)


def sgd_both(a, b, X, Y, **kw):
    """The same ``sgd(X, Y, verbose=False, **kw)`` call on models ``a`` and ``b``."""
    for model in (a, b):
        model.sgd(X, Y, verbose=False, **kw)


def peak_bytes(fn):
    """(exception raised or None, peak bytes traced) of ``fn()``."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        outcome = None
    except Exception as exc:
        outcome = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, peak


def _mnist_dir():
    """The shared MNIST folder, if this machine has it (tests needing it skip otherwise)."""
    import os
    from pathlib import Path

    candidates = [os.environ.get("FASTMLP_MNIST_DIR"),
                  Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist",
                  "/work/shared/data/mnist"]
    for c in candidates:
        if c and (Path(c) / "train-images-idx3-ubyte.gz").is_file():
            return Path(c)
    return None


MNIST_DIR = _mnist_dir()
needs_mnist = pytest.mark.skipif(MNIST_DIR is None, reason="MNIST files not on this machine")
