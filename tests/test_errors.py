"""Bad input raises a clear error, naming the argument, before any weight changes."""

import numpy as np
import pytest
from conftest import hard_data, network, params_of

from fastmlp import MSE, NLL, Layer, Linear, ReLU, Sequential, SoftMax, Tanh


@pytest.fixture
def model(engine):
    np.random.seed(0)
    return Sequential([Linear(2, 10), ReLU(), Linear(10, 2), SoftMax()], NLL(), engine=engine)


def assert_rejected(model, exc, match, **kwargs):
    X, Y = hard_data(20)
    args = {"X": X, "Y": Y, "iters": 10, "lrate": 0.01, **kwargs}
    before = params_of(model)
    state = np.random.get_state()[1].copy()
    with pytest.raises(exc, match=match):
        model.sgd(**args, verbose=False)
    for a, b in zip(before, params_of(model), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


X0, Y0 = hard_data(20)
NAN_X = X0.copy()
NAN_X[1, 3] = np.nan
INF_Y = Y0.copy()
INF_Y[0, 2] = np.inf


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"X": X0[0]}, ValueError, r"X must be a 2-D array .* shape \(20,\) \(1-D\)"),
        ({"X": X0[None]}, ValueError, r"X must be a 2-D array .* \(3-D\)"),
        ({"X": np.vstack([X0, X0])}, ValueError, r"X must have 2 rows .* got shape \(4, 20\)"),
        ({"Y": Y0[0]}, ValueError, r"Y must be a 2-D array"),
        ({"Y": np.vstack([Y0, Y0[:1]])}, ValueError, r"Y must have 2 rows .* \(3, 20\)"),
        ({"Y": Y0[:, :15]}, ValueError, r"same number of samples .* X with 20 and Y with 15"),
        ({"Y": Y0 * 0.5}, ValueError, r"Y must be one-hot .* column 0 is \[0\.0, 0\.5\]"),
        ({"Y": np.ones_like(Y0)}, ValueError, r"Y must be one-hot .* column 0 is \[1\.0, 1\.0\]"),
        ({"Y": np.zeros_like(Y0)}, ValueError, r"Y must be one-hot"),
        ({"X": NAN_X}, ValueError, r"X must contain only finite values; found nan at .*\(1, 3\)"),
        ({"Y": INF_Y}, ValueError, r"Y must contain only finite values; found inf"),
        ({"iters": -1}, ValueError, r"iters must be an integer >= 0; got -1"),
        ({"iters": 2.5}, TypeError, r"iters must be an integer"),
        ({"iters": True}, TypeError, r"iters must be an integer"),
        ({"lrate": 0}, ValueError, r"lrate must be a finite number > 0; got 0"),
        ({"lrate": -0.1}, ValueError, r"lrate must be a finite number > 0; got -0.1"),
        ({"lrate": np.nan}, ValueError, r"lrate must be a finite number > 0; got nan"),
        ({"lrate": np.inf}, ValueError, r"lrate must be a finite number > 0; got inf"),
        ({"lrate": "0.1"}, TypeError, r"lrate must be a finite real number; got '0.1'"),
        ({"X": np.empty((2, 0)), "Y": np.empty((2, 0))}, ValueError, r"X is empty"),
        ({"X": np.array([["a", "b"]] * 2)}, TypeError, r"X must hold real numbers"),
        ({"batch_size": 0}, ValueError, r"batch_size must be an integer >= 1; got 0"),
        ({"print_every": 0}, ValueError, r"print_every must be an integer >= 1; got 0"),
        ({"seed": "abc"}, TypeError, r"seed must be None, an int"),
    ],
)
def test_bad_sgd_input(model, kwargs, exc, match):
    assert_rejected(model, exc, match, **kwargs)


def test_mismatched_linear_sizes():
    with pytest.raises(ValueError, match=r"modules\[2\] is Linear\(12, 2\), expecting 12 inputs, "
                                         r"but modules\[0\] outputs 10"):
        Sequential([Linear(2, 10), ReLU(), Linear(12, 2), SoftMax()], NLL())


