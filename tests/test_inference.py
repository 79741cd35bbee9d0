"""fastmlp.inference against the layer-by-layer forward of fastmlp.baseline."""

import itertools
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from fastmlp import baseline as B
from fastmlp import inference as inf

ACTS = {0: lambda z: z, 1: B.relu_forward, 2: B.tanh_forward, 3: B.sigmoid_forward,
        4: B.softmax_forward}
RTOL = {np.float64: 1e-12, np.float32: 1e-5}


def make_params(sizes, dtype, seed=0, scale=1.0):
    rng = np.random.RandomState(seed)
    parts = []
    for m, n in itertools.pairwise(sizes):
        parts += [rng.normal(0, scale / np.sqrt(m), m * n), rng.normal(0, 0.5, n)]
    return np.concatenate(parts).astype(dtype)


def reference(P, sizes, acts, X):
    """The notebook's forward, layer by layer, in P's dtype."""
    A = X.astype(P.dtype)
    o = 0
    for ell, (m, n) in enumerate(itertools.pairwise(sizes)):
        W = P[o:o + m * n].reshape(m, n)
        W0 = P[o + m * n:o + m * n + n].reshape(n, 1)
        o += m * n + n
        with np.errstate(all="ignore"):
            A = ACTS[acts[ell]](B.linear_forward(W, W0, A))
    return A


def sparse_data(d, n, density, seed=1, dtype=np.float64):
    rng = np.random.RandomState(seed)
    X = rng.rand(n, d)
    X[rng.rand(n, d) > density] = 0
    return X.astype(dtype).T  # F-ordered, each sample contiguous


def close(got, want, dtype):
    # rtol on every entry, plus a floor at the scale of the outputs for
    # entries that are sums cancelling to near zero (the sparse and BLAS paths
    # add the same terms in different orders).
    scale = np.nanmax(np.abs(want)) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale * 1e-2)


def layouts(X):
    """F-ordered, C-ordered and strided views of the same (features, samples) data."""
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3), X.dtype)
    wide[::2, ::3] = X
    return {"F": np.asfortranarray(X), "C": np.ascontiguousarray(X), "strided": wide[::2, ::3]}


