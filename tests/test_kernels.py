"""Every Numba kernel against its NumPy-engine twin.

Tolerances: float64 rtol 1e-12; float32 rtol 2e-5 (a few ulps of float32
accumulated over sums of up to ~100 terms, in a different order from BLAS).
"""

import numpy as np
import pytest

from fastmlp import baseline as npe
from fastmlp.engines import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not importable")

TOL = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=2e-5, atol=2e-6)}
SHAPES = [(1, 1, 1), (1, 5, 1), (5, 1, 3), (7, 4, 1), (3, 6, 8), (16, 9, 33)]  # (m, n, b)


@pytest.fixture(scope="module")
def nbe():
    from fastmlp.kernels import layer_ops

    return layer_ops


def arr(rng, shape, dtype, layout):
    """A random array of ``shape``: contiguous, Fortran-ordered, or a strided view."""
    a = rng.normal(size=shape).astype(dtype)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros((shape[0] * 2, shape[1] * 3), dtype=dtype)
        big[::2, ::3] = a
        return big[::2, ::3]
    return a


def check(a, b, dtype):
    assert a.dtype == b.dtype == dtype
    np.testing.assert_allclose(a, b, **TOL[dtype])


DTYPES = [np.float64, np.float32]
LAYOUTS = ["C", "F", "strided"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("m, n, b", SHAPES)
def test_linear(nbe, dtype, layout, m, n, b):
    rng = np.random.RandomState(m * 100 + n * 10 + b)
    W, W0 = arr(rng, (m, n), dtype, "C"), arr(rng, (n, 1), dtype, "C")
    A, dZ = arr(rng, (m, b), dtype, layout), arr(rng, (n, b), dtype, layout)
    check(nbe.linear_forward(W, W0, A), npe.linear_forward(W, W0, A), dtype)
    grads = [np.zeros((m, n), dtype), np.zeros((n, 1), dtype)]
    twins = [np.zeros((m, n), dtype), np.zeros((n, 1), dtype)]
    dA = nbe.linear_backward(W, A, dZ, *grads, True)
    check(dA, npe.linear_backward(W, A, dZ, *twins, True), dtype)
    for g, t in zip(grads, twins, strict=True):
        check(g, t, dtype)
    assert nbe.linear_backward(W, A, dZ, *grads, False) is None
    W2, W02 = W.copy(), W0.copy()
    nbe.linear_update(W, W0, *grads, 0.1)
    npe.linear_update(W2, W02, *twins, 0.1)
    check(W, W2, dtype)
    check(W0, W02, dtype)


ELEMENTWISE = ["relu", "tanh", "sigmoid", "softmax"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(1, 1), (4, 1), (1, 6), (10, 7)])
def test_activation(nbe, dtype, layout, name, shape):
    rng = np.random.RandomState(sum(shape))
    Z, dA = arr(rng, shape, dtype, layout) * 4, arr(rng, shape, dtype, layout)
    if name == "relu":
        Z[0, 0] = 0  # the kink: both engines call a unit at exactly zero inactive
    A = getattr(nbe, f"{name}_forward")(Z)
    check(A, getattr(npe, f"{name}_forward")(Z), dtype)
    check(getattr(nbe, f"{name}_backward")(A, dA), getattr(npe, f"{name}_backward")(A, dA), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (10, 5)])
def test_losses(nbe, dtype, layout, shape):
    rng = np.random.RandomState(shape[0])
    Ypred = npe.softmax_forward(arr(rng, shape, dtype, "C"))
    Ypred = arr(rng, shape, dtype, layout) * 0 + Ypred  # same values, requested layout
    Y = np.zeros(shape, dtype)
    Y[rng.randint(shape[0], size=shape[1]), np.arange(shape[1])] = 1
    for fn in ["nll_forward", "mse_forward"]:
        a, b = getattr(nbe, fn)(Ypred, Y), getattr(npe, fn)(Ypred, Y)
        assert isinstance(a, float) and isinstance(b, float)
        np.testing.assert_allclose(a, b, **TOL[dtype])
    for fn in ["nll_backward", "mse_backward", "softmax_nll_backward"]:
        check(getattr(nbe, fn)(Ypred, Y), getattr(npe, fn)(Ypred, Y), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extremes_match(nbe, dtype):
    Z = np.array([[0.0, 80.0, -80.0, 1e4, -1e4, np.inf]], dtype=dtype)
    for name in ["relu", "tanh", "sigmoid"]:
        check(getattr(nbe, f"{name}_forward")(Z), getattr(npe, f"{name}_forward")(Z), dtype)
    P = np.array([[0.0, 1e-45, 0.5], [1.0, 1.0, 0.5]], dtype=dtype)
    Y = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    np.testing.assert_allclose(nbe.nll_forward(P, Y), npe.nll_forward(P, Y), rtol=1e-6)
    check(nbe.nll_backward(P, Y), npe.nll_backward(P, Y), dtype)
    NaN = np.array([[np.nan, 1.0]], dtype=dtype)
    assert np.isnan(nbe.relu_forward(NaN)[0, 0]) and np.isnan(npe.relu_forward(NaN)[0, 0])


def test_float32_constants_stay_float32(nbe):
    """No float64 promotion: results equal the NumPy engine's float32 arithmetic exactly."""
    rng = np.random.RandomState(0)
    A = rng.uniform(-1, 1, size=(5, 3)).astype(np.float32)
    d = rng.normal(size=(5, 3)).astype(np.float32)
    for name in ["tanh", "sigmoid"]:
        got = getattr(nbe, f"{name}_backward")(A, d)
        want = getattr(npe, f"{name}_backward")(A, d)
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(nbe.mse_backward(A, d), npe.mse_backward(A, d))
    W, W0 = A.copy(), A[:, :1].copy()
    W2, W02 = A.copy(), A[:, :1].copy()
    nbe.linear_update(W, W0, d, d[:, :1], 0.1)
    npe.linear_update(W2, W02, d, d[:, :1], 0.1)
    np.testing.assert_array_equal(W, W2)
