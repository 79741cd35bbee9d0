"""Per-sample kernels specialised per network shape (kernels/specialise.py), and
the compiled input checks (kernels/checks.py).

The specialised kernels are checked against the loop-level oracle
(tests/naive.py, float64, rtol 1e-9 after 2,000 steps) and against the generic
one-pass kernel, on shapes that reach every branch of the generator: the
deferred first layer (at least DEFER_MIN_WEIGHTS weights, in column blocks
of one and of two widths, on listed rows and on every row) and the plain
one, layers narrow enough for
registers and wider ones, every activation and both losses.
"""

import os
import subprocess
import sys

import naive
import numpy as np
import pytest
from conftest import NETWORKS
from fastmlp.kernels import codes

from fastmlp import NLL, ReLU, Sigmoid, SoftMax, Tanh
from fastmlp import _validation as v
from fastmlp.engines import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not importable")

#: The shapes (conftest's networks) reach every branch of the generator:
#: "nb003-deferred" and "mse-relu-wide" the deferred first layer, "wide-middle"
#: and "mse-relu-wide" layers too wide for registers, the others the plain
#: first layer and layers in registers; every activation and both losses.
NAMES = ["notebook002", "nb003-deferred", "deep", "wide-middle", "mse-sigmoid", "mse-softmax",
         "mse-relu-wide", "mse-identity"]
ACT_NAMES = {None: "identity", ReLU: "relu", Tanh: "tanh", Sigmoid: "sigmoid",
             SoftMax: "softmax"}


def shape(name):
    """(sizes, activation names, loss name) of conftest's network ``name``."""
    d, spec, Loss = NETWORKS[name]
    return ((d, *(n for n, _ in spec)), tuple(ACT_NAMES[act] for _, act in spec),
            "nll" if Loss is NLL else "mse")


def make(name, n=150, seed=0, dtype=np.float64, zeros=0.5):
    sizes, acts, loss = shape(name)
    rng = np.random.RandomState(seed)
    network = [(rng.randn(m, k) / np.sqrt(m), rng.randn(k) * 0.1, act)
               for m, k, act in zip(sizes[:-1], sizes[1:], acts, strict=True)]
    X = rng.rand(sizes[0], n) * (rng.rand(sizes[0], n) > zeros)
    if loss == "nll":
        Y = np.eye(sizes[-1])[rng.randint(sizes[-1], size=n)].T
    else:
        Y = rng.rand(sizes[-1], n)
    P = np.concatenate([np.concatenate([W.ravel(), b]) for W, b, _ in network]).astype(dtype)
    return network, X.astype(dtype), Y.astype(dtype), P


def args(name):
    _, spec, Loss = NETWORKS[name]
    sizes, _, _ = shape(name)
    acts = [codes.IDENTITY if act is None else act.code for _, act in spec]
    return (np.array(sizes, dtype=np.int64), np.array(acts, dtype=np.int64), Loss.code)


def run_kernel(kernel, name, P, X, Y, idx, lrate, dense=False):
    """Run the generic or the specialised kernel; ``dense``: the first layer in
    column blocks (fastmlp.kernels.columns)."""
    losses, hits = np.empty(len(idx)), np.empty(len(idx), dtype=np.int64)
    G = np.zeros_like(P)
    Xr, Yr = np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T)
    if kernel == "generic":
        from fastmlp.kernels.per_sample import sgd_per_sample_generic

        sgd_per_sample_generic(P, G, *args(name), Xr, Yr, idx, lrate, losses, hits, dense)
    else:
        from fastmlp.kernels.specialise import kernel_for

        fn = kernel_for(*args(name), "one-pass-dense" if dense else "one-pass")
        assert fn is not None
        fn(P, G, Xr, Yr, idx, lrate, losses, hits)
    return G, losses, hits


def flat_of(network):
    return np.concatenate([np.concatenate([W.ravel(), np.ravel(b)]) for W, b, _ in network])


#: The shapes whose first layer is deferred, so "one-pass-dense" puts it in
#: column blocks: widths of one block of 5 vectors (float64) or 3 (float32),
#: and of 2 blocks of 4 (float64) or one of 4 (float32).
DEFERRED = ["nb003-deferred", "mse-relu-wide"]
CASES = [(name, False) for name in NAMES] + [(name, True) for name in DEFERRED]


