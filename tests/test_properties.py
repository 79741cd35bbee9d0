"""Property tests over random architectures, batch sizes and inputs (hypothesis)."""

import itertools

import numpy as np
from conftest import ENGINES, assert_backprop_matches_finite_differences
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastmlp import MSE, NLL, Linear, ReLU, Sequential, Sigmoid, SoftMax, Tanh

HIDDEN = {"none": None, "relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid}
HEADS = {
    "softmax-nll": (SoftMax, NLL),
    "softmax-mse": (SoftMax, MSE),
    "sigmoid-mse": (Sigmoid, MSE),
    "identity-mse": (None, MSE),
}


@st.composite
def networks(draw):
    """A random network of built-in layers and a batch of data for it."""
    widths = draw(st.lists(st.integers(1, 6), min_size=2, max_size=5))
    head = draw(st.sampled_from(sorted(HEADS)))
    if head.startswith("softmax"):
        widths[-1] = max(widths[-1], 2)
    modules = []
    for i, (m, n) in enumerate(itertools.pairwise(widths)):
        modules.append(Linear(m, n, seed=draw(st.integers(0, 2**16))))
        last = i == len(widths) - 2
        act = HEADS[head][0] if last else HIDDEN[draw(st.sampled_from(sorted(HIDDEN)))]
        if act is not None:
            modules.append(act())
    b = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    engine = draw(st.sampled_from(ENGINES))
    return modules, HEADS[head][1](), widths[0], widths[-1], b, seed, engine


def model_and_data(net):
    """The drawn network as a Sequential on its engine, and a batch (X, Y) for it."""
    modules, loss, d, c, b, seed, engine = net
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(d, b))
    Y = np.eye(c)[rng.randint(c, size=b)].T
    return Sequential(modules, loss, engine=engine), X, Y


@settings(max_examples=40, deadline=None)
@given(networks())
def test_backprop_matches_finite_differences(net):
    nn, X, Y = model_and_data(net)
    rng = np.random.RandomState(net[5])
    for m in nn.modules:
        if isinstance(m, Linear):
            m.W0[:] = rng.normal(size=m.W0.shape)
    # Central differences are meaningless across a ReLU kink.
    Z = X
    for m in nn.modules:
        assume(not isinstance(m, ReLU) or np.abs(Z).min() > 1e-4)
        Z = m.forward(Z)
    assert_backprop_matches_finite_differences(nn, X, Y, rtol=1e-5, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(networks())
def test_batch_gradient_is_the_sum_of_sample_gradients(net):
    nn, X, Y = model_and_data(net)
    b = X.shape[1]
    linears = [m for m in nn.modules if isinstance(m, Linear)]
    total = nn.loss.forward(nn.forward(X), Y)
    nn.backward(nn.loss.backward())
    batch = [(m.dLdW.copy(), m.dLdW0.copy()) for m in linears]
    acc = [(np.zeros_like(m.W), np.zeros_like(m.W0)) for m in linears]
    parts = 0.0
    for j in range(b):
        parts += nn.loss.forward(nn.forward(X[:, j:j + 1]), Y[:, j:j + 1])
        nn.backward(nn.loss.backward())
        for (gw, gb), m in zip(acc, linears, strict=True):
            gw += m.dLdW
            gb += m.dLdW0
    assert np.isclose(total, parts, rtol=1e-10)
    for (gw, gb), (bw, bb) in zip(acc, batch, strict=True):
        np.testing.assert_allclose(bw, gw, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(bb, gb, rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(networks())
def test_outputs_have_the_head_range(net):
    nn, X, Y = model_and_data(net)
    out = nn.forward(X * 100)
    assert out.shape == Y.shape and np.isfinite(out).all()
    if type(nn.modules[-1]) is SoftMax:
        np.testing.assert_allclose(out.sum(axis=0), 1.0, rtol=1e-12)
    if type(nn.modules[-1]) in (SoftMax, Sigmoid):
        assert ((out >= 0) & (out <= 1)).all()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=8),
    st.sampled_from(ENGINES),
)
def test_softmax_nll_finite_for_any_logits(logits, engine):
    from fastmlp.engines import get_engine

    ops = get_engine(engine)
    Z = np.array(logits)[:, None]
    A = ops.softmax_forward(Z)
    Y = np.zeros_like(A)
    Y[np.argmin(Z)] = 1
    assert np.isfinite(ops.nll_forward(A, Y))
    assert np.isfinite(ops.nll_backward(A, Y)).all()
    np.testing.assert_allclose(A.sum(), 1.0, rtol=1e-12)
