"""The planner: every plan its rules can pick, in words, and what decides it."""

import numpy as np
import pytest
from conftest import blobs

from fastmlp import MSE, NLL, Layer, Linear, ReLU, Sequential, Sigmoid, SoftMax
from fastmlp.engines import numba_available
from fastmlp.optimizers import SGD
from fastmlp.plan import Plan, density, plan_training, sparse_limit

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not importable")


class Double(Layer):
    def forward(self, A):
        return 2 * A

    def backward(self, dLdA):
        return 2 * dLdA


def net(d, width, **kw):
    np.random.seed(0)
    return Sequential([Linear(d, width), Sigmoid(), Linear(width, 3), SoftMax()], NLL(), **kw)


def data(d, n, zeros, order="F"):
    X, Y = blobs(d, 3, n)
    X[np.random.RandomState(1).rand(*X.shape) < zeros] = 0
    X = X / 10
    return (np.asfortranarray(X), np.asfortranarray(Y)) if order == "F" else (X, Y)


def plan_of(model, X, Y, samples=10_000, batch_size=1, optimizer=None):
    return plan_training(model, X, Y, samples=samples, batch_size=batch_size,
                         optimizer=optimizer or SGD(0.01))


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda: net(4, 5, engine="numpy"), "layer-by-layer (the numpy engine)"),
        (lambda: net(4, 5, fuse=False), "layer-by-layer (fuse=False)"),
        (lambda: Sequential([Linear(4, 5), Double(), Linear(5, 3)], MSE()),
         "layer-by-layer (modules[1] (Double()) is a layer of your own)"),
        (lambda: Sequential([Linear(4, 5), ReLU(), Linear(5, 3)], NLL()),
         "layer-by-layer (NLL follows no SoftMax)"),
        (lambda: Sequential([Linear(4, 3), SoftMax(), Linear(3, 3), SoftMax()], NLL()),
         "layer-by-layer (modules[1] is a SoftMax inside the network)"),
        (lambda: Sequential([Linear(4, 3), ReLU(), ReLU(), Linear(3, 2)], MSE()),
         "layer-by-layer (modules[2] is a second activation in a row)"),
        (lambda: Sequential([ReLU(), Linear(4, 2)], MSE()),
         "layer-by-layer (modules[0] (ReLU()) is not a Linear layer)"),
        (lambda: net(4, 5), "fused"),
    ],
)
def test_route_before_training(build, expected):
    assert build().path == expected


@pytest.mark.parametrize(
    "d, width, zeros, block, order, samples, expected",
    [
        # small first layer: one-pass, whatever the density (every row on dense inputs)
        (20, 10, 0.0, "auto", "F", 10_000,
         "fused per-sample, one-pass, dense first layer; samples read in place"),
        (20, 10, 0.8, "auto", "F", 10_000, "fused per-sample, one-pass; samples read in place"),
        # wide first layer, dense inputs, the weights fit in L2: one-pass in columns
        (200, 100, 0.0, "auto", "F", 10_000,
         "fused per-sample, one-pass, dense first layer; samples read in place"),
        # ... and beyond COLUMNS_MAX_BYTES: blocked with GEMMs on one BLAS thread
        (800, 100, 0.0, "auto", "F", 10_000,
         "fused per-sample, blocked k=64 with GEMMs; samples read in place; BLAS on 1 thread"),
        # wide, sparse (MNIST-like): one-pass
        (200, 100, 0.8, "auto", "F", 10_000, "fused per-sample, one-pass; samples read in place"),
        # an explicit block on sparse inputs: on the nonzeros
        (200, 100, 0.8, 16, "F", 10_000,
         "fused per-sample, blocked k=16 on nonzeros; samples read in place"),
        (200, 100, 0.0, "off", "C", 10_000,
         "fused per-sample, one-pass, dense first layer; X transposed once"),
        (200, 100, 0.0, "off", "C", 10,
         "fused per-sample, one-pass, dense first layer; drawn samples gathered"),
    ],
)
def test_per_sample_plans(d, width, zeros, block, order, samples, expected):
    X, Y = data(d, 400, zeros, order)
    assert str(plan_of(net(d, width, block=block), X, Y, samples)) == expected


@pytest.mark.parametrize(
    "width, zeros, expected",
    [
        (256, 0.85, f"fused mini-batch, first layer on nonzeros (batch fill <= "
                    f"{sparse_limit(256):.2f}); samples read in place"),
        (256, 0.0, "fused mini-batch, dense first layer; samples read in place"),
        (32, 0.85, "fused mini-batch, dense first layer; samples read in place"),  # too narrow
    ],
)
def test_mini_batch_plans(width, zeros, expected):
    X, Y = data(30, 300, zeros)
    plan = plan_of(net(30, width), X, Y, batch_size=32)
    assert str(plan) == expected
    assert (plan.max_fill > 0) == plan.sparse


def test_momentum_or_decay_leaves_the_per_sample_kernels():
    X, Y = data(20, 100, 0.0)
    for opt in (SGD(0.1, momentum=0.9), SGD(0.1, weight_decay=1e-3), SGD(0.1, alpha=1e-4)):
        assert plan_of(net(20, 10), X, Y, optimizer=opt).mode == "mini-batch"


@pytest.mark.parametrize("dtype, expected", [
    (np.float32, "fused per-sample, one-pass, dense first layer"),  # 320,000 bytes
    (np.float64, "fused per-sample, blocked k=64 with GEMMs"),  # 640,000 bytes
])
def test_the_dense_rule_weighs_the_first_layer_in_bytes(dtype, expected):
    X, Y = data(800, 400, 0.0)
    plan = plan_of(net(800, 100, dtype=dtype), X.astype(dtype), Y.astype(dtype))
    assert str(plan).startswith(expected), str(plan)


def test_training_records_the_plan_and_block_size():
    X, Y = data(800, 400, 0.0)  # (dense, and a first layer past COLUMNS_MAX_BYTES)
    nn = net(800, 100)
    nn.sgd(X, Y, iters=100, verbose=False)
    assert nn.path.startswith("fused per-sample, blocked k=64 with GEMMs") and nn.block_size == 64
    nn.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    assert nn.path.startswith("fused mini-batch") and nn.block_size is None
    assert f"path={nn.path!r}" in repr(nn)


def test_density_samples_columns():
    X = np.zeros((10, 1000))
    X[:, ::2] = 1  # every other sample dense
    assert density(X) == pytest.approx(0.5, abs=0.01)
    assert density(np.ones((3, 5))) == 1.0


def test_plan_str_of_layer_by_layer_names_the_reason():
    assert str(Plan("layer-by-layer", reason="fuse=False")) == "layer-by-layer (fuse=False)"
    assert str(Plan("fused")) == "fused"