def test_mismatch_found_across_several_activations():
    with pytest.raises(ValueError, match=r"modules\[3\]"):
        Sequential([Linear(2, 10), ReLU(), Tanh(), Linear(9, 2)], MSE())


def test_user_layer_hides_sizes():
    class Widen(Layer):
        def forward(self, A):
            return np.vstack([A, A])

        def backward(self, dLdA):
            n = dLdA.shape[0] // 2
            return dLdA[:n] + dLdA[n:]

    Sequential([Linear(2, 3), Widen(), Linear(6, 2)], MSE())  # no error: 3 -> 6 is legitimate


@pytest.mark.parametrize(
    "modules, loss, exc, match",
    [
        ([], NLL(), TypeError, r"modules must be a non-empty list"),
        ("Linear", NLL(), TypeError, r"modules must be a non-empty list"),
        ([Linear(2, 2), "relu"], NLL(), TypeError, r"modules\[1\] must be a layer .* 'relu'"),
        ([Linear(2, 2)], "nll", TypeError, r"loss must be a loss"),
        ([Linear(2, 2), ReLU, Linear(2, 2)], NLL(), TypeError,
         r"modules\[1\] is the class ReLU, not a layer; pass an instance: ReLU\(...\)"),
        ([Linear(2, 2), SoftMax()], NLL, TypeError,
         r"loss is the class NLL, not a loss; pass an instance: NLL\(\)"),
    ],
)
def test_bad_modules(modules, loss, exc, match):
    with pytest.raises(exc, match=match):
        Sequential(modules, loss)


