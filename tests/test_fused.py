"""The fused compiled loops against the NumPy engine, and the choice of path."""

import os

import numpy as np
import pytest
from conftest import (
    assert_same_state,
    blobs,
    builder,
    dims,
    hard_data,
    network,
    params_of,
    state,
    twins,
)

from fastmlp import MSE, NLL, Layer, Linear, ReLU, Sequential, Sigmoid, SoftMax, Tanh
from fastmlp.engines import numba_available
from fastmlp.network import describe

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not importable")


#: Each output activation and loss, on a conftest network with that head.
HEADS = {
    "softmax-nll": "notebook002",
    "softmax-mse": "mse-softmax",
    "sigmoid-mse": "mse-sigmoid",
    "identity-mse": "mse",
    "relu-mse": "mse-relu-wide",
    "tanh-mse": "mse-tanh",
    "single-linear-nll": "single",
}


@pytest.mark.parametrize("name", ["notebook002", "deep"])
def test_fused_equals_numpy_after_2000_steps(name):
    a, b = twins(builder(name))
    assert a.path.startswith("layer-by-layer") and b.path.startswith("fused")
    X, Y = hard_data(300) if name == "notebook002" else blobs(*dims(name), 300)
    a.sgd(X, Y, iters=2000, lrate=0.01, seed=5, verbose=False)
    b.sgd(X, Y, iters=2000, lrate=0.01, seed=5, verbose=False)
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_head(head):
    a, b = twins(builder(HEADS[head]))
    X, Y = blobs(*dims(HEADS[head]), 100)
    a.sgd(X, Y, iters=500, lrate=0.02, seed=1, verbose=False)
    b.sgd(X, Y, iters=500, lrate=0.02, seed=1, verbose=False)
    assert b.path.startswith("fused ")
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


def test_float32_tracks_numpy_float32():
    """float32 trajectories agree to float32 round-off (documented tolerance: rtol 1e-4)."""
    a, b = twins(builder("deep"), dtype=np.float32)
    X, Y = blobs(*dims("deep"), 200)
    a.sgd(X, Y, iters=300, lrate=0.01, seed=2, verbose=False)
    b.sgd(X, Y, iters=300, lrate=0.01, seed=2, verbose=False)
    assert all(p.dtype == np.float32 for p in state(b))
    assert_same_state(a, b, rtol=1e-4, atol=1e-5)


def test_blocks_and_calls_compose():
    """Reporting blocks and repeated calls do not change the trajectory."""
    a, b = twins(builder("notebook002"))
    X, Y = hard_data()
    a.sgd(X, Y, iters=1200, seed=np.random.RandomState(3), verbose=False)
    rs = np.random.RandomState(3)
    for _ in range(3):
        b.sgd(X, Y, iters=400, seed=rs, print_every=7, verbose=True)
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["mse", "notebook002"])  # (notebook002: two ReLU layers)
def test_sparse_inputs_and_dead_units_are_exact(name):
    """Rows skipped for zero inputs give the same result as computing them."""
    a, b = twins(builder(name))  # ReLU units: dead ones are skipped too
    X, Y = blobs(*dims(name), 100)
    X[np.random.RandomState(0).rand(*X.shape) < 0.7] = 0  # 70% zeros, like MNIST pixels
    a.sgd(X, Y, iters=1000, lrate=0.05, seed=4, verbose=False)
    b.sgd(X, Y, iters=1000, lrate=0.05, seed=4, verbose=False)
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


def test_repeated_sample_and_fortran_input():
    a, b = twins(builder("notebook002"))
    X, Y = hard_data(3)  # three samples: consecutive repeats are frequent
    a.sgd(X, Y, iters=300, seed=0, verbose=False)
    b.sgd(np.asfortranarray(X), Y, iters=300, seed=0, verbose=False)
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


def test_layers_stay_live_views_and_user_replacements_are_picked_up():
    _, b = twins(builder("notebook002"))
    X, Y = hard_data()
    b.sgd(X, Y, iters=10, verbose=False)
    first = b.modules[0]
    first.W = np.zeros((2, 10))  # the notebook's style: rebinding the attribute
    b.sgd(X, Y, iters=1, seed=0, verbose=False)
    assert np.abs(first.W).sum() > 0  # trained from the replaced zeros...
    assert np.shares_memory(first.W, b._flat.P)  # ...and bound again to the buffer
    with pytest.raises(ValueError, match=r"W of Linear\(2, 10\) must have shape \(2, 10\); got"):
        first.W = np.zeros((3, 10))
        b.sgd(X, Y, iters=1, verbose=False)


