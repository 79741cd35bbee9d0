"""Behaviour of Sequential and the layers beyond the notebook's defaults."""

import numpy as np
import pytest
from conftest import bind, blobs, dims, hard_data, network, params_of

from fastmlp import MSE, NLL, Layer, Linear, ReLU, Sequential, Sigmoid, SoftMax
from fastmlp.engines import get_engine


def test_float32_end_to_end(engine):
    np.random.seed(0)
    nn = Sequential(*network("deep"), engine=engine, dtype=np.float32)
    X, Y = blobs(*dims("deep"), 50)
    nn.sgd(X, Y, iters=20, verbose=False)
    assert nn.dtype == np.float32
    for m in nn.modules:
        if isinstance(m, Linear):
            assert m.W.dtype == m.W0.dtype == m.dLdW.dtype == m.dLdW0.dtype == np.float32
    out = nn.forward(X)
    assert out.dtype == np.float32
    assert all(m.A.dtype == np.float32 for m in nn.modules)


def test_float32_draws_the_float64_stream():
    np.random.seed(5)
    a = Linear(3, 4)
    np.random.seed(5)
    b = Linear(3, 4, dtype=np.float32)
    np.testing.assert_array_equal(a.W.astype(np.float32), b.W)


def test_softmax_is_stable(engine):
    sm = bind(engine, SoftMax())
    Z = np.array([[1000.0, -1000.0, 0.0], [999.0, -1e308, 0.0], [-5.0, -1000.0, 710.0]])
    A = sm.forward(Z)
    assert np.isfinite(A).all()
    np.testing.assert_allclose(A.sum(axis=0), 1.0)
    np.testing.assert_allclose(A[:, 0], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1)), 0])


def test_sigmoid_is_stable(engine):
    sg = bind(engine, Sigmoid())
    A = sg.forward(np.array([[-1000.0, 0.0, 1000.0, -30.0]]))
    np.testing.assert_allclose(A, [[0.0, 0.5, 1.0, 1 / (1 + np.exp(30.0))]], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nll_guards_zero_probability(engine, dtype):
    nll = bind(engine, NLL())
    Ypred = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    Y = np.eye(2, dtype=dtype)
    loss = nll.forward(Ypred, Y)
    assert np.isfinite(loss) and loss == pytest.approx(-2 * np.log(np.finfo(dtype).eps), rel=1e-5)
    assert np.isfinite(nll.backward()).all()


def test_mse_is_summed(engine):
    mse = bind(engine, MSE())
    assert mse.forward(np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 2))) == 30.0
    np.testing.assert_array_equal(mse.backward(), [[2.0, 4.0], [6.0, 8.0]])


def test_batch_step_follows_the_mean_gradient(engine):
    """sgd(batch_size=b) equals a manual step along the summed gradient over b, scaled 1/b."""
    X, Y = blobs(3, 2, 30)
    np.random.seed(1)
    a = Sequential([Linear(3, 5), ReLU(), Linear(5, 2), SoftMax()], NLL(), engine=engine)
    np.random.seed(1)
    b = Sequential([Linear(3, 5), ReLU(), Linear(5, 2), SoftMax()], NLL(), engine=engine)
    a.sgd(X, Y, iters=3, lrate=0.1, batch_size=4, seed=9, verbose=False)
    rows = np.random.RandomState(9).randint(30, size=12).reshape(3, 4)
    for r in rows:
        b.loss.forward(b.forward(X[:, r]), Y[:, r])
        b.backward(b.loss.backward())
        b.sgd_step(0.1 / 4)
    for p, q in zip(params_of(a), params_of(b), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12)


def test_user_layer_trains_on_the_layer_path(engine):
    class Scale(Layer):
        """A user layer with a weight of its own and the notebook's no-rate sgd_step."""

        def __init__(self):
            self.s = 1.0

        def forward(self, A):
            self.Ain = A
            return self.s * A

        def backward(self, dLdA):
            self.ds = float(np.sum(dLdA * self.Ain))
            return self.s * dLdA

        def sgd_step(self):  # the notebook's base signature: no rate
            self.s -= 0.01 * self.ds

    np.random.seed(0)
    user = Scale()
    nn = Sequential([Linear(2, 8), user, ReLU(), Linear(8, 2), SoftMax()], NLL(), engine=engine)
    assert nn.path.startswith("layer-by-layer")
    X, Y = hard_data()
    before = nn.loss.forward(nn.forward(X), Y)
    nn.sgd(X, Y, iters=2000, lrate=0.05, verbose=False)
    assert nn.loss.forward(nn.forward(X), Y) < 0.8 * before
    assert user.s != 1.0


def test_reports_are_optional(engine, capsys):
    X, Y = hard_data()
    np.random.seed(0)
    nn = Sequential(*network("notebook002"), engine=engine)
    nn.sgd(X, Y, iters=600, verbose=False)
    nn.sgd(X, Y, iters=600, print_every=None)
    assert capsys.readouterr().out == ""
    nn.sgd(X, Y, iters=600, print_every=100)
    lines = capsys.readouterr().out.splitlines()
    assert [int(line.split()[2]) for line in lines] == [1, 101, 201, 301, 401, 501]


def test_regression_reports_loss_only(engine, capsys):
    X, _ = blobs(dims("mse")[0], 2, 40)
    Y = X[:2] * 0.5
    nn = Sequential(*network("mse"), engine=engine)
    nn.sgd(X, Y, iters=300, lrate=0.01)
    out = capsys.readouterr().out
    assert "Iteration = 1 \tLoss =" in out and "Acc" not in out


def test_zero_iters_changes_nothing(engine):
    X, Y = hard_data()
    nn = Sequential(*network("notebook002"), engine=engine)
    before = params_of(nn)
    nn.sgd(X, Y, iters=0)
    for p, q in zip(before, params_of(nn), strict=True):
        np.testing.assert_array_equal(p, q)


def test_engine_choice_and_repr():
    nn = Sequential([Linear(2, 4), ReLU(), Linear(4, 2), SoftMax()], NLL(), engine="numpy")
    assert nn.engine == "numpy"
    assert repr(nn) == (
        "Sequential([Linear(2, 4), ReLU(), Linear(4, 2), SoftMax()], NLL(), engine='numpy', "
        "dtype=float64, path='layer-by-layer (the numpy engine)')"
    )
    assert get_engine("numpy").name == "numpy"


def test_learns_the_hard_problem(engine):
    X, Y = hard_data(400)
    np.random.seed(2)
    nn = Sequential([Linear(2, 10), ReLU(), Linear(10, 10), ReLU(), Linear(10, 2), SoftMax()],
                    NLL(), engine=engine)
    nn.sgd(X, Y, iters=20000, lrate=0.05, verbose=False)
    acc = np.mean(np.argmax(nn.forward(X), axis=0) == np.argmax(Y, axis=0))
    assert acc > 0.85