@pytest.mark.parametrize(
    "args, kw, exc, match",
    [
        ((0, 3), {}, ValueError, r"m must be an integer >= 1; got 0"),
        ((2, 2.0), {}, TypeError, r"n must be an integer >= 1; got 2.0"),
        ((2, 3), {"dtype": np.int32}, TypeError, r"dtype must be float32 or float64"),
        ((2, 3), {"dtype": "float16"}, TypeError, r"dtype must be float32 or float64"),
    ],
)
def test_bad_linear(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        Linear(*args, **kw)


def test_engine_and_dtype_arguments():
    with pytest.raises(ValueError, match=r"engine must be one of .* got 'torch'"):
        Sequential([Linear(2, 2)], MSE(), engine="torch")
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64; got 'int8'"):
        Sequential([Linear(2, 2)], MSE(), dtype="int8")
    with pytest.raises(ValueError, match=r"different dtypes \['float32', 'float64'\]"):
        Sequential([Linear(2, 2, dtype=np.float32), Linear(2, 2)], MSE())


def test_layer_shape_errors(engine):
    from conftest import bind

    lin = bind(engine, Linear(3, 2))
    with pytest.raises(ValueError, match=r"A must be a 2-D array of shape \(3, batch\); got shape"):
        lin.forward(np.ones((2, 4)))
    with pytest.raises(RuntimeError, match="before forward"):
        Linear(3, 2).backward(np.ones((2, 1)))
    lin.forward(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"dLdZ must have 4 columns"):
        lin.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Y must have the shape of Ypred"):
        NLL().forward(np.ones((2, 3)) / 2, np.ones((3, 3)))


def test_integer_and_noncontiguous_input_accepted(engine):
    np.random.seed(0)
    a = Sequential(*network("notebook002"), engine=engine)
    np.random.seed(0)
    b = Sequential(*network("notebook002"), engine=engine)
    X, Y = hard_data(40)
    Xi = np.round(X * 10).astype(np.int64)
    wide = np.zeros((2, 80))
    wide[:, ::2] = Xi  # a non-contiguous view with the same values
    a.sgd(Xi, Y.astype(np.int8), iters=50, seed=1, verbose=False)
    b.sgd(wide[:, ::2], Y, iters=50, seed=1, verbose=False)
    for p, q in zip(params_of(a), params_of(b), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12)
    assert not np.shares_memory(wide, params_of(b)[0])


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize(
    "name, value, match",
    [
        ("W0", np.zeros((1, 10)),
         r"W0 of Linear\(2, 10\) must have shape \(10, 1\); got \(1, 10\)"),
        ("W", np.zeros((2, 11)), r"W of Linear\(2, 10\) must have shape \(2, 10\); got \(2, 11\)"),
        ("W", np.zeros((3, 10)), r"W of Linear\(2, 10\) must have shape \(2, 10\); got \(3, 10\)"),
        ("W", np.full((2, 10), "a"), r"W of Linear\(2, 10\) must hold real numbers"),
    ],
)
def test_assigned_parameters_are_checked(engine, fuse, name, value, match):
    """A W or W0 assigned by hand with the wrong shape is reported by every
    entry point (the kernels would otherwise read past it), and nothing trains."""
    np.random.seed(0)
    model = Sequential([Linear(2, 10), ReLU(), Linear(10, 2), SoftMax()], NLL(), engine=engine,
                       fuse=fuse)
    setattr(model.modules[0], name, value)
    X, Y = hard_data(20)
    for call in (lambda: model.forward(X), lambda: model.predict(X),
                 lambda: model.evaluate(X, Y), lambda: model.modules[0].forward(X)):
        with pytest.raises((ValueError, TypeError), match=match):
            call()
    assert_rejected(model, (ValueError, TypeError), match)
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(X, Y, epochs=1, verbose=0)


def test_assigned_parameters_take_the_models_dtype(engine):
    """A W of another real dtype (or a list) is converted, on every path alike."""
    results = []
    for fuse in (True, False):
        np.random.seed(0)
        model = Sequential(*network("notebook002"), engine=engine, fuse=fuse)
        model.modules[0].W = model.modules[0].W.astype(np.float32).tolist()
        model.modules[4].W0 = np.zeros((2, 1), dtype=np.int64)
        model.sgd(*hard_data(20), iters=50, lrate=0.05, seed=0, verbose=False)
        assert all(p.dtype == np.float64 for p in params_of(model))
        results.append(params_of(model))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range_names_it(model, seed):
    assert_rejected(model, ValueError, r"seed must be an int from 0 to 2\*\*32 - 1; got", seed=seed)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"verbose": "x"}, ValueError, r"verbose must be 0, 1 or 2; got 'x'"),
        ({"verbose": 5}, ValueError, r"verbose must be 0, 1 or 2; got 5"),
        ({"nesterov": "yes"}, TypeError, r"nesterov must be True or False; got 'yes'"),
        ({"shuffle": 1}, TypeError, r"shuffle must be True or False; got 1"),
        ({"early_stopping": None}, TypeError, r"early_stopping must be True or False"),
    ],
)
def test_bad_fit_flags(model, kwargs, exc, match):
    X, Y = hard_data(20)
    before = params_of(model)
    with pytest.raises(exc, match=match):
        model.fit(X, Y, epochs=1, **kwargs)
    for a, b in zip(before, params_of(model), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**31, 2**32 - 1])
def test_an_int_seed_draws_random_states_stream(seed):
    """``seed=s`` draws exactly what ``np.random.RandomState(s)`` draws (the
    notebook's stream), though as_rng skips its first, discarded seeding."""
    from fastmlp._validation import as_rng

    ours, theirs = as_rng(seed), np.random.RandomState(seed)
    assert isinstance(ours, np.random.RandomState)
    mine, want = ours.get_state(), theirs.get_state()
    np.testing.assert_array_equal(mine[1], want[1])
    assert mine[0] == want[0] and mine[2:] == want[2:]
    for draw in (lambda r: r.permutation(50), lambda r: r.randint(1000, size=20),
                 lambda r: r.normal(size=7), lambda r: r.rand(5), lambda r: r.normal(size=3)):
        np.testing.assert_array_equal(draw(ours), draw(theirs))
    assert as_rng(seed) is not as_rng(seed)  # a stream of its own each call