NETS = [
    ([20, 16, 5], [1, 4]),
    ([20, 40, 7, 3], [3, 2, 0]),
    ([20, 64, 64, 4], [1, 1, 4]),
    ([20, 1], [3]),  # width 1
    ([20, 48, 1], [2, 3]),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("net", range(len(NETS)))
@pytest.mark.parametrize("density", [0.15, 1.0])
def test_forward_matches_baseline(dtype, net, density):
    sizes, acts = (np.array(v) for v in NETS[net])
    P = make_params(sizes, dtype)
    X = sparse_data(sizes[0], 101, density)
    want = reference(P, sizes, acts, X)
    for name, Xl in layouts(X).items():
        for sparse in (None, True, False):
            for n_threads in (1, 2):
                got = inf.forward(P, sizes, acts, Xl, sparse=sparse, n_threads=n_threads,
                                  chunk=16)
                assert got.shape == want.shape and got.dtype == P.dtype, name
                close(got, want, dtype)


@pytest.mark.parametrize("pdtype,xdtype", [(np.float64, np.float32), (np.float32, np.float64)])
@pytest.mark.parametrize("sparse", [True, False])
def test_x_dtype_differs(pdtype, xdtype, sparse):
    sizes, acts = np.array([30, 24, 6]), np.array([3, 4])
    P = make_params(sizes, pdtype)
    X = sparse_data(30, 77, 0.3, dtype=xdtype)
    want = reference(P, sizes, acts, X)
    for Xl in layouts(X).values():
        close(inf.forward(P, sizes, acts, Xl, sparse=sparse, chunk=16, n_threads=2), want,
              pdtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_one_and_two(dtype):
    sizes, acts = np.array([12, 9, 3]), np.array([2, 4])
    P = make_params(sizes, dtype)
    for n in (1, 2, 3):
        X = sparse_data(12, n, 0.5)
        for sparse in (True, False):
            close(inf.forward(P, sizes, acts, X, sparse=sparse), reference(P, sizes, acts, X),
                  dtype)


@pytest.mark.parametrize("code", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_activation_extreme_values(code, dtype):
    """Large, tiny, subnormal-producing and infinite pre-activations."""
    sizes, acts = np.array([2, 11]), np.array([code])
    P = np.zeros(2 * 11 + 11, dtype)
    W = P[:22].reshape(2, 11)
    W[0] = [0, 1e-8, -1e-8, 0.3, -0.7, 5, -30, 90, -200, 740, -746]
    W[1] = [1, -1, 2, -2, 0.5, 0, 1, 3, -3, 0, 0]
    X = np.array([[1.0, 0.0, -1.0, 3.0, 1.0], [0.0, 1.0, 2.0, 0.0, -np.inf]])
    with np.errstate(all="ignore"):
        want = reference(P, sizes, acts, X)
    for sparse in (True, False):
        got = inf.forward(P, sizes, acts, X, sparse=sparse)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=RTOL[dtype] * 10, atol=0)


@pytest.mark.parametrize("sparse", [True, False])
def test_nan_propagates(sparse):
    sizes, acts = np.array([10, 8, 4]), np.array([1, 4])
    P = make_params(sizes, np.float64)
    X = sparse_data(10, 6, 0.5)
    X[3, 2] = np.nan
    W = P[:80].reshape(10, 8)
    W[:, 0] = np.where(X[:, 2] != 0, W[:, 0], 1.0)
    got = inf.forward(P, sizes, acts, X, sparse=sparse)
    # A NaN input poisons every output of its sample (through the softmax).
    assert np.isnan(got[:, 2]).all()
    others = np.delete(np.arange(6), 2)
    close(got[:, others], reference(P, sizes, acts, X[:, others]), np.float64)
    assert inf.predict_classes(P, sizes, acts, X, sparse=sparse)[2] == 0  # argmax of NaN


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_predict_classes_and_score(dtype):
    sizes, acts = np.array([40, 32, 10]), np.array([3, 4])
    P = make_params(sizes, dtype, scale=3.0)
    X = sparse_data(40, 333, 0.2)
    rng = np.random.RandomState(3)
    Y = np.eye(10, dtype=dtype)[rng.randint(10, size=333)].T
    out = reference(P, sizes, acts, X)
    for sparse in (True, False):
        cls = inf.predict_classes(P, sizes, acts, X, sparse=sparse, chunk=32, n_threads=2)
        assert cls.dtype == np.int64 and cls.shape == (333,)
        np.testing.assert_array_equal(cls, out.argmax(axis=0))
        loss, hits = inf.score(P, sizes, acts, 0, X, Y, sparse=sparse, chunk=32, n_threads=2)
        assert hits == int(np.sum(out.argmax(0) == Y.argmax(0)))
        np.testing.assert_allclose(loss, B.nll_forward(out, Y), rtol=RTOL[dtype])
        # MSE on a network without softmax, Y in the other dtype and C order.
        acts2 = np.array([2, 0])
        out2 = reference(P, sizes, acts2, X)
        Y2 = np.ascontiguousarray(rng.normal(size=(10, 333)))
        loss2, hits2 = inf.score(P, sizes, acts2, 1, X, Y2, sparse=sparse, chunk=32)
        np.testing.assert_allclose(loss2, B.mse_forward(out2, Y2.astype(dtype)),
                                   rtol=RTOL[dtype])
        assert hits2 == int(np.sum(out2.argmax(0) == Y2.argmax(0)))


def test_out_argument_any_layout():
    sizes, acts = np.array([16, 12, 5]), np.array([1, 4])
    P = make_params(sizes, np.float64)
    X = sparse_data(16, 50, 0.3)
    want = reference(P, sizes, acts, X)
    for out in (np.empty((5, 50)), np.empty((5, 50), order="F"), np.empty((10, 100))[::2, ::2]):
        got = inf.forward(P, sizes, acts, X, out=out, chunk=16)
        assert got is out
        close(out, want, np.float64)
    with pytest.raises(ValueError):
        inf.forward(P, sizes, acts, X, out=np.empty((5, 50), np.float32))


def test_bad_arguments():
    sizes, acts = np.array([4, 3]), np.array([1])
    P = make_params(sizes, np.float64)
    with pytest.raises(ValueError):
        inf.forward(P, sizes, acts, np.zeros((5, 3)))
    with pytest.raises(TypeError):
        inf.forward(P, sizes, acts, np.zeros((4, 3), np.int64))
    with pytest.raises(ValueError):
        inf.forward(P[:-1], sizes, acts, np.zeros((4, 3)))
    with pytest.raises(ValueError):
        inf.forward(make_params([4, 3, 2], np.float64), [4, 3, 2], [4, 4], np.zeros((4, 3)))


def test_results_do_not_depend_on_threads():
    sizes, acts = np.array([100, 64, 10]), np.array([1, 4])
    P = make_params(sizes, np.float64)
    X = sparse_data(100, 3000, 0.2)
    Y = np.eye(10)[np.arange(3000) % 10].T
    a = inf.score(P, sizes, acts, 0, X, Y, n_threads=1)
    assert inf.score(P, sizes, acts, 0, X, Y, n_threads=2) == a
    np.testing.assert_array_equal(inf.forward(P, sizes, acts, X, n_threads=1),
                                  inf.forward(P, sizes, acts, X, n_threads=2))


def test_two_models_in_two_threads():
    """Two models predicting from two Python threads at once give the sequential results."""
    X = sparse_data(200, 4000, 0.2)
    nets = [(np.array([200, 96, 10]), np.array([3, 4]), np.float64),
            (np.array([200, 64, 64, 10]), np.array([1, 1, 4]), np.float32)]
    params = [make_params(s, dt, seed=i) for i, (s, _, dt) in enumerate(nets)]
    want = [inf.forward(P, s, a, X) for P, (s, a, _) in zip(params, nets, strict=True)]
    got = [[], []]
    barrier = threading.Barrier(2)

    def run(k):
        barrier.wait()
        for _ in range(5):
            got[k].append(inf.forward(params[k], nets[k][0], nets[k][1], X, n_threads=2))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        assert len(got[k]) == 5
        for g in got[k]:
            if nets[k][2] == np.float64:
                np.testing.assert_array_equal(g, want[k])
            else:  # OpenBLAS's one-thread sgemm rounds differently off the main thread
                np.testing.assert_allclose(g, want[k], rtol=1e-6, atol=0)


def test_density_rule_is_deterministic():
    X = sparse_data(784, 2000, 0.19)
    f1 = inf.pair_fill(X)
    assert f1 == inf.pair_fill(np.ascontiguousarray(X))
    # Groups of four scattered nonzeros: 1 - (1 - 0.19)**4 = 0.57.
    assert 0.5 < f1 < 0.65
    assert inf.sparse_limit(100, 8) > 0 and inf.sparse_limit(10, 8) == 0
    # Few samples: the groups repeat the last column (as the kernel's zero twins).
    for n in (1, 2, 3, 5):
        assert 0 < inf.pair_fill(sparse_data(50, n, 0.3)) <= 1


def kernel_module():
    from fastmlp.engines import kernel_module as km

    return km("inference")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 7, 8, 16, 17, 33, 100])
