"""The blocked per-sample path: same trajectory as the NumPy engine and as the
one-pass kernel, for every block size."""

import numpy as np
import pytest
from conftest import assert_same_state, blobs, builder, dims, sgd_both, state, twins

from fastmlp import MSE, Linear, Sequential, tuning
from fastmlp.engines import numba_available
from fastmlp.plan import density

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not importable")


def twin(name, engine, block, dtype=np.float64):
    """conftest's network ``name`` on ``engine`` with ``block``."""
    return twins(builder(name), dtype, engines=(engine,), block=block)[0]


#: conftest's networks (their kernels are compiled once per session): a small
#: notebook-003 network, a deep one mixing activations with a Linear without
#: activation, a regression network, and one layer only.
NETWORKS = ["nb003", "deep", "mse", "single"]


def with_zeros(X, fraction, seed=1):
    """X with about ``fraction`` of its entries set to zero."""
    X = X.copy()
    X[np.random.RandomState(seed).rand(*X.shape) < fraction] = 0
    return X


def kernel_for(X):
    return "on nonzeros" if density(X) <= 0.5 else "with GEMMs"


#: Fractions of zero inputs that select each blocked kernel: GEMMs, and on the nonzeros.
ZEROS = {"with GEMMs": 0.3, "on nonzeros": 0.8}


@pytest.mark.parametrize("kernel", sorted(ZEROS))
@pytest.mark.parametrize("block", [1, 2, 7, 64])
@pytest.mark.parametrize("name", NETWORKS)
def test_blocked_equals_numpy_engine(name, block, kernel):
    X, Y = blobs(*dims(name), 200)
    X = with_zeros(X / 5, ZEROS[kernel])
    X[:, 7] = 0  # a sample with no nonzero input at all
    assert kernel_for(X) == kernel
    a, b = twin(name, "numpy", "auto"), twin(name, "numba", block)
    sgd_both(a, b, X, Y, iters=700, lrate=0.02, seed=3)
    assert b.block_size == block
    assert b.path.startswith(f"fused per-sample, blocked k={block} {kernel}")
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("zeros", [0.0, 0.8])
def test_block_one_equals_the_one_pass_kernel(zeros):
    X, Y = blobs(*dims("deep"), 100)
    X = with_zeros(X, zeros)
    a, b = twin("deep", "numba", "off"), twin("deep", "numba", 1)
    sgd_both(a, b, X, Y, iters=500, lrate=0.05, seed=1)
    assert a.block_size is None and b.block_size == 1
    assert_same_state(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("zeros", [0.0, 0.8])
def test_repeated_samples_inside_a_block(zeros):
    """Two samples only: every block holds the same inputs many times, and the
    Gram term must count each earlier occurrence."""
    X, Y = blobs(*dims("nb003"), 2)
    X = with_zeros(X, zeros)
    a, b = twin("nb003", "numpy", "auto"), twin("nb003", "numba", 16)
    sgd_both(a, b, X, Y, iters=160, lrate=0.05, seed=0)
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("zeros", [0.0, 0.8])
def test_notebook003_network_5000_steps(zeros):
    """The full-size notebook-003 network, 5,000 steps, float64 rtol 1e-9, on
    dense inputs and on inputs as sparse as MNIST's."""
    X, Y = blobs(*dims("notebook003"), 500)
    X = with_zeros(X, zeros)
    a, b = (twin("notebook003", "numpy", "auto"),
            twin("notebook003", "numba", 64 if zeros == 0 else 16))
    sgd_both(a, b, X / 10, Y, iters=5000, lrate=0.01, seed=2)
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("zeros", [0.0, 0.8])
def test_float32_blocked(zeros):
    X, Y = blobs(*dims("mse"), 200)
    X = with_zeros(X / 10, zeros)
    a, b = twin("mse", "numpy", "auto", np.float32), twin("mse", "numba", 32, np.float32)
    sgd_both(a, b, X, Y, iters=300, lrate=0.001, seed=3)
    for p, q in zip(state(a), state(b), strict=True):
        assert q.dtype == np.float32
        np.testing.assert_allclose(q, p, rtol=1e-4, atol=1e-5)


def test_fit_batch1_uses_the_blocked_path():
    X, Y = blobs(*dims("mse"), 90)
    X /= 10
    a, b = twin("mse", "numpy", "auto"), twin("mse", "numba", 8)
    a.fit(X, Y, epochs=2, batch_size=1, lrate=0.01, seed=0, verbose=0)
    b.fit(X, Y, epochs=2, batch_size=1, lrate=0.01, seed=0, verbose=0)
    assert b.block_size == 8
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


def test_tune_is_measured_once_and_remembered(monkeypatch):
    calls = []
    monkeypatch.setattr(tuning, "_TUNED", {})
    real = tuning.measure_blocks

    def counting(*args):
        calls.append(1)
        return {0: 1.0, 16: 0.5, 32: 2.0, 64: 2.0, 128: 2.0}  # blocked k=16 "fastest"

    monkeypatch.setattr(tuning, "measure_blocks", counting)
    monkeypatch.setattr(tuning, "TUNE_MIN_STEPS", 100)

    X, Y = blobs(*dims("200-100-3"), 300)
    for _ in range(2):
        nn = twin("200-100-3", "numba", "tune")
        nn.sgd(X, Y, iters=300, verbose=False)
        assert nn.block_size == 16 and nn.path.startswith("fused per-sample, blocked k=16 with "
                                                          "GEMMs (tuned)")
    assert len(calls) == 1
    short = twin("200-100-3", "numba", "tune")
    monkeypatch.setattr(tuning, "_TUNED", {})
    short.sgd(X, Y, iters=50, verbose=False)  # too short to measure: the rules decide
    # (dense, and 160 KB of weights: one-pass, the first layer in columns)
    assert len(calls) == 1 and short.block_size is None and "dense first layer" in short.path
    assert real is not counting


def test_measure_blocks_times_every_candidate():
    X, Y = blobs(*dims("nb003"), 100)
    nn = twin("nb003", "numba", "off")
    nn.sgd(X, Y, iters=2, verbose=False)
    times = tuning.measure_blocks(nn._flat, np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T),
                                  False, candidates=(0, 4))
    assert sorted(times) == [0, 4] and all(t > 0 for t in times.values())