@pytest.mark.parametrize("name, dense", CASES)
def test_specialised_kernel_matches_the_oracle_after_2000_steps(name, dense):
    network, X, Y, P = make(name, zeros=0.0 if dense else 0.5)
    idx = np.random.RandomState(1).randint(X.shape[1], size=2000).astype(np.int64)
    lrate = 0.02
    trained, losses_ref = naive.sgd_per_sample(network, X, Y, idx, lrate, shape(name)[2])
    _, losses, _ = run_kernel("special", name, P, X, Y, idx, lrate, dense)
    np.testing.assert_allclose(P, flat_of(trained), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(losses, losses_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, dense", CASES)
def test_specialised_kernel_matches_the_generic_kernel(name, dense, dtype):
    _, X, Y, P = make(name, dtype=dtype, seed=3)
    idx = np.random.RandomState(2).randint(X.shape[1], size=500).astype(np.int64)
    P1, P2 = P.copy(), P.copy()
    G1, l1, h1 = run_kernel("special", name, P1, X, Y, idx, 0.05, dense)
    G2, l2, h2 = run_kernel("generic", name, P2, X, Y, idx, 0.05, dense)
    assert P1.dtype == dtype and G1.dtype == dtype
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(P1, P2, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(G1, G2, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(l1, l2, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_array_equal(h1, h2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", ["special", "generic"])
@pytest.mark.parametrize("name, dense", [("nb003-deferred", False), ("notebook002", False),
                                         *((name, True) for name in DEFERRED)])
def test_split_calls_end_on_the_same_weights_to_the_bit(name, dense, kernel, dtype):
    _, X, Y, P = make(name, seed=4, dtype=dtype, zeros=0.0 if dense else 0.5)
    idx = np.random.RandomState(5).randint(X.shape[1], size=900).astype(np.int64)
    whole, parts = P.copy(), P.copy()
    run_kernel(kernel, name, whole, X, Y, idx, 0.1, dense)
    for chunk in np.array_split(idx, 7):
        run_kernel(kernel, name, parts, X, Y, chunk, 0.1, dense)
    np.testing.assert_array_equal(whole, parts)


@pytest.mark.parametrize("zeros, kind", [(0.0, "one-pass-dense"), (0.7, "one-pass")])
def test_training_runs_the_kernel_of_its_plan(zeros, kind):
    """Dense inputs run the every-row kernel, sparse ones the listing one (the
    two give the same bits on finite data, so only the kernel made says which ran)."""
    from fastmlp.kernels import specialise

    from fastmlp import Linear, Sequential

    d, spec, Loss = NETWORKS["mse-relu-wide"]
    rng = np.random.RandomState(7)
    X = rng.rand(d, 300) * (rng.rand(d, 300) >= zeros)
    Y = rng.rand(spec[-1][0], 300)
    layers = []
    for (n, act), m in zip(spec, (d, *(n for n, _ in spec[:-1])), strict=True):
        layers += [Linear(m, n), act()]
    nn = Sequential(layers, Loss(), block="off")
    sizes, acts, loss = args("mse-relu-wide")
    key = (tuple(int(v) for v in sizes), tuple(int(a) for a in acts), int(loss), kind)
    specialise._KERNELS.pop(key, None)
    nn.sgd(X, Y, iters=50, verbose=False)
    assert key in specialise._KERNELS
    assert ("dense first layer" in nn.path) == (kind == "one-pass-dense")


def test_no_steps_changes_nothing():
    _, X, Y, P = make("nb003-deferred")
    before = P.copy()
    run_kernel("special", "nb003-deferred", P, X, Y, np.empty(0, dtype=np.int64), 0.1)
    np.testing.assert_array_equal(P, before)


def test_generated_source_is_written_once_and_loaded_from_the_cache(tmp_path):
    """A fresh process with a warm cache loads the kernel's machine code (no
    compile) and leaves the generated file as it was (Numba's index keys on
    its time stamp)."""
    code = (
        "import numpy as np\n"
        "from fastmlp.kernels.specialise import kernel_for\n"
        "k = kernel_for(np.array([3, 5, 2]), np.array([1, 4]), 0)\n"
        "P = np.zeros(3 * 5 + 5 + 5 * 2 + 2)\n"
        "X = np.ones((4, 3)); Y = np.eye(2)[[0, 1, 0, 1]]\n"
        "k(P, P.copy(), X, Y, np.arange(4), 0.1, np.empty(4), np.empty(4, dtype=np.int64))\n"
        "print(sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values()))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def run():
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return tuple(int(x) for x in out.stdout.split())

    assert run() == (0, 1)
    files = sorted((tmp_path / "fastmlp_generated").glob("*.py"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    assert run() == (1, 0)
    assert files[0].stat().st_mtime_ns == stamp


def test_source_spells_the_shape_as_constants():
    from fastmlp.kernels.specialise import source

    text = source([2, 10, 10, 2], [codes.RELU, codes.RELU, codes.SOFTMAX], codes.NLL)
    assert "sizes" not in text.split("def ", 1)[1]  # no shape read at run time
    assert "[" + ":" not in text  # no slices
    compile(text, "<generated>", "exec")


# -- compiled input checks ------------------------------------------------------

@pytest.fixture
def small_chunks(monkeypatch):
    """Compiled checks from 1 byte, on threads from 1 KB: every path on small arrays."""
    monkeypatch.setattr(v, "COMPILED_CHECK_BYTES", 1)
    monkeypatch.setattr(v, "PARALLEL_CHECK_BYTES", 1024)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_compiled_finite_check_finds_every_position(small_chunks, order, dtype, bad):
    X = np.asarray(np.random.RandomState(0).rand(37, 53), dtype=dtype, order=order)
    v.check_finite(X, "X")
    for pos in [(0, 0), (36, 52), (12, 40), (36, 0)]:
        Xb = X.copy(order=order)
        Xb[pos] = bad
        Xb[min(pos[0] + 1, 36), 0] = bad  # two: the message names the first (C order)
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(Xb))[0])
        with pytest.raises(ValueError, match=rf"found .* at index \({first[0]}, {first[1]}\)"):
            v.check_finite(Xb, "X")


def test_compiled_finite_check_allows_huge_finite_values(small_chunks):
    X = np.full((20, 300), np.finfo(np.float32).max, dtype=np.float32)
    v.check_finite(X, "X")  # the sum overflows; the values are finite


@pytest.mark.parametrize("order", ["C", "F"])
def test_compiled_one_hot_check(small_chunks, order):
    Y = np.asarray(np.eye(4)[np.random.RandomState(0).randint(4, size=500)].T, order=order)
    v.check_one_hot(Y)
    for col, column in [(0, [0, 0, 0, 0]), (499, [1, 1, 0, 0]), (250, [0, 0.5, 0.5, 0]),
                        (7, [0, 2, -1, 0])]:
        Yb = Y.copy(order=order)
        Yb[:, col] = column
        with pytest.raises(ValueError, match=rf"column {col} is"):
            v.check_one_hot(Yb, "Y")


def test_checks_do_not_import_numba_with_fastmlp():
    code = "import sys, fastmlp; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "False", out.stderr
