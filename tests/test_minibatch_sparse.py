"""The fused mini-batch kernel's sparse first layer (inputs mostly zero, like
MNIST's pixels): the same training as the NumPy engine and as its own BLAS
path, and the sparse path taken only where it should be."""

import numpy as np
import pytest
from conftest import assert_float32_fit_tracks, assert_same_state, twins

from fastmlp import MSE, NLL, Linear, ReLU, Sequential, SoftMax, Tanh
from fastmlp.engines import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not importable")

#: An odd number of inputs (a last group of three) and a first layer wide
#: enough for the default rule to take the sparse path at 10% density.
D, WIDTH, C = 31, 256, 4
ZERO_SAMPLE, ZERO_INPUT = 3, 5

ARCHS = {
    "relu-nll": lambda: ([Linear(D, WIDTH), ReLU(), Linear(WIDTH, C), SoftMax()], NLL()),
    "tanh-mse": lambda: ([Linear(D, WIDTH), Tanh(), Linear(WIDTH, C)], MSE()),
}


def sparse_data(n, density=0.1, seed=0, dtype=np.float64):
    """X of shape (D, n) with about ``density`` of its entries nonzero, sample
    ZERO_SAMPLE all zero and input ZERO_INPUT zero in every sample; one-hot Y."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, size=(D, n)) * (rng.rand(D, n) < density)
    X[:, ZERO_SAMPLE] = 0
    X[ZERO_INPUT, :] = 0
    y = rng.randint(C, size=n)
    return X.astype(dtype), np.eye(C, dtype=dtype)[y].T


@pytest.mark.parametrize("momentum, nesterov, decay", [(0.9, False, 1e-3), (0.8, True, 1e-2),
                                                      (0.0, False, 1e-2)])
@pytest.mark.parametrize("batch", [1, 7, 32])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_sparse_fit_equals_numpy_engine(arch, batch, momentum, nesterov, decay):
    X, Y = sparse_data(101)  # 101 samples: the last batch is short
    a, b = twins(ARCHS[arch])
    kw = dict(epochs=1, batch_size=batch, lrate=0.003, momentum=momentum, nesterov=nesterov,
              weight_decay=decay, seed=3, verbose=0)
    ha, hb = a.fit(X, Y, **kw), b.fit(X, Y, **kw)
    assert b.path.startswith("fused ")
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.modules[0].dLdW, a.modules[0].dLdW, rtol=1e-9, atol=1e-12)
    assert np.abs(b.modules[0].dLdW).max() > 0
    np.testing.assert_allclose(hb.loss, ha.loss, rtol=1e-9)
    assert ha.accuracy == hb.accuracy


def test_sparse_fit_float32_tolerance():
    """float32: the NumPy engine's trajectory to float32 round-off (rtol 1e-4)."""
    X, Y = sparse_data(150, dtype=np.float32)
    assert_float32_fit_tracks(*twins(ARCHS["relu-nll"], np.float32), X, Y)


# The kernel itself, on flat buffers (the layout of fastmlp.kernels.step).


def kernel_case(width=WIDTH, density=0.1, n=101, seed=0):
    """(P, sizes, acts, loss, X, Y) for a D-width-C ReLU/SoftMax+NLL network,
    samples as rows."""
    from fastmlp.kernels.codes import NLL as NLL_CODE
    from fastmlp.kernels.codes import RELU, SOFTMAX

    sizes = np.array([D, width, C])
    rng = np.random.RandomState(seed)
    P = rng.normal(0, 0.2, size=D * width + width + width * C + C)
    X, Y = sparse_data(n, density, seed)
    return (P, sizes, np.array([RELU, SOFTMAX]), NLL_CODE, np.ascontiguousarray(X.T),
            np.ascontiguousarray(Y.T))


