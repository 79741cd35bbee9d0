"""The mini-batch and full-batch kernels' sparse first layer (groups of four
on the nonzeros, :mod:`fastmlp.kernels.minibatch`): its gate counts exactly
what its lists hold, and it trains as the BLAS path does for every width,
batch and dtype, including partial groups and blocks."""

import itertools

import numpy as np
import pytest

from fastmlp.engines import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not importable")

GROUP = 4


def group_entries(xb):
    """The entries of the two group listings of a batch ``xb`` (rows x
    inputs), counted in NumPy: per group of four rows, the inputs nonzero in
    any of them; per group of four inputs, the rows nonzero in any of them."""
    nz = (xb != 0) | np.isnan(xb)
    b, d = nz.shape
    rows = sum(nz[g:g + GROUP].any(axis=0).sum() for g in range(0, b, GROUP))
    cols = sum(nz[:, q:q + GROUP].any(axis=1).sum() for q in range(0, d, GROUP))
    return int(rows + cols)


@pytest.mark.parametrize("b, d", [(1, 1), (1, 6), (7, 31), (8, 30), (32, 784), (5, 9),
                                  (70, 13)])
def test_gate_counts_exactly_the_list_entries(b, d):
    """The gate's count is the lists' entries, and the masks it keeps for the
    weight gradient's lists are each row's groups of four inputs with a
    nonzero (bit r % 64 of word r // 64)."""
    from fastmlp.kernels.minibatch import gate_bits, gather

    rng = np.random.RandomState(b + d)
    X = rng.normal(size=(100, d)) * (rng.rand(100, d) < 0.3)
    Y = rng.normal(size=(100, 2))
    rows = rng.permutation(100)[:b].astype(np.int64)
    X[rows[0], d - 1] = np.nan  # NaN counts as nonzero (it must reach the products)
    xb, yb = np.empty((b, d)), np.empty((b, 2))
    bits = gate_bits(d, b)
    bits[...] = 12345  # (stale masks of an earlier batch)
    assert gather(X, Y, rows, xb, yb, 1e9, bits)  # (any fill: tiny batches pass 2)
    np.testing.assert_array_equal(xb, X[rows])
    np.testing.assert_array_equal(yb, Y[rows])
    nz = np.pad(xb != 0, ((0, 0), (0, -d % GROUP)))  # NaN != 0
    groups = nz.reshape(b, -1, GROUP).any(axis=2)  # rows x groups of four inputs
    for g in range(groups.shape[1]):
        want = [sum(1 << (int(r) % 64) for r in np.flatnonzero(groups[:, g]) if r // 64 == w)
                for w in range(bits.shape[1])]
        assert [int(v) for v in bits[g]] == want
    # ... and the lists made from them are the lists made by testing xb again.
    from fastmlp.kernels.inference import list_groups

    lists = {}
    for made in (None, bits):
        idx, cc = np.empty(b * groups.shape[1], np.int32), np.empty((b * groups.shape[1], GROUP))
        starts = np.empty(groups.shape[1] + 1, np.int64)
        k = list_groups(xb, b, np.arange(d), 0, idx, cc, starts, made)
        lists[made is None] = k, idx[:starts[k]], cc[:starts[k]], starts[:k + 1]
    assert lists[True][0] == lists[False][0] == groups.shape[1]
    for a, c in zip(lists[True][1:], lists[False][1:], strict=True):
        np.testing.assert_array_equal(a, c)
    work = group_entries(xb)
    fill = GROUP / (2.0 * b * d)  # the share of the dense multiply-adds of one entry
    assert gather(X, Y, rows, xb, yb, (work + 0.25) * fill, bits)
    assert not gather(X, Y, rows, xb, yb, (work - 0.25) * fill, bits)


def case(d, width, c, n, density, dtype, seed=0):
    """(P, sizes, acts, loss, X, Y): a d-width-c ReLU/SoftMax+NLL network on
    samples (rows) about ``density`` nonzero, with some all-zero rows."""
    from fastmlp.kernels.codes import NLL, RELU, SOFTMAX

    rng = np.random.RandomState(seed)
    sizes = np.array([d, width, c])
    P = rng.normal(0, 0.3, size=d * width + width + width * c + c).astype(dtype)
    X = (rng.uniform(-1, 1, size=(n, d)) * (rng.rand(n, d) < density)).astype(dtype)
    X[::7] = 0
    Y = np.eye(c, dtype=dtype)[rng.randint(c, size=n)]
    return P, sizes, np.array([RELU, SOFTMAX]), NLL, X, Y


def epoch(kase, batch, max_fill, opt_name):
    from fastmlp.kernels.minibatch import train_minibatch

    from fastmlp.optimizers import SGD, Adam

    P, sizes, acts, loss, X, Y = kase
    opt = (Adam(0.01) if opt_name == "adam"
           else SGD(0.05, momentum=0.8, nesterov=True, weight_decay=1e-3))
    P, G = P.copy(), np.zeros_like(P)
    S = np.zeros((2, len(P)), dtype=P.dtype)
    order = np.random.RandomState(1).permutation(len(X)).astype(np.int64)
    steps = -(-len(order) // batch)
    losses, hits = np.empty(steps), np.empty(steps, dtype=np.int64)
    train_minibatch(P, G, S, sizes, acts, loss, X, Y, order, batch, opt.code, opt.hyper(),
                    losses, hits, max_fill)
    return P, G, losses, hits


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d, width, batch", [(31, 100, 7), (30, 17, 32), (9, 64, 1),
                                             (13, 40, 5), (64, 16, 4), (20, 24, 6),
                                             (16, 20, 9), (101, 40, 100)])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_sparse_epoch_equals_blas_epoch(dtype, d, width, batch, opt_name):
    """Widths that are not whole register blocks (and 24: whole blocks in
    both dtypes; 20: a float64 two-register block), batches that are not
    whole groups of four, inputs not a multiple of four, batches of more
    than 64 rows (two words of the gate's masks): the same training as the
    BLAS path, to rounding."""
    kase = case(d, width, 3, max(45, 2 * batch + 5), 0.2, dtype)
    sparse = epoch(kase, batch, 2.0, opt_name)  # every batch on the nonzeros
    dense = epoch(kase, batch, -1.0, opt_name)  # none
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 1e-5)
    for s, b in zip(sparse[:3], dense[:3], strict=True):
        np.testing.assert_allclose(s, b, rtol=rtol, atol=atol)
    if dtype == np.float64:
        np.testing.assert_array_equal(sparse[3], dense[3])
    gW = sparse[1][:d * width].reshape(d, width)
    assert np.abs(gW).max() > 0