@pytest.mark.parametrize("block", [0, -3, "fast", 2.5, True, 5000])
def test_bad_block(block):
    with pytest.raises(ValueError, match=r"block must be one of \('auto', 'off', 'tune'\) or an "
                                         r"integer from 1 to 4096; got"):
        Sequential([Linear(2, 2)], MSE(), block=block)


@pytest.mark.parametrize("zeros", [0.0, 0.8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_too_large_for_gram_terms(zeros, dtype):
    """x . x of these inputs overflows, though every step of the notebook's
    loop stays finite: such blocks are taken one step at a time."""
    X, Y = blobs(*dims("deep"), 60)  # (its first layer's tanh saturates)
    X = with_zeros(X, zeros)
    X[0, ::3] = 2 * np.sqrt(np.finfo(dtype).max)  # squared: inf; tanh saturates
    X = X.astype(dtype)
    a, b, c = (twin("deep", "numpy", "auto", dtype), twin("deep", "numba", "off", dtype),
               twin("deep", "numba", 8, dtype))
    for model in (a, b, c):
        model.sgd(X, Y, iters=200, lrate=1e-30, seed=4, verbose=False)
    for p, q, r in zip(state(a), state(b), state(c), strict=True):
        assert np.isfinite(r).all()
        np.testing.assert_allclose(r, q, rtol=1e-5 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(r, p, rtol=1e-4 if dtype == np.float32 else 1e-9)
