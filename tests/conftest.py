"""Shared fixtures: the engines under test and small datasets."""

import os

# scikit-learn's estimator checks include an array-API input check that is
# skipped unless SciPy's array API support is switched on before SciPy loads.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest

from fastmlp.engines import numba_available

ENGINES = ["numpy", "numba"] if numba_available() else ["numpy"]


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
    from fastmlp import Linear

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
    from fastmlp import Linear

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