@pytest.mark.parametrize("max_fill", [2.0, 0.0])
def test_full_batch_sparse_equals_blas(max_fill):
    """L-BFGS's loss and gradient over a whole data set: the chunks on the
    nonzeros give BLAS's numbers."""
    from fastmlp.kernels.full_batch import loss_grad

    P, sizes, acts, loss, X, Y = case(31, 100, 3, 70, 0.2, np.float64)
    empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0)
    out = {}
    for fill in (max_fill, -1.0):
        G = np.zeros_like(P)
        total = loss_grad(P, G, sizes, acts, loss, X, Y, empty_f, empty_i,
                          np.empty(0, dtype=np.int32), empty_f, empty_i, 0, len(X), 16, fill)
        out[fill] = total, G
    np.testing.assert_allclose(out[max_fill][0], out[-1.0][0], rtol=1e-12)
    np.testing.assert_allclose(out[max_fill][1], out[-1.0][1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d, n, chunk", [(31, 70, 16), (783, 300, 128)])
@pytest.mark.parametrize("weighted", [False, True])
def test_full_batch_in_a_given_order(weighted, d, n, chunk):
    """The L-BFGS kernel taking the rows in a permutation (the estimators'
    class order), split in two parts as between threads, with or without
    sample weights: the loss and gradient of the rows in their own order,
    up to rounding; on the BLAS path (``max_fill`` 0) the order is unused.
    (783 inputs in chunks of 128: two mask words a group, and lists made in
    several rounds.)"""
    from fastmlp.kernels.full_batch import loss_grad

    P, sizes, acts, loss, X, Y = case(d, 100, 3, n, 0.2, np.float64)
    rng = np.random.RandomState(1)
    sw = rng.uniform(0.5, 2, len(X)) if weighted else np.empty(0)
    order = rng.permutation(len(X)).astype(np.int64)
    empty_i = np.empty(0, dtype=np.int64)
    csr = (empty_i, np.empty(0, dtype=np.int32), np.empty(0))

    def run(rows, fill, cuts):
        G = np.zeros_like(P)
        total = sum(loss_grad(P, G, sizes, acts, loss, X, Y, sw, *csr, rows, lo, hi, chunk,
                              fill) for lo, hi in itertools.pairwise(cuts))
        return total, G

    ref = run(empty_i, 2.0, (0, n))
    for fill in (2.0, 0.0):
        got = run(order, fill, (0, n // 3, n))
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-10, atol=1e-12)