def test_sparse_layer_kernel(dtype, n):
    """The blocked group kernel against a dense product: odd widths (padded
    blocks), sample counts not a multiple of four, lists too short for one
    chunk (several list rounds), X in another dtype and any layout."""
    K = kernel_module()
    m = 37
    rng = np.random.RandomState(n)
    W = rng.normal(size=(m, n)).astype(dtype)
    Wb = K.block_weights(W)
    bw = K.block_width(dtype)
    assert Wb.shape == (-(-n // bw), m, bw) and Wb.flags.c_contiguous
    for xdtype in (np.float64, np.float32):
        X = sparse_data(m, 23, 0.2, seed=n, dtype=xdtype)
        X[:, 5] = 0  # an empty sample
        want = X.astype(dtype).T @ W
        for Xl in layouts(X).values():
            for lo, hi in ((0, 23), (3, 4), (5, 14), (22, 23)):
                for cap in (m, 3 * m, 1000):  # one group per round, a few, all
                    b = hi - lo
                    Z = np.full((b + (-b) % 4, Wb.shape[0] * bw), np.nan, dtype)
                    lists = (np.empty(cap, np.int32), np.empty((cap, 4), dtype),
                             np.empty(3, np.int64))
                    K.sparse_layer(Xl, m, lo, hi, Wb, Z, *lists)
                    close(Z[:b, :n], want[lo:hi], dtype)
                    assert np.all(Z[:b, n:] == 0)  # padding columns: zero products


def test_sparse_layer_reads_first_m_inputs_only():
    """Activations passed with padding columns (as the driver does between
    sparse layers): rows past m are never read, even when not finite."""
    K = kernel_module()
    W = np.random.RandomState(0).normal(size=(10, 12))
    A = np.zeros((9, 16))
    A[:, :10] = sparse_data(10, 9, 0.4).T
    A[:, 10:] = np.nan
    Z = np.empty((12, 16))
    lists = (np.empty(64, np.int32), np.empty((64, 4)), np.empty(4, np.int64))
    K.sparse_layer(A.T, 10, 0, 9, K.block_weights(W), Z, *lists)
    close(Z[:9, :12], A[:, :10] @ W, np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_layer_non_finite(dtype):
    """NaN and inf inputs reach their own sample's outputs; the group's other
    samples (listed at that input with a zero) stay finite."""
    K = kernel_module()
    W = np.random.RandomState(1).normal(size=(6, 9)).astype(dtype)
    X = np.zeros((6, 6), dtype)
    X[1, 0] = np.nan
    X[2, 2] = np.inf
    X[3, 5] = -np.inf
    X[4, :] = 1
    Z = np.empty((8, 16), dtype)
    lists = (np.empty(64, np.int32), np.empty((64, 4), dtype), np.empty(4, np.int64))
    with np.errstate(all="ignore"):
        K.sparse_layer(X, 6, 0, 6, K.block_weights(W), Z, *lists)
    assert np.isnan(Z[0, :9]).all()
    assert np.isinf(Z[2, :9]).all() and np.isinf(Z[5, :9]).all()
    for s in (1, 3, 4):
        close(Z[s, :9], X[:, s] @ W, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bias_activate_padded_rows(dtype):
    """bias_activate works on the first len(b) columns of C-ordered rows and
    leaves the padding alone."""
    K = kernel_module()
    rng = np.random.RandomState(2)
    Z = rng.normal(size=(5, 16)).astype(dtype)
    b = rng.normal(size=11).astype(dtype)
    pad = Z[:, 11:].copy()
    want = B.sigmoid_forward((Z[:, :11] + b).T).T
    K.bias_activate(Z, b, 3)
    close(Z[:, :11], want, dtype)
    np.testing.assert_array_equal(Z[:, 11:], pad)
    Z = rng.normal(size=(5, 16)).astype(dtype)
    nnz = K.bias_activate(Z, b, 1)
    assert nnz == int(np.count_nonzero(Z[:, :11]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hidden_sparse_layers(dtype):
    """A deep ReLU network whose hidden activations are sparse enough for the
    sparse kernel between layers (negative biases), against the dense path."""
    sizes, acts = np.array([30, 48, 40, 33, 5]), np.array([1, 1, 1, 4])
    P = make_params(sizes, dtype)
    o = 0
    for m, n in itertools.pairwise(sizes):  # biases of the hidden layers: mostly off
        P[o + m * n:o + m * n + n] -= 1.5
        o += m * n + n
    X = sparse_data(30, 203, 0.2)
    want = reference(P, sizes, acts, X)
    for Xl in layouts(X).values():
        for n_threads in (1, 2):
            close(inf.forward(P, sizes, acts, Xl, sparse=True, n_threads=n_threads, chunk=20),
                  want, dtype)


MEMORY_SCRIPT = textwrap.dedent("""
    import numpy as np
    from fastmlp import inference as inf

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    sizes, acts = np.array([784, 512, 512, 10]), np.array([1, 1, 4])
    rng = np.random.RandomState(0)
    P = (rng.normal(size=int(np.sum(sizes[:-1] * sizes[1:] + sizes[1:]))) * 0.05)
    layout = "{layout}"
    X = np.empty((60000, 784)).T if layout == "F" else np.empty((784, 60000))
    for i in range(0, 60000, 6000):  # filled in place: no temporary copies
        blk = rng.rand(784, 6000)
        blk[blk < 0.8] = 0
        X[:, i:i + 6000] = blk
    del blk
    inf.forward(P, sizes, acts, X[:, :3000])  # compile, start the pool
    out = np.empty((60000, 10)).T
    out[...] = 0
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
    except OSError:
        pass
    base = status("VmRSS:")
    inf.forward(P, sizes, acts, X, out=out)
    print((status("VmHWM:") - base) / 2**20)
""")


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["F", "C"])
def test_memory_bound(layout):
    """Peak extra memory of a forward over 784 x 60,000 float64 inputs: at most 64 MB."""
    script = MEMORY_SCRIPT.format(layout=layout)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=True)
    extra_mib = float(res.stdout.strip().splitlines()[-1])
    assert extra_mib < 64, extra_mib