def run_kernel(case, batch, max_fill, seed=0):
    """One epoch of Nesterov SGD with decay; returns (P, G, V, losses, hits)."""
    from fastmlp.kernels.minibatch import train_minibatch

    from fastmlp.optimizers import SGD

    P, sizes, acts, loss, X, Y = case
    P, G, S = P.copy(), np.zeros_like(P), np.zeros((1, len(P)))
    opt = SGD(0.05, momentum=0.8, nesterov=True, weight_decay=1e-2)
    order = np.random.RandomState(seed).permutation(len(X)).astype(np.int64)
    steps = -(-len(order) // batch)
    losses, hits = np.empty(steps), np.empty(steps, dtype=np.int64)
    train_minibatch(P, G, S, sizes, acts, loss, X, Y, order, batch, opt.code, opt.hyper(),
                    losses, hits, max_fill)
    return P, G, S[0], losses, hits


@pytest.mark.parametrize("max_fill", [2.0, 0.34])
@pytest.mark.parametrize("width", [WIDTH, 5, 13, 22])
@pytest.mark.parametrize("batch", [1, 2, 7, 32, 101, 128])
@pytest.mark.parametrize("density", [0.0, 0.1, 1.0])
def test_forced_sparse_path_equals_blas_path(batch, density, width, max_fill):
    """max_fill 2: every batch on the nonzeros' path; 0.34: at density 0.1
    (a group of four nonzero with chance 0.34) some batches each way, so W
    goes from its column blocks to P and back between steps. Widths: blocks
    that end on the last column (256), or past it in a block of two
    registers (5, 13) or of three (22)."""
    case = kernel_case(width, density=density)
    sparse = run_kernel(case, batch, max_fill=max_fill)
    dense = run_kernel(case, batch, max_fill=-1.0)  # none
    for s, d in zip(sparse[:4], dense[:4], strict=True):
        np.testing.assert_allclose(s, d, rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(sparse[4], dense[4])
    G = sparse[1]
    gW = G[:D * width].reshape(D, width)
    assert (gW[ZERO_INPUT] == 0).all()
    assert density == 0 or np.abs(gW).max() > 0


BLOCK_SHAPES = [(31, 256), (31, 5), (31, 13), (31, 22), (3, 1), (8, 24), (784, 100), (5, 92)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d, n", BLOCK_SHAPES)
def test_column_blocks_hold_w(d, n, dtype):
    """W into the first layer's column blocks and back: the same values, zeros
    in every padding row and column, and the sum of squares over the blocks
    equal to the one over W in row-major order, bit for bit."""
    from fastmlp.kernels import minibatch as mb

    W = np.random.RandomState(d * n).normal(size=(d, n)).astype(dtype)
    shape = mb.block_shape(d, n, W.itemsize)
    flat = mb.aligned(mb.block_size(shape), W)
    flat[:] = np.nan
    mb.to_blocks(W, flat, shape)
    back = np.full_like(W, np.nan)
    mb.from_blocks(flat, shape, back)
    np.testing.assert_array_equal(back, W)
    a, bw3, b, bw2, rows = shape
    assert rows >= d and rows % 4 == 0 and a * bw3 + b * bw2 >= n
    assert flat.ctypes.data % 64 == 0
    assert np.count_nonzero(flat) == np.count_nonzero(W)  # padding: zeros, not NaN
    total = 0.0
    for v in W.ravel():
        total += float(v * v)  # the product in W's dtype, summed in float64, in order
    assert mb.block_squares(flat, shape, d, n) == total


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("d, n", BLOCK_SHAPES)
@pytest.mark.parametrize("b", [1, 5, 32])
def test_blocked_products_equal_numpy(d, n, b, dtype, rtol):
    """The forward product and the weight gradient from the nonzeros, W and the
    gradient in column blocks, against NumPy's products; the gradient's
    padding rows and columns stay zero."""
    from fastmlp.kernels import minibatch as mb

    rng = np.random.RandomState(b * d + n)
    xb = (rng.normal(size=(b, d)) * (rng.rand(b, d) < 0.3)).astype(dtype)
    W = rng.normal(size=(d, n)).astype(dtype)
    dz = rng.normal(size=(b, n)).astype(dtype)
    ws = mb.sparse_workspace(W, b, d, n)
    shape = mb.block_shape(d, n, W.itemsize)
    Wb, Gb, _, _ = mb.blocks_in(ws)
    mb.to_blocks(W, Wb, shape)
    Z = np.full((b, n), np.nan, dtype)
    mb.blocked_first(xb, Wb, shape, Z, ws)
    np.testing.assert_allclose(Z, xb @ W, rtol=rtol, atol=rtol * 10)
    bits = mb.gate_bits(d, b)
    yb = np.zeros((b, 1), dtype)
    assert mb.gather(xb, yb, np.arange(b), np.empty_like(xb), np.empty_like(yb), 2.0, bits)
    Gb[:] = np.nan
    mb.blocked_gradient(xb, dz, Gb, shape, ws, bits)
    gW = np.full((d, n), np.nan, dtype)
    mb.from_blocks(Gb, shape, gW)
    np.testing.assert_allclose(gW, xb.T @ dz, rtol=rtol, atol=rtol * 10)
    full = np.zeros_like(W, shape=(shape[4], shape[0] * shape[1] + shape[2] * shape[3]))
    full[:d, :n] = xb.T @ dz
    mb.to_blocks(full, Wb, shape)  # (the padding as zeros, in the blocks' layout)
    np.testing.assert_allclose(Gb, Wb, rtol=rtol, atol=rtol * 10)


@pytest.mark.parametrize("width, density, sparse", [(WIDTH, 0.1, True), (WIDTH, 1.0, False),
                                                    (32, 0.1, False)])
def test_default_rule(width, density, sparse):
    """Sparse inputs to a wide layer take the sparse path; dense inputs, or a
    narrow first layer (where BLAS is faster), take BLAS. The plan says so, and
    the kernel, given the plan's threshold, does it: told apart by a NaN
    weight on an input that is zero in every sample (0 * NaN poisons a BLAS
    product, while the sparse path skips zero inputs). (A model refuses NaN
    weights, so the kernel is called directly here.)"""
    from fastmlp.optimizers import SGD
    from fastmlp.plan import plan_training

    np.random.seed(0)
    nn = Sequential([Linear(D, width), ReLU(), Linear(width, C), SoftMax()], NLL())
    X, Y = sparse_data(101, density)
    plan = plan_training(nn, X, Y, samples=101, batch_size=16,
                         optimizer=SGD(0.05, momentum=0.8, nesterov=True, weight_decay=1e-2))
    assert str(plan).startswith("fused mini-batch, " + ("first layer on nonzeros" if sparse
                                                         else "dense first layer"))
    case = kernel_case(width, density)
    case[0][ZERO_INPUT * width:(ZERO_INPUT + 1) * width] = np.nan
    with np.errstate(invalid="ignore"):
        losses = run_kernel(case, 16, plan.max_fill)[3]
    assert np.isfinite(losses).all() == sparse


# The gate's count (gather) against the lists: tests/test_sparse_batch.py.


@pytest.mark.parametrize("max_fill", [2.0, 0.34])
@pytest.mark.parametrize("width", [WIDTH, 22])
def test_adam_state_carries_across_calls(width, max_fill):
    """Adam (two state rows) over two calls of the kernel: what the blocks hold
    at the end of the first call reaches S, and the second call starts from
    it, on the sparse path as on BLAS's."""
    from fastmlp.kernels.minibatch import train_minibatch

    from fastmlp.optimizers import Adam

    def two_calls(fill):
        P, sizes, acts, loss, X, Y = kernel_case(width, density=0.1)
        P, G = P.copy(), np.zeros_like(P)
        opt = Adam(0.01, weight_decay=1e-3)
        opt.prepare(P.size, P.dtype, previous=None)
        for seed in (0, 1):
            order = np.random.RandomState(seed).permutation(len(X)).astype(np.int64)
            steps = -(-len(order) // 16)
            train_minibatch(P, G, opt.state, sizes, acts, loss, X, Y, order, 16, opt.code,
                            opt.hyper(), np.empty(steps), np.empty(steps, dtype=np.int64), fill)
        return P, G, opt.state

    sparse, dense = two_calls(max_fill), two_calls(-1.0)
    assert sparse[2].shape[0] == 2
    for s, d in zip(sparse, dense, strict=True):
        np.testing.assert_allclose(s, d, rtol=1e-9, atol=1e-12)
    assert np.abs(sparse[2][1, :D * width]).max() > 0


@pytest.mark.parametrize("max_fill", [2.0, 0.34])
def test_step_statistics_on_the_sparse_path(max_fill):
    """scikit-learn's per-step statistics (sum of weights, sum of squares of
    every weight as the step's forward pass saw them) on the sparse path,
    where the first layer's weights are in column blocks, equal BLAS's."""
    from fastmlp.kernels.minibatch import sparse_workspace, train_batches

    from fastmlp.optimizers import SGD

    def run(fill):
        P, sizes, acts, loss, X, Y = kernel_case(22, density=0.1)
        P, G, S = P.copy(), np.zeros_like(P), np.zeros((1, len(P)))
        opt = SGD(0.05, momentum=0.9)
        order = np.random.RandomState(0).permutation(len(X)).astype(np.int64)
        steps = -(-len(order) // 8)
        stats = np.empty((steps, 2))
        ws = sparse_workspace(P, 8, D, 22)
        train_batches(P, G, S, sizes, acts, loss, X, Y, None, None, order, 8, opt.code,
                      opt.hyper(), np.empty(steps), np.empty(steps, dtype=np.int64), stats,
                      fill, ws)
        return P, stats

    (Ps, sparse), (Pd, dense) = run(max_fill), run(-1.0)
    np.testing.assert_allclose(Ps, Pd, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(sparse, dense, rtol=1e-12)
    assert (np.diff(sparse[:, 1]) != 0).all()  # the weights moved every step
