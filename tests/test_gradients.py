"""Finite-difference checks of every layer, loss and whole networks (float64)."""

import numpy as np
import pytest
from conftest import assert_backprop_matches_finite_differences, bind, numerical_grad

import fastmlp
from fastmlp import MSE, NLL, Linear, ReLU, Sequential, Sigmoid, SoftMax, Tanh

RTOL, ATOL = 1e-6, 1e-8


@pytest.mark.parametrize("b", [1, 4])
def test_linear(engine, b):
    rng = np.random.RandomState(0)
    lin = bind(engine, Linear(5, 3, seed=rng))
    lin.W0[:] = rng.normal(size=(3, 1))
    A = rng.normal(size=(5, b))
    G = rng.normal(size=(3, b))

    def f():
        return np.sum(G * lin.forward(A))

    lin.forward(A)
    dA = lin.backward(G)
    for param, grad in ((lin.W, lin.dLdW), (lin.W0, lin.dLdW0), (A, dA)):
        np.testing.assert_allclose(grad, numerical_grad(f, param), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("Act", [ReLU, Tanh, Sigmoid, SoftMax])
@pytest.mark.parametrize("b", [1, 3])
def test_activation(engine, Act, b):
    rng = np.random.RandomState(1)
    act = bind(engine, Act())
    Z = rng.normal(size=(4, b)) * 3
    Z[np.abs(Z) < 1e-3] = 0.5  # keep ReLU away from its kink
    G = rng.normal(size=(4, b))

    def f():
        return np.sum(G * act.forward(Z))

    act.forward(Z)
    np.testing.assert_allclose(act.backward(G), numerical_grad(f, Z), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("Loss", [NLL, MSE])
@pytest.mark.parametrize("b", [1, 3])
def test_loss(engine, Loss, b):
    rng = np.random.RandomState(2)
    loss = bind(engine, Loss())
    Ypred = rng.uniform(0.05, 1, size=(3, b))
    Y = np.eye(3)[rng.randint(3, size=b)].T

    def f():
        return loss.forward(Ypred, Y)

    loss.forward(Ypred, Y)
    np.testing.assert_allclose(loss.backward(), numerical_grad(f, Ypred), rtol=RTOL, atol=ATOL)


def test_softmax_nll_combined_gradient(engine):
    from fastmlp.engines import get_engine

    ops = get_engine(engine)
    rng = np.random.RandomState(3)
    Z = rng.normal(size=(5, 4))
    Y = np.eye(5)[rng.randint(5, size=4)].T

    def f():
        return ops.nll_forward(ops.softmax_forward(Z), Y)

    grad = ops.softmax_nll_backward(ops.softmax_forward(Z), Y)
    np.testing.assert_allclose(grad, numerical_grad(f, Z), rtol=RTOL, atol=ATOL)
    # The notebook's route (NLL.backward, then SoftMax.backward) agrees.
    A = ops.softmax_forward(Z)
    np.testing.assert_allclose(
        ops.softmax_backward(A, ops.nll_backward(A, Y)), grad, rtol=1e-12, atol=1e-14
    )


NETWORKS = {
    "notebook002": lambda: ([Linear(2, 10), ReLU(), Linear(10, 10), ReLU(), Linear(10, 2),
                             SoftMax()], NLL(), 2, 2),
    "sigmoid-softmax": lambda: ([Linear(6, 5), Sigmoid(), Linear(5, 3), SoftMax()], NLL(), 6, 3),
    "tanh-mse": lambda: ([Linear(3, 4), Tanh(), Linear(4, 4), Tanh(), Linear(4, 2)], MSE(), 3, 2),
    "linear-linear-sigmoid-mse": lambda: ([Linear(3, 4), Linear(4, 2), Sigmoid()], MSE(), 3, 2),
    "softmax-mse": lambda: ([Linear(3, 4), ReLU(), Linear(4, 3), SoftMax()], MSE(), 3, 3),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("b", [1, 5])
def test_whole_network(engine, name, b):
    np.random.seed(4)
    modules, loss, d, c = NETWORKS[name]()
    nn = Sequential(modules, loss, engine=engine)
    rng = np.random.RandomState(5)
    for m in nn.modules:
        if isinstance(m, Linear):
            m.W0[:] = rng.normal(size=m.W0.shape) * 0.1
    X = rng.normal(size=(d, b))
    Y = np.eye(c)[rng.randint(c, size=b)].T
    assert_backprop_matches_finite_differences(nn, X, Y, rtol=RTOL, atol=ATOL)


def test_public_names():
    for name in ["Layer", "Linear", "ReLU", "Tanh", "Sigmoid", "SoftMax", "NLL", "MSE",
                 "Sequential"]:
        assert hasattr(fastmlp, name)
