"""fastmlp.sklearn against scikit-learn, number for number: with the same
parameters and random_state, ``loss_curve_`` equals scikit-learn's (rtol 1e-6,
float64) for "sgd" and "adam", and "lbfgs" ends at scikit-learn's loss after
the same number of iterations; on both engines, dense and sparse input."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor

from fastmlp import Linear, ReLU, Sequential, SoftMax
from fastmlp.losses import NLL
from fastmlp.optimizers import Adam
from fastmlp.plan import rows_max_fill
from fastmlp.sklearn import MLPClassifier, MLPRegressor, _FullBatch

RNG = np.random.RandomState(0)
X = RNG.uniform(-1, 1, (60, 6))
X[X < -0.4] = 0.0  # some zeros, for the sparse paths
SW = RNG.uniform(0.2, 2.0, 60)
TARGETS = {
    "binary": (X[:, 0] + X[:, 1] > 0).astype(int),
    "multiclass": np.digitize(X[:, 0] - X[:, 2], [-0.5, 0.4]),
    "multilabel": np.column_stack([X[:, 0] > 0, X[:, 1] + X[:, 3] > 0, X[:, 4] > 0.2]).astype(int),
    "squared_error": X @ RNG.normal(size=6) + 0.1 * RNG.normal(size=60),
    "poisson": RNG.poisson(np.exp(0.5 * X[:, 0] + 0.3 * X[:, 1])).astype(float),
}
OPTIONS = {"plain": {}, "early": {"early_stopping": True}, "weights": {"sample_weight": SW},
           "early-weights": {"early_stopping": True, "sample_weight": SW}}


def pair(target, **params):
    """(scikit-learn's estimator, fastmlp's) for a target, and its y."""
    y = TARGETS[target]
    if target in ("squared_error", "poisson"):
        params["loss"] = target
        return SkRegressor(**params), MLPRegressor(**params), y
    return SkClassifier(**params), MLPClassifier(**params), y


def fit_both(target, sample_weight=None, X=X, engine=None, **params):
    theirs, ours, y = pair(target, **params)
    ours.set_params(engine=engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.fit(X, y, sample_weight=sample_weight)
        ours.fit(X, y, sample_weight=sample_weight)
    return theirs, ours


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("batch_size", [1, 32, "auto"])
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_loss_curve_equals_scikit_learns(solver, target, batch_size, option):
    params = dict(OPTIONS[option])
    sw = params.pop("sample_weight", None)
    lr = {"sgd": 0.05, "adam": 0.01}[solver]
    theirs, ours = fit_both(target, sample_weight=sw, solver=solver, batch_size=batch_size,
                            hidden_layer_sizes=(7, 5), max_iter=4, random_state=3,
                            learning_rate_init=lr, **params)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-6)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_,
                                   rtol=1e-6)
        assert ours.best_loss_ is None
    else:
        assert ours.validation_scores_ is None and ours.best_validation_score_ is None
        np.testing.assert_allclose(ours.best_loss_, theirs.best_loss_, rtol=1e-6)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_,
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    assert ours.out_activation_ == theirs.out_activation_
    assert (ours.n_layers_, ours.n_outputs_) == (theirs.n_layers_, theirs.n_outputs_)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6, atol=1e-9)
    if hasattr(theirs, "predict_proba"):
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6,
                                   atol=1e-9)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_schedules_and_momentum_variants(solver, schedule):
    kw = dict(solver=solver, learning_rate=schedule, momentum=0.5, nesterovs_momentum=False,
              hidden_layer_sizes=(6,), max_iter=8, random_state=1, batch_size=16, tol=1.0,
              n_iter_no_change=1, activation="tanh")
    theirs, ours = fit_both("multiclass", **kw)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_input_trains_as_dense(fmt, solver):
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    kw = dict(solver=solver, hidden_layer_sizes=(7,), max_iter=5, random_state=0,
              batch_size=8)
    theirs, ours = fit_both("multiclass", X=Xs, **kw)
    dense = MLPClassifier(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense.fit(X, TARGETS["multiclass"])
    if solver == "lbfgs":
        np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-6)
    else:
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)
        np.testing.assert_allclose(ours.loss_curve_, dense.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(Xs), dense.predict_proba(X), rtol=1e-6)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("option", ["plain", "weights"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_lbfgs_ends_where_scikit_learn_does(target, option, engine):
    sw = OPTIONS[option].get("sample_weight")
    theirs, ours = fit_both(target, sample_weight=sw, engine=engine, solver="lbfgs",
                            hidden_layer_sizes=(8,), max_iter=40, random_state=2,
                            activation="tanh")
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-6)
    assert not hasattr(ours, "loss_curve_") and ours.t_ == theirs.t_ == 0


@pytest.mark.parametrize("option", ["plain", "weights"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_lbfgs_on_mostly_zero_inputs_ends_where_scikit_learn_does(target, option):
    """Inputs sparse enough for the full-batch kernel's lists, taken in class
    order (:func:`fastmlp.inference.class_order`) in several chunks of 128
    rows: same iterations and loss."""
    from fastmlp.inference import GROUP, class_order

    rng = np.random.RandomState(5)
    reps = 5  # 300 rows
    Xz = np.hstack([np.tile(X, (reps, 1)), rng.uniform(0, 1, (60 * reps, 58))
                    * (rng.rand(60 * reps, 58) < 0.1)])
    y = TARGETS[target]
    y = np.tile(y, (reps, 1)) if y.ndim == 2 else np.tile(y, reps)
    sw = np.tile(SW, reps) if option == "weights" else None
    # The lists' path runs: the first ordered chunk's fill (share of the
    # dense multiply-adds its lists hold, as the kernel's gate counts it) is
    # under the planner's limit.
    max_fill = rows_max_fill(Xz, 64)
    labels = (np.argmax(y, axis=1) if y.ndim == 2 else np.zeros(len(y), dtype=int)
              if target in ("squared_error", "poisson") else y)  # (as the estimator orders)
    nz = Xz[class_order(Xz.T, labels)[:128]] != 0
    entries = (nz.reshape(-1, GROUP, nz.shape[1]).any(axis=1).sum()
               + nz.reshape(128, -1, GROUP).any(axis=2).sum())
    assert 0 < entries * GROUP / (2 * nz.size) <= max_fill
    theirs, ours, _ = pair(target, solver="lbfgs", hidden_layer_sizes=(64,), max_iter=30,
                           random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.fit(Xz, y, sample_weight=sw)
        ours.fit(Xz, y, sample_weight=sw)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-6)


@pytest.mark.parametrize("target", list(TARGETS))
def test_full_batch_gradient_matches_finite_differences(target):
    _, ours, y = pair(target, solver="lbfgs", hidden_layer_sizes=(5,), max_iter=1,
                      random_state=0, alpha=0.1, activation="logistic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(X, y, sample_weight=SW)
    Y = ours._label_binarizer.transform(y) if hasattr(ours, "classes_") else y.reshape(-1, 1)
    f = _FullBatch(ours, X, Y, SW)
    theta = ours._flat().astype(np.float64).copy()
    _, grad = f(theta)
    h, numeric = 1e-6, np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        numeric[i] = (f(theta + e)[0] - f(theta - e)[0]) / (2 * h)
    # (one output: scikit-learn's squared-error gradient omits the loss's 1 / outputs)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_float32_follows_the_input_and_stays_close():
    Xf = X.astype(np.float32)
    theirs, ours = fit_both("multiclass", X=Xf, hidden_layer_sizes=(7,), max_iter=5,
                            random_state=0, batch_size=16)
    assert ours.coefs_[0].dtype == np.float32 and ours.predict_proba(Xf).dtype == np.float32
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)


def test_verbose_lines_as_scikit_learns(capsys):
    kw = dict(solver="sgd", hidden_layer_sizes=(5,), max_iter=3, random_state=0, verbose=True,
              early_stopping=True, tol=10.0, n_iter_no_change=1, learning_rate="adaptive")
    fit_both("binary", **kw)
    out = capsys.readouterr().out.splitlines()
    half = len(out) // 2
    assert out[:half] == out[half:] and any("Iteration 1, loss" in line for line in out)


def test_sequential_fit_with_adam_on_both_engines():
    rng = np.random.RandomState(0)
    Xc = rng.uniform(-1, 1, (5, 80))
    Yc = np.eye(3)[rng.randint(3, size=80)].T
    results = []
    for engine in ("numba", "numpy"):
        rs = np.random.RandomState(1)
        model = Sequential([Linear(5, 8, seed=rs), ReLU(), Linear(8, 3, seed=rs), SoftMax()],
                           NLL(), engine=engine)
        history = model.fit(Xc, Yc, epochs=3, batch_size=16, optimizer="adam", seed=0,
                            verbose=0)
        assert isinstance(model.optimizer, Adam) and model.optimizer.t == 3 * 5
        results.append((history.loss, [p.copy() for p in model.parameters()]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-9)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)


def test_threads_share_the_kernels():
    from joblib import parallel_config
    from sklearn.model_selection import cross_val_score
    y = TARGETS["multiclass"]
    est = MLPClassifier(hidden_layer_sizes=(7,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = cross_val_score(est, X, y, cv=3)
        with parallel_config(backend="threading"):
            threaded = cross_val_score(est, X, y, cv=3, n_jobs=2)
    np.testing.assert_array_equal(serial, threaded)