@pytest.mark.parametrize(
    "modules, loss, fused",
    [
        (lambda: [Linear(2, 3), ReLU(), Linear(3, 2), SoftMax()], NLL, True),
        (lambda: [Linear(2, 3), Linear(3, 2)], MSE, True),
        (lambda: [Linear(2, 3), ReLU(), Linear(3, 2)], NLL, False),  # NLL without SoftMax
        (lambda: [Linear(2, 3), SoftMax(), Linear(3, 2)], MSE, False),  # SoftMax inside
        (lambda: [Linear(2, 3), ReLU(), ReLU(), Linear(3, 2)], MSE, False),  # two in a row
        (lambda: [ReLU(), Linear(2, 2)], MSE, False),  # activation first
        (lambda: [Linear(2, 3), type("MyReLU", (ReLU,), {})(), Linear(3, 2)], MSE, False),
    ],
)
def test_plan(modules, loss, fused):
    mods = modules()
    assert (describe(mods, loss())[0] is not None) == fused
    nn = Sequential(mods, loss(), engine="numba")
    assert nn.path == "fused" if fused else nn.path.startswith("layer-by-layer (")
    assert f"path={nn.path!r}" in repr(nn)


def test_user_layer_anywhere_falls_back_with_kernels():
    class Double(Layer):
        def forward(self, A):
            return 2 * A

        def backward(self, dLdA):
            return 2 * dLdA

    def build():
        return [Linear(2, 6), Double(), Tanh(), Linear(6, 2), SoftMax()], NLL()

    a, b = twins(build)
    assert b.path == "layer-by-layer (modules[1] (Double()) is a layer of your own)"
    X, Y = hard_data()
    a.sgd(X, Y, iters=500, seed=1, verbose=False)
    b.sgd(X, Y, iters=500, seed=1, verbose=False)
    assert_same_state(a, b, rtol=1e-10, atol=1e-12)


def test_activation_codes_match_the_kernels():
    from fastmlp.kernels import codes

    assert [ReLU.code, Tanh.code, Sigmoid.code, SoftMax.code] == [
        codes.RELU, codes.TANH, codes.SIGMOID, codes.SOFTMAX]
    assert (NLL.code, MSE.code) == (codes.NLL, codes.MSE)
    assert len({codes.IDENTITY, codes.RELU, codes.TANH, codes.SIGMOID, codes.SOFTMAX}) == 5


def test_replaced_activation_or_loss_is_used_after_a_fused_run():
    """The flat buffers are cached per set of Linear layers; the description of
    the activations and the loss must still follow the modules."""
    a, b = twins(builder("notebook002"))
    X, Y = hard_data()
    b.sgd(X, Y, iters=10, seed=0, verbose=False)  # the cache now exists
    a.sgd(X, Y, iters=10, seed=0, verbose=False)
    for m in (a, b):  # (now conftest's "notebook002-tanh")
        m.modules[1] = Tanh()  # takes the model's engine at the next training call
        m.modules[3] = Tanh()
    a.sgd(X, Y, iters=200, seed=1, verbose=False)
    b.sgd(X, Y, iters=200, seed=1, verbose=False)
    assert a.modules[1]._engine.name == "numpy" and b.modules[1]._engine.name == "numba"
    assert_same_state(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT", "0") != "0",
                    reason="compiled code sums each row's terms as one FMA chain, so rows "
                           "of zero input add exactly nothing; Python rounds each group of four")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_split_runs_end_on_the_same_weights_to_the_bit(dtype):
    """Reporting splits a run into several kernel calls, each ending with the
    deferred first-layer update: the weights must not depend on the split."""
    import contextlib
    import io

    d, c = dims("nb003-deferred")  # a first layer large enough to defer its update
    rng = np.random.RandomState(0)
    X = rng.rand(d, 200) * (rng.rand(d, 200) < 0.4)
    Y = np.eye(c)[rng.randint(c, size=200)].T
    finals = []
    for mode in ("one call", "ten calls", "reporting"):
        np.random.seed(0)
        nn = Sequential(*network("nb003-deferred"), block="off", dtype=dtype)
        np.random.seed(1)
        if mode == "one call":
            nn.sgd(X, Y, iters=5000, lrate=0.5, verbose=False)
        elif mode == "ten calls":
            for _ in range(10):
                nn.sgd(X, Y, iters=500, lrate=0.5, verbose=False)
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                nn.sgd(X, Y, iters=5000, lrate=0.5, print_every=37)
        finals.append(params_of(nn))
    for other in finals[1:]:
        for a, b in zip(finals[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
