"""The inference kernels' sorted groups, mixed column blocks and register
kernels (fastmlp.kernels.inference), against NumPy; and the driver's use of
them (fastmlp.inference) against the layer-by-layer forward."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_inference import close, layouts, make_params, reference, sparse_data  # shared

from fastmlp import inference as inf
from fastmlp.engines import kernel_module


def K():
    return kernel_module("inference")


# -- kernels (also run as plain Python: test_kernels_as_python) -------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_register_blocks(dtype):
    """Blocks of three registers, then of two, cover n outputs with less than
    one register of padding (one block of two below two registers)."""
    lanes = 32 // np.dtype(dtype).itemsize
    for n in [1, 2, 5, 8, 9, 10, 16, 17, 24, 25, 33, 100, 512]:
        a, b = K().register_blocks(n, dtype)
        regs = -(-n // lanes)
        assert 3 * a + 2 * b == max(regs, 2)
        assert b <= 2
        W = np.arange(7 * n, dtype=dtype).reshape(7, n)
        W3, W2 = K().split_weights(W)
        assert W3.shape == (a, 7, 3 * lanes) and W2.shape == (b, 7, 2 * lanes)
        assert all(Wb.ctypes.data % 64 == 0 for Wb in (W3, W2) if Wb.size)
        npad = K().padded_width(n, dtype)
        assert npad == (3 * a + 2 * b) * lanes
        flat = np.concatenate([W3.transpose(1, 0, 2).reshape(7, -1),
                               W2.transpose(1, 0, 2).reshape(7, -1)], axis=1)
        np.testing.assert_array_equal(flat[:, :n], W)
        assert np.all(flat[:, n:] == 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [3, 24, 37, 100])
def test_kernel_sparse_columns_bias_relu(dtype, n):
    """Any columns of X (a permutation, and a last group of one to three),
    any layout and dtype of X, mixed blocks, biases and the ReLU added as the
    outputs leave the registers; padding columns hold ReLU(0 + 0) = 0."""
    m = 70
    rng = np.random.RandomState(n)
    W = rng.normal(size=(m, n)).astype(dtype)
    W3, W2 = K().split_weights(W)
    npad = K().padded_width(n, dtype)
    bias = np.zeros(npad, dtype)
    bias[:n] = rng.normal(size=n)
    for xdtype in (np.float64, np.float32):
        X = sparse_data(m, 30, 0.25, seed=n, dtype=xdtype)
        X[:, 7] = 0  # an empty sample
        for Xl in layouts(X).values():
            for cols in (np.arange(30), rng.permutation(30)[:13], np.array([5])):
                rows = len(cols) + (-len(cols)) % 4
                Z = np.full((rows, npad), np.nan, dtype)
                lists = (np.empty(3 * m, np.int32), np.empty((3 * m, 4), dtype),
                         np.empty(4, np.int64))  # several list rounds
                for relu in (False, True):
                    K().sparse_columns(Xl, m, cols, W3, W2, Z, *lists, bias, relu, None)
                    want = X[:, cols].T.astype(dtype) @ W + bias[:n]
                    if relu:
                        want = np.maximum(want, 0)
                    close(Z[:len(cols), :n], want, dtype)
                    assert np.all(Z[:len(cols), n:] == 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_dense_layer(dtype):
    """The narrow-layer kernel against NumPy: odd row counts, activations with
    padding columns (never read), a NaN row, biases and the ReLU."""
    rng = np.random.RandomState(3)
    for m, n, rows in ((40, 10, 13), (65, 3, 1), (9, 33, 6)):
        W = rng.normal(size=(m, n)).astype(dtype)
        Wb = K().block_weights(W)
        npad = Wb.shape[0] * Wb.shape[2]
        bias = np.zeros(npad, dtype)
        bias[:n] = rng.normal(size=n)
        A = np.zeros((rows, m + 5), dtype)
        A[:, :m] = np.maximum(rng.normal(size=(rows, m)), 0)
        A[:, m:] = np.nan
        A[0, 1] = np.nan
        Z = np.empty((rows + (-rows) % 4, npad), dtype)
        for relu in (False, True):
            with np.errstate(invalid="ignore"):
                K().dense_layer(A, m, Wb, Z, bias, relu)
            assert np.isnan(Z[0, :n]).all()
            want = A[1:, :m] @ W + bias[:n]
            close(Z[1:rows, :n], np.maximum(want, 0) if relu else want, dtype)


def test_kernel_sort_columns():
    """A stable sort by the reflected Gray code of the key inputs' bits (the
    first key most significant); unsort_rows puts rows back."""
    keys = np.array([2, 0], np.int64)
    # Key bits (X[2, s], X[0, s]) of samples 10..17 and their Gray ranks.
    bits = [(1, 1), (0, 0), (1, 0), (0, 1), (1, 1), (0, 1), (0, 0), (1, 0)]
    gray = {(0, 0): 0, (0, 1): 1, (1, 1): 2, (1, 0): 3}
    X = np.zeros((3, 20))
    for i, (hi, lo) in enumerate(bits):
        X[2, 10 + i], X[0, 10 + i] = hi * 0.5, lo * np.nan if i == 3 else lo * 2.0
    cols = np.empty(8, np.int64)
    K().sort_columns(X, 10, 18, keys, cols, np.empty(5, np.int64), np.empty(8, np.int64))
    want = sorted(range(10, 18), key=lambda s: (gray[bits[s - 10]], s))
    np.testing.assert_array_equal(cols, want)
    A = np.arange(8 * 3, dtype=np.float64).reshape(8, 3)
    out = np.empty((8, 2))
    K().unsort_rows(A, cols, 10, out)
    np.testing.assert_array_equal(out[cols - 10], A[:, :2])


def test_kernel_strided_fill():
    X = sparse_data(150, 41, 0.2)
    groups = (41 + 3) // 4
    full = K().count_column_groups(X, 150, np.arange(41), 0, groups) / (groups * 150)
    assert K().strided_fill(X, 150, 41, 1) == pytest.approx(full)
    assert 0 < K().strided_fill(X, 150, 41, 3) <= 1


# -- the driver -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sorting_gives_the_same_bits(dtype, monkeypatch):
    """Each sample's outputs do not depend on the groups it was listed in:
    the sorted chunks give the very bits of adjacent groups. (Narrow later
    layers: a wide one may take BLAS in one grouping and not the other, by
    its measured fill.)"""
    sizes, acts = np.array([60, 40, 20, 5]), np.array([1, 1, 4])
    P = make_params(sizes, dtype)
    X = sparse_data(60, 211, 0.2, dtype=dtype)
    assert inf.sort_keys(X) is not None
    got = inf.forward(P, sizes, acts, X, sparse=True, chunk=64, n_threads=1)
    monkeypatch.setattr(inf, "sort_keys", lambda X: None)
    np.testing.assert_array_equal(
        inf.forward(P, sizes, acts, X, sparse=True, chunk=64, n_threads=1), got)
    close(got, reference(P, sizes, acts, X), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wide_and_narrow_layers(dtype):
    """Three-register blocks (wide layers), a narrow last layer after a ReLU
    (skipping zero inputs) and after a sigmoid (every input); any layout, one
    and two threads, odd chunks."""
    X = sparse_data(50, 157, 0.3)
    for sizes, acts in (([50, 300, 260, 10], [1, 1, 4]), ([50, 48, 20, 7], [3, 1, 0]),
                        ([50, 25, 1], [1, 3])):
        sizes, acts = np.array(sizes), np.array(acts)
        P = make_params(sizes, dtype)
        o = 50 * sizes[1]
        P[o:o + sizes[1]] -= 0.5  # sparser ReLU outputs
        want = reference(P, sizes, acts, X)
        for Xl in layouts(X).values():
            for n_threads in (1, 2):
                close(inf.forward(P, sizes, acts, Xl, n_threads=n_threads, chunk=36), want, dtype)
        assert (inf.predict_classes(P, sizes, acts, X) == want.argmax(axis=0)).mean() > 0.99


def test_hidden_sparse_after_dense_first_layer():
    """Dense inputs: BLAS first layer, the ReLU outputs after it may still run
    sparse, unless ``sparse=False``."""
    sizes, acts = np.array([30, 300, 280, 4]), np.array([1, 1, 4])
    P = make_params(sizes, np.float64)
    X = np.random.RandomState(4).rand(30, 90)
    call = inf._Call(P, sizes, acts, X, 1, None, None)
    assert not call.sparse0 and call.hidden_sparse == [False, True, False]
    assert call.narrow == [False, False, True]
    assert inf._Call(P, sizes, acts, X, 1, None, False).hidden_sparse == [False] * 3
    want = reference(P, sizes, acts, X)
    for sparse in (None, False, True):
        close(inf.forward(P, sizes, acts, X, sparse=sparse, chunk=32), want, np.float64)


def test_non_finite_through_sorted_groups():
    """NaN and inf inputs reach their own samples' outputs through the sorted
    groups, the fused ReLU and the narrow layer, and nowhere else."""
    sizes, acts = np.array([40, 64, 12, 3]), np.array([1, 1, 0])
    P = make_params(sizes, np.float64)
    X = sparse_data(40, 50, 0.3)
    X[5, 9] = np.nan
    X[6, 30] = np.inf
    with np.errstate(all="ignore"):
        got = inf.forward(P, sizes, acts, X, sparse=True, chunk=20)
        want = reference(P, sizes, acts, X)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = np.isfinite(want).all(axis=0)
    assert not ok[9] and ok.sum() >= 48
    close(got[:, ok], want[:, ok], np.float64)


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="already plain Python")
def test_kernels_as_python():
    """The kernel tests above with NUMBA_DISABLE_JIT=1: the intrinsics' plain
    Python twins."""
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "kernel_",
           str(Path(__file__))]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
